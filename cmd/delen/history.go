package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/spf13/cobra"
)

func newHistoryCmd(g *globals) *cobra.Command {
	var tenant, since string
	var agent agentHTTP
	var limit int
	var asJSON bool
	c := &cobra.Command{
		Use:   "history [--tenant T] [--since D]",
		Short: "served requests from the store (through the running agent's HTTP endpoint when it runs)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			recs, err := historyFromAgent(&agent, tenant, from, limit)
			if errors.Is(err, errNoAgent) || errors.Is(err, errNotFound) {
				// No agent answering: read the store directly (Badger
				// allows one process at a time).
				if _, statErr := os.Stat(g.storeDir()); errors.Is(statErr, os.ErrNotExist) {
					return fmt.Errorf("no agent at %s and no store in %s", agent.addr, g.storeDir())
				}
				st, openErr := store.Open(g.storeDir(), store.Options{Logger: g.log})
				if openErr != nil {
					return fmt.Errorf("history: %v; store: %w", err, openErr)
				}
				defer st.Close()
				if recs, err = st.History(tenant, from, limit); err != nil {
					return err
				}
			} else if err != nil {
				return err
			}
			if recs == nil {
				recs = []store.Record{}
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), recs)
			}
			var rows [][]string
			for _, r := range recs {
				res := r.Result
				class, correct := "-", "-"
				if res.Class != nil {
					class = fmt.Sprint(*res.Class)
				}
				if r.Correct != nil {
					correct = fmt.Sprint(*r.Correct)
				}
				rows = append(rows, []string{r.At.Local().Format("2006-01-02 15:04:05.000"), r.Tenant, r.ID, res.Status, res.Model,
					fmt.Sprintf("%d/%d", res.Exit, res.Exits), class, correct, fmt.Sprintf("%.3f", res.LatencyMS), fmt.Sprintf("%.4f", res.EnergyMJ)})
			}
			return table(cmd.OutOrStdout(), []string{"AT", "TENANT", "ID", "STATUS", "MODEL", "EXIT", "CLASS", "CORRECT", "LATENCY_MS", "ENERGY_MJ"}, rows)
		},
	}
	c.Flags().StringVar(&tenant, "tenant", "", "only this tenant")
	c.Flags().StringVar(&since, "since", "", "only requests since this long ago (10m, 24h) or this RFC 3339 time")
	c.Flags().IntVar(&limit, "limit", 0, "only the newest `N` records (0: all); shown oldest first")
	agent.addFlags(c.Flags(), true)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func historyFromAgent(a *agentHTTP, tenant string, since time.Time, limit int) ([]store.Record, error) {
	q := url.Values{}
	if tenant != "" {
		q.Set("tenant", tenant)
	}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	if limit > 0 {
		q.Set("limit", fmt.Sprint(limit))
	}
	var recs []store.Record
	return recs, a.get("/history", q, &recs)
}
