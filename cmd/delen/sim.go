package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/models/replica"
	"github.com/delen-edge/delen/schema"
	"github.com/delen-edge/delen/sim"
	"github.com/spf13/cobra"
)

// simFlags are `delen sim`'s options.
type simFlags struct {
	scenario, brokerURL, out, prefix string
	username, password               string
	only                             string
	timeout, drain                   time.Duration
	asJSON, quiet                    bool
	workers, profileRuns             int
	meter                            meterFlags
}

func newSimCmd(g *globals) *cobra.Command {
	f := &simFlags{}
	c := &cobra.Command{
		Use:   "sim --scenario FILE [--broker URL] [--out DIR] [--json]",
		Short: "run a tenant workload scenario against an agent, write a report and plots",
		Long: `Plays a scenario (YAML, see sim/scenarios/) against an agent over MQTT and writes
report.json, requests.csv and plots (latency_cdf.png, exits.png, slo.png,
energy.png) into --out, then prints a per-tenant summary.

Without --broker an agent runs in-process on an embedded broker on a free
loopback port, as ` + "`delen serve`" + ` would, with its store in a temporary folder
unless --data is given; models come from the built-in zoo, --zoo and
<data>/models (./data/models by default, where ` + "`delen models gen-replica`" + `
writes). With --broker only MQTT is used, against whatever agent listens there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runSim(cmd, g, f) },
	}
	c.Flags().StringVar(&f.scenario, "scenario", "", "scenario file (YAML; required)")
	c.Flags().StringVar(&f.brokerURL, "broker", "", "broker `url` of a running agent (tcp://host:port; or DELEN_BROKER); default: an in-process agent on an embedded broker")
	c.Flags().StringVar(&f.username, "username", "", "MQTT user `name` (with --broker; or DELEN_MQTT_USER)")
	c.Flags().StringVar(&f.password, "password", "", "MQTT password (with --broker; or DELEN_MQTT_PASSWORD)")
	c.Flags().StringVar(&f.out, "out", "", "output `folder` (default sim-<scenario>-<time>)")
	c.Flags().StringVar(&f.prefix, "prefix", "delen", "topic prefix (or DELEN_PREFIX)")
	withEnv(c.Flags(), "", "broker", "prefix")
	withEnv(c.Flags(), "DELEN_MQTT_USER", "username")
	withEnv(c.Flags(), "DELEN_MQTT_PASSWORD", "password")
	c.Flags().StringVar(&f.only, "only", "", "run only the runs whose name matches this regular expression (compare variants; matrix runs such as b7-d100-default, b7-all-full)")
	c.Flags().DurationVar(&f.timeout, "timeout", sim.DefaultTimeout, "a request without a result this long after sending is lost")
	c.Flags().DurationVar(&f.drain, "drain", sim.DefaultDrain, "compare scenarios: longest wait for a variant's backlog before the next")
	c.Flags().BoolVar(&f.asJSON, "json", false, "print the report (report.json) instead of the table")
	c.Flags().BoolVar(&f.quiet, "quiet", false, "no progress line on stderr")
	c.Flags().IntVar(&f.workers, "workers", 0, "in-process agent: stage workers (default: one per CPU)")
	c.Flags().IntVar(&f.profileRuns, "profile-runs", 0, "in-process agent: runs per stage when profiling a model on first start (default: the agent's)")
	f.meter.add(c)
	c.MarkFlagRequired("scenario")
	c.AddCommand(&cobra.Command{
		Use:   "plot-soak METRICS.CSV OUT.PNG",
		Short: "plot the memory and goroutine series that `make soak` samples",
		Args:  cobra.ExactArgs(2),
		RunE:  func(cmd *cobra.Command, args []string) error { return sim.PlotSoakSeries(args[0], args[1]) },
	})
	return c
}

func runSim(cmd *cobra.Command, g *globals, f *simFlags) error {
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	s, err := sim.LoadScenario(f.scenario)
	if err != nil {
		return err
	}
	out := f.out
	if out == "" {
		out = fmt.Sprintf("sim-%s-%s", s.Name, time.Now().Format("20060102-150405"))
	}
	brokerURL := f.brokerURL
	if brokerURL == "" {
		url, stop, err := startSimAgent(ctx, cmd, g, f, s)
		if err != nil {
			return err
		}
		defer stop()
		brokerURL = url
	}

	runs := max(1, len(s.Compare))
	fmt.Fprintf(stderr, "running %s: %d tenant(s), %s", s.Name, len(s.Tenants), s.Duration)
	if runs > 1 {
		fmt.Fprintf(stderr, " × %d variants", runs)
	}
	fmt.Fprintf(stderr, " against %s\n", brokerURL)
	opt := sim.RunOptions{BrokerURL: brokerURL, Username: f.username, Password: f.password, Prefix: f.prefix,
		Timeout: f.timeout, Drain: f.drain, Workers: f.workers}
	if f.only != "" {
		re, err := regexp.Compile(f.only)
		if err != nil {
			return fmt.Errorf("--only: %w", err)
		}
		opt.Only = re
	}
	if prog := newProgress(stderr); !f.quiet {
		opt.Progress = func(snap sim.Snapshot) {
			prog.show(snap.String())
			if snap.Done {
				prog.keep()
			}
		}
	}
	rep, runErr := sim.Run(ctx, s, opt)
	if rep == nil {
		return runErr
	}
	if err := rep.WriteFiles(out); err != nil {
		return errors.Join(runErr, err)
	}
	w := cmd.OutOrStdout()
	if f.asJSON {
		if err := printJSON(w, rep); err != nil {
			return err
		}
	} else {
		header, rows := rep.SummaryTable()
		if err := table(w, header, rows); err != nil {
			return err
		}
	}
	for _, run := range rep.Runs {
		for _, warn := range run.Warnings {
			if run.Variant != "" {
				warn = run.Variant + ": " + warn
			}
			fmt.Fprintln(stderr, "warning:", warn)
		}
	}
	fmt.Fprintf(stderr, "report and plots in %s\n", out)
	return runErr
}

// startSimAgent starts an agent on an embedded broker on a free loopback
// port, as `delen serve` does, and returns the broker URL and a function
// that stops both. The store lives in a temporary folder unless --data
// (or DELEN_DATA) was given.
func startSimAgent(ctx context.Context, cmd *cobra.Command, g *globals, f *simFlags, s *sim.Scenario) (string, func(), error) {
	stderr := cmd.ErrOrStderr()
	var cleanups []func()
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	dataDir := g.data
	if !g.userSet("data") {
		tmp, err := os.MkdirTemp("", "delen-sim-*")
		if err != nil {
			return "", nil, err
		}
		cleanups = append(cleanups, func() { os.RemoveAll(tmp) })
		dataDir = tmp
	}
	fail := func(err error) (string, func(), error) {
		cleanup()
		return "", nil, err
	}
	// The zoo always includes <--data>/models (./data/models by default),
	// where gen-replica writes, even when the store is temporary.
	z := g.openZoo()
	for _, name := range s.Models() {
		if _, err := z.Find(name); err != nil {
			hint := ""
			if name == replica.Name {
				hint = fmt.Sprintf("; generate it first with `delen models gen-replica %s` (it goes into %s, or pass the --data or --zoo it was written to)", name, g.modelsDir())
			}
			return fail(fmt.Errorf("scenario %s needs model %q, which is not in the zoo%s", s.Name, name, hint))
		}
	}
	log := g.log
	if !g.userSet("log-level") {
		// The agent's info lines would break the progress line.
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fail(err)
	}
	st, err := store.Open(filepath.Join(dataDir, "store"), store.Options{Logger: log})
	if err != nil {
		return fail(err)
	}
	cleanups = append(cleanups, func() {
		if err := st.Close(); err != nil {
			log.Error("close store", "err", err)
		}
	})
	emb, err := broker.NewEmbedded(broker.EmbeddedConfig{Addr: "127.0.0.1:0", DataDir: filepath.Join(dataDir, "broker"), Logger: log.With("component", "broker")})
	if err != nil {
		return fail(err)
	}
	if err := emb.Start(ctx); err != nil {
		return fail(fmt.Errorf("embedded broker: %w", err))
	}
	cleanups = append(cleanups, func() { emb.Close() })
	quiet := *g
	quiet.log = log
	meter, err := f.meter.open(&quiet)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(stderr, "starting an in-process agent (data in %s; models without a stored profile are profiled first)\n", dataDir)
	a, err := agent.New(ctx, agent.Config{
		AgentID: "delen-sim-agent", BrokerURL: emb.Addr(), Embedded: emb, Topics: schema.Topics{Prefix: f.prefix},
		Zoo: z, Store: st, Meter: meter, Workers: f.workers, ProfileRuns: f.profileRuns, Logger: log,
	})
	if err != nil {
		return fail(err)
	}
	actx, stopAgent := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	cleanups = append(cleanups, func() {
		stopAgent()
		if err := <-done; err != nil {
			log.Error("agent", "err", err)
		}
	})
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.WaitReady(wctx); err != nil {
		return fail(fmt.Errorf("in-process agent: %w", err))
	}
	return emb.Addr(), cleanup, nil
}
