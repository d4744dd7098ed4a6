package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/energy"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/models/zoo"
	"github.com/spf13/cobra"
)

// meterFlags choose the energy meter.
type meterFlags struct {
	kind  string
	watts float64
	rail  string
}

func (f *meterFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.kind, "meter", "auto", "energy meter: auto, ina3221, rapl or model")
	c.Flags().Float64Var(&f.watts, "watts", energy.DefaultWatts, "power the model meter assumes while a stage runs")
	c.Flags().StringVar(&f.rail, "rail", "", "INA3221 rail to read (default the board's input rail)")
	withEnv(c.Flags(), "", "meter", "watts", "rail")
}

func (f *meterFlags) open(g *globals) (energy.Meter, error) {
	return energy.New(f.kind, "/", energy.Options{Watts: f.watts, Rail: f.rail, Logger: g.log})
}

func newProfileCmd(g *globals) *cobra.Command {
	var asJSON bool
	var runs, warmup int
	var mf meterFlags
	c := &cobra.Command{
		Use:   "profile NAME",
		Short: "measure a model on this device (stage latency, energy, exit accuracy, calibration) and store it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := g.openZoo().Load(args[0], models.LoadOptions{})
			if err != nil {
				return err
			}
			defer m.Close()
			meter, err := mf.open(g)
			if err != nil {
				return err
			}
			// The store first: a running agent holds it, and measuring
			// for nothing would take a while.
			if err := os.MkdirAll(g.data, 0o755); err != nil {
				return err
			}
			s, err := store.Open(g.storeDir(), store.Options{Logger: g.log})
			if errors.Is(err, store.ErrInUse) {
				return fmt.Errorf("%w: stop the running agent first (the agent profiles a model without a stored profile at start, and refreshes its profiles from live runs)", err)
			}
			if err != nil {
				return err
			}
			defer s.Close()
			data, split := zoo.CalibrationData(m.Manifest)
			stderr := cmd.ErrOrStderr()
			fmt.Fprintf(stderr, "profiling %s on %s (energy: %s; %d runs per stage", m.Manifest.ID(), profile.DeviceID(), meter.Name(), runs)
			if data != nil {
				fmt.Fprintf(stderr, "; accuracy and confidence on the %s split: %s", split, mnist.Splits()[split])
			}
			fmt.Fprintln(stderr, ")")
			prog := newProgress(stderr)
			p, err := models.Profile(cmd.Context(), m, meter, models.ProfileOptions{
				Runs: runs, Warmup: warmup, Data: data, DataSplit: split, Progress: prog.show,
			})
			prog.keep()
			if err != nil {
				return err
			}
			if err := s.PutProfile(p); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "stored profile/%s in %s\n", p.Key(), g.data)
			if asJSON {
				q := *p
				q.Validation = nil // per-sample data stays in the store
				return printJSON(cmd.OutOrStdout(), q)
			}
			return printProfile(cmd, p)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().IntVar(&runs, "runs", 200, "timed runs per stage (after warm-up)")
	c.Flags().IntVar(&warmup, "warmup", 20, "warm-up runs")
	mf.add(c)
	return c
}

func printProfile(cmd *cobra.Command, p *profile.Profile) error {
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "%s@%s on %s (%s, energy from %s)\n", p.Model, p.Version, p.Device, p.Runtime, p.EnergySource)
	var rows [][]string
	for i, s := range p.Stages {
		e := p.Exits[i]
		rows = append(rows, []string{fmt.Sprint(i + 1),
			fmt.Sprintf("%.3f", s.LatencyMS.P50), fmt.Sprintf("%.3f", s.LatencyMS.P95), fmt.Sprintf("%.3f", s.LatencyMS.P99),
			fmt.Sprintf("%.4f", s.EnergyMJ), fmt.Sprintf("%.3f", e.LatencyMS.P95), fmt.Sprintf("%.4f", e.EnergyMJ),
			fmt.Sprintf("%.4f", e.Accuracy), e.AccuracyFrom, orDash(e.AccuracySplit)})
	}
	if err := table(w, []string{"EXIT", "STAGE_P50_MS", "STAGE_P95_MS", "STAGE_P99_MS", "STAGE_MJ", "CUM_P95_MS", "CUM_MJ", "ACCURACY", "FROM", "SPLIT"}, rows); err != nil {
		return err
	}
	for _, e := range p.Exits {
		if len(e.Calibration) == 0 {
			continue
		}
		fmt.Fprintf(w, "exit %d calibration (confidence bin: samples, accuracy):", e.Exit)
		for _, b := range e.Calibration {
			if b.Count > 0 {
				fmt.Fprintf(w, " [%.1f,%.1f): %d, %.3f;", b.Lo, b.Hi, b.Count, b.Accuracy)
			}
		}
		fmt.Fprintln(w)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
