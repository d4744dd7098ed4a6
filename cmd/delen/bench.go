package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/delen-edge/delen/agent/agentbench"
	"github.com/delen-edge/delen/broker"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/zoo"
	"github.com/spf13/cobra"
)

func newBenchCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "bench", Short: "performance figures, each as a ratio of two sides measured in one run"}
	c.AddCommand(newBenchExecutorCmd(g), newBenchOverheadCmd(g), newBenchThroughputCmd(g), newBenchCPUCmd(g),
		newBenchResponderCmd(g), newBenchBrokerCmd(g))
	return c
}

func newBenchExecutorCmd(g *globals) *cobra.Command {
	var asJSON bool
	var name string
	var reps, warmup, batch int
	c := &cobra.Command{
		Use:   "executor",
		Short: "all stages in sequence vs the monolithic model: medians, their ratio, and the floor one ONNX Runtime call per stage sets",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := g.openZoo().Load(name, models.LoadOptions{Monolithic: true})
			if err != nil {
				return err
			}
			defer m.Close()
			prog := newProgress(cmd.ErrOrStderr())
			opt := models.BenchOptions{Reps: reps, Warmup: warmup, Batch: batch, Progress: prog.show}
			if data, _ := zoo.TestData(m.Manifest); data != nil {
				per := m.Manifest.SampleSize()
				opt.Fill = func(r int, dst []float32) {
					for j := 0; j*per < len(dst); j++ {
						data.Sample((r*batch+j)%data.Len(), dst[j*per:(j+1)*per])
					}
				}
			}
			r, err := models.BenchExecutor(cmd.Context(), m, opt)
			prog.clear()
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			return table(cmd.OutOrStdout(), []string{"MODEL", "EXITS", "BATCH", "REPS", "STAGED_MS", "MONOLITHIC_MS", "RATIO", "PAIRED_RATIO", "CALL_MS", "FLOOR_RATIO"},
				[][]string{{r.Model, fmt.Sprint(r.Exits), fmt.Sprint(r.Batch), fmt.Sprint(r.Reps),
					fmt.Sprintf("%.4f", r.StagedMS), fmt.Sprintf("%.4f", r.MonoMS), fmt.Sprintf("%.3f", r.Ratio), fmt.Sprintf("%.3f", r.PairedRatio),
					fmt.Sprintf("%.4f", r.CallMS), fmt.Sprintf("%.3f", r.FloorRatio)}})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().StringVar(&name, "model", "mnist-ee", "model to measure")
	c.Flags().IntVar(&reps, "reps", 500, "timed repetitions of each side")
	c.Flags().IntVar(&warmup, "warmup", 50, "warm-up repetitions")
	c.Flags().IntVar(&batch, "batch", 1, "batch size")
	return c
}

// benchBroker returns the broker to measure against: --broker, or an
// embedded broker on a free port (closed by the returned func), which the
// in-process agent attaches to as `delen serve` does.
func benchBroker(ctx context.Context, g *globals, url string) (_ string, _ *broker.Embedded, _ func(), _ error) {
	if url != "" {
		return url, nil, func() {}, nil
	}
	emb, err := broker.NewEmbedded(broker.EmbeddedConfig{Addr: "127.0.0.1:0", Logger: g.quietLogger()})
	if err != nil {
		return "", nil, nil, err
	}
	if err := emb.Start(ctx); err != nil {
		return "", nil, nil, err
	}
	return emb.Addr(), emb, func() { emb.Close() }, nil
}

func newBenchOverheadCmd(g *globals) *cobra.Command {
	var asJSON bool
	var url string
	var n int
	c := &cobra.Command{
		Use:   "overhead",
		Short: "round trip through the agent (zero-cost model) vs a bare MQTT echo through the same broker",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			u, emb, stop, err := benchBroker(ctx, g, url)
			if err != nil {
				return err
			}
			defer stop()
			prog := newProgress(cmd.ErrOrStderr())
			r, err := agentbench.Overhead(ctx, agentbench.Options{BrokerURL: u, Embedded: emb, N: n, Logger: g.quietLogger(), Progress: prog.show})
			prog.clear()
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			return table(cmd.OutOrStdout(), []string{"SIDE", "N", "P50_MS", "P99_MS"}, [][]string{
				{r.Agent.Name, fmt.Sprint(r.Agent.N), fmt.Sprintf("%.3f", r.Agent.P50MS), fmt.Sprintf("%.3f", r.Agent.P99MS)},
				{r.Echo.Name, fmt.Sprint(r.Echo.N), fmt.Sprintf("%.3f", r.Echo.P50MS), fmt.Sprintf("%.3f", r.Echo.P99MS)},
				{"ratio", "", fmt.Sprintf("%.2f", r.RatioP50), fmt.Sprintf("%.2f", r.RatioP99)},
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().StringVar(&url, "broker", "", "broker to measure through (default: an embedded one)")
	c.Flags().IntVar(&n, "n", 2000, "round trips per side")
	return c
}

// throughputReport is `delen bench throughput --json`.
type throughputReport struct {
	Unbatched *agentbench.ThroughputResult `json:"unbatched"`
	Batched   *agentbench.ThroughputResult `json:"batched"`
	// BatchingGain is batched agent req/s ÷ unbatched agent req/s.
	BatchingGain float64 `json:"batching_gain"`
}

func newBenchThroughputCmd(g *globals) *cobra.Command {
	var asJSON bool
	var url, model string
	var n, exit, workers, batch int
	c := &cobra.Command{
		Use:   "throughput",
		Short: "saturated agent req/s vs a bare ONNX Runtime loop, with and without stage batching",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			u, emb, stop, err := benchBroker(ctx, g, url)
			if err != nil {
				return err
			}
			defer stop()
			o := agentbench.Options{BrokerURL: u, Embedded: emb, N: n, Model: model, Exit: exit, Workers: workers, Logger: g.quietLogger(), ZooDirs: g.openZoo().Dirs}
			rep := &throughputReport{}
			o.MaxBatch = 1
			if rep.Unbatched, err = agentbench.Throughput(ctx, o); err != nil {
				return err
			}
			o.MaxBatch = batch
			if rep.Batched, err = agentbench.Throughput(ctx, o); err != nil {
				return err
			}
			rep.BatchingGain = rep.Batched.Agent.RPS / rep.Unbatched.Agent.RPS
			if asJSON {
				return printJSON(cmd.OutOrStdout(), rep)
			}
			var rows [][]string
			for _, r := range []*agentbench.ThroughputResult{rep.Unbatched, rep.Batched} {
				rows = append(rows, []string{fmt.Sprint(r.Batch), r.Model, fmt.Sprint(r.Exit), fmt.Sprint(r.Workers),
					fmt.Sprintf("%.0f", r.Agent.RPS), fmt.Sprintf("%.0f", r.Bare.RPS), fmt.Sprintf("%.3f", r.Ratio)})
			}
			if err := table(cmd.OutOrStdout(), []string{"MAX_BATCH", "MODEL", "EXIT", "WORKERS", "AGENT_RPS", "BARE_ORT_RPS", "RATIO"}, rows); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "batching gain (agent req/s, batch %d ÷ batch 1): %.2f\n", batch, rep.BatchingGain)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().StringVar(&url, "broker", "", "broker to measure through (default: an embedded one)")
	c.Flags().StringVar(&model, "model", "mnist-ee", "model")
	c.Flags().IntVar(&exit, "exit", 1, "exit every request is bound to")
	c.Flags().IntVar(&n, "n", 20000, "requests per run")
	c.Flags().IntVar(&workers, "workers", 0, "workers for the agent and the bare loop (default: one per CPU)")
	c.Flags().IntVar(&batch, "batch", 8, "max batch of the batched run")
	return c
}

func newBenchCPUCmd(g *globals) *cobra.Command {
	var asJSON bool
	var url, agentBin string
	var together, withNode bool
	var nodeURL string
	var rate float64
	var dur, warm time.Duration
	c := &cobra.Command{
		Use:   "cpu",
		Short: "the agent's CPU per request at a fixed rate vs a bare paho responder's, each beside its broker's",
		Long: `cpu starts the agent (delen serve) as a process of its own, sends it mnist-ee
requests at --rate from this process (QoS 1, open loop) and reads the agent's
user + system CPU time from /proc over --duration; then the same for a bare
paho responder (subscribe to the requests, publish each payload back). With
--broker (Mosquitto: set_tcp_nodelay true) both use that broker and its
process's CPU is read too; without, the agent serves its embedded broker in
its one process, and the responder gets a process running the embedded
broker alone. The machine's other load counts on both sides alike: compare
ratios of one run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			self, err := os.Executable()
			if err != nil {
				return err
			}
			command := func(bin string) func(args ...string) *exec.Cmd {
				return func(args ...string) *exec.Cmd {
					c := exec.CommandContext(cmd.Context(), bin, args...)
					c.Env = os.Environ()
					return c
				}
			}
			o := agentbench.CPUOptions{BrokerURL: url, Rate: rate, Duration: dur, Warmup: warm,
				Command: command(self), Logger: g.quietLogger(), Node: withNode, NodeBrokerURL: nodeURL}
			if agentBin != "" {
				o.AgentCommand = command(agentBin)
			}
			prog := newProgress(cmd.ErrOrStderr())
			o.Progress = prog.show
			if together {
				if agentBin == "" {
					return errors.New("--together needs --agent-bin")
				}
				r, err := agentbench.CPUPair(cmd.Context(), o)
				prog.clear()
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), r)
				}
				rows := [][]string{cpuRow(&r.Agent), cpuRow(&r.Other)}
				if err := table(cmd.OutOrStdout(), cpuHeader, rows); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "broker %s, %.0f req/s each for %.0f s, side by side: this build ÷ %s %.2f\n",
					r.Broker, r.Rate, r.Seconds, agentBin, r.Ratio)
				return nil
			}
			r, err := agentbench.CPU(cmd.Context(), o)
			prog.clear()
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			rows := [][]string{cpuRow(&r.Agent)}
			if r.AgentBroker != nil {
				rows = append(rows, cpuRow(r.AgentBroker))
			}
			rows = append(rows, cpuRow(&r.Responder))
			if r.ResponderBroker != nil {
				rows = append(rows, cpuRow(r.ResponderBroker))
			}
			if r.Node != nil {
				rows = append(rows, cpuRow(r.Node))
				if r.NodeBroker != nil {
					rows = append(rows, cpuRow(r.NodeBroker))
				}
			}
			if err := table(cmd.OutOrStdout(), cpuHeader, rows); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "broker %s, %.0f req/s for %.0f s: agent ÷ responder %.2f; with their brokers %.2f\n",
				r.Broker, r.Rate, r.Seconds, r.Ratio, r.RatioWithBrokers)
			if r.Node != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "agent ÷ Node.js service %.2f; with their brokers %.2f\n", r.RatioNode, r.RatioNodeWithBrokers)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().StringVar(&url, "broker", "", "external broker `url` (default: the agent's embedded broker)")
	c.Flags().Float64Var(&rate, "rate", 3000, "requests per second")
	c.Flags().DurationVar(&dur, "duration", 10*time.Second, "measured time per side")
	c.Flags().DurationVar(&warm, "warmup", 3*time.Second, "time at the rate before measuring")
	c.Flags().StringVar(&agentBin, "agent-bin", "", "another delen `file` (binary) for the agent's side (to compare builds in one run)")
	c.Flags().BoolVar(&withNode, "node", false, "also measure the simplest service a user would write instead: Node.js, mqtt.js + onnxruntime-node, the full model, the result on receipt (npm installs its packages into the user cache folder once)")
	c.Flags().StringVar(&nodeURL, "node-broker", "", "the Node.js service's broker `url` (default --broker; required with the embedded broker: a Mosquitto)")
	c.Flags().BoolVar(&together, "together", false, "run this build's agent and --agent-bin's side by side, each at --rate over the same interval (no responder): the fairest comparison of two builds on a shared machine")
	return c
}

// newBenchResponderCmd is the bare responder of bench cpu, a process of
// its own.
func newBenchResponderCmd(g *globals) *cobra.Command {
	var url, prefix string
	c := &cobra.Command{
		Use: "responder", Hidden: true, Args: cobra.NoArgs,
		Short: "bench cpu's bare paho responder: publish each request's payload back",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			return agentbench.Respond(ctx, url, prefix, func() { fmt.Fprintln(cmd.OutOrStdout(), "ready") })
		},
	}
	c.Flags().StringVar(&url, "broker", "", "broker `url`")
	c.Flags().StringVar(&prefix, "prefix", "delen", "topic prefix")
	return c
}

// newBenchBrokerCmd runs the embedded broker alone, for bench cpu's
// responder.
func newBenchBrokerCmd(g *globals) *cobra.Command {
	var listen string
	c := &cobra.Command{
		Use: "broker", Hidden: true, Args: cobra.NoArgs,
		Short: "bench cpu's embedded broker, alone in a process",
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			emb, err := broker.NewEmbedded(broker.EmbeddedConfig{Addr: listen, Logger: g.quietLogger()})
			if err != nil {
				return err
			}
			if err := emb.Start(ctx); err != nil {
				return err
			}
			defer emb.Close()
			fmt.Fprintln(cmd.OutOrStdout(), "ready")
			<-ctx.Done()
			return nil
		},
	}
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "`address`")
	return c
}

// cpuHeader and cpuRow are the columns of `bench cpu`'s table: one row
// per process measured.
var cpuHeader = []string{"SIDE", "PID", "SENT", "SERVED", "REFUSED", "CPU_S", "US_PER_REQ", "ANON_MIB", "FILE_MIB", "P50_MS", "P99_MS"}

func cpuRow(s *agentbench.CPUSide) []string {
	lat := func(v float64) string {
		if v == 0 {
			return "-" // a broker's row: the round trips are its client's
		}
		return fmt.Sprintf("%.2f", v)
	}
	return []string{s.Name, fmt.Sprint(s.PID), fmt.Sprint(s.Sent), fmt.Sprint(s.Answered), fmt.Sprint(s.Refused),
		fmt.Sprintf("%.2f", s.CPUSeconds), fmt.Sprintf("%.1f", s.MicrosPerRequest), fmt.Sprintf("%.0f", s.AnonMiB), fmt.Sprintf("%.0f", s.FileMiB),
		lat(s.P50MS), lat(s.P99MS)}
}
