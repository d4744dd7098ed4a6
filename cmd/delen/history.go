package main

import (
	"fmt"
	"net/url"
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
		Short: "served requests from the store (through the running agent's HTTP endpoint while it holds the store)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			from, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			var recs []store.Record
			err = fromStoreOrAgent(g, func() (err error) {
				recs, err = historyFromAgent(&agent, tenant, from, limit)
				return err
			}, func(st *store.Store) (err error) {
				recs, err = st.History(tenant, from, limit)
				return err
			})
			if err != nil {
				return fmt.Errorf("history: %w", err)
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
