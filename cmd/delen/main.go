// Command delen is the Dělen edge model-serving agent and its tools: serve,
// send, models, profile, history, sim and bench. See the README.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/delen-edge/delen/models/zoo"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "delen:", err)
		os.Exit(1)
	}
}

// globals are the flags every command shares.
type globals struct {
	data     string
	zoo      string
	builtins []string
	logLevel string
	level    slog.Level
	log      *slog.Logger

	cpuProfile string
	stopProf   func()

	logFormat string
	// config is the --config file, when one was given.
	config *fileConfig
	// onReady, set by tests, is called once `serve` is ready, with its
	// broker URL and HTTP address.
	onReady func(brokerURL, httpAddr string)
	// sources says where each flag that is not at its default got its
	// value: fromFlag, fromEnv or fromFile (see configure).
	sources map[string]string
}

// quietLogger logs warnings and errors only, unless --log-level is debug:
// for chatty libraries (the embedded broker and its storage).
func (g *globals) quietLogger() *slog.Logger {
	lvl := max(g.level, slog.LevelWarn)
	if g.level <= slog.LevelDebug {
		lvl = g.level
	}
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func newRoot() *cobra.Command { return newRootWith(&globals{}) }

// newRootWith is the command tree sharing the globals g.
func newRootWith(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:           "delen",
		Short:         "Dělen: flexible, adaptive multi-tenant model serving at the edge",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPostRun: func(cmd *cobra.Command, args []string) {
			if g.stopProf != nil {
				g.stopProf()
			}
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if err := configure(cmd, g); err != nil {
				return err
			}
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			if g.cpuProfile != "" {
				f, err := os.Create(g.cpuProfile)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				g.stopProf = func() { pprof.StopCPUProfile(); f.Close() }
			}
			g.level = lvl
			if g.logFormat == "json" {
				g.log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			} else {
				g.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			}
			return nil
		},
	}
	// Every global flag reads its DELEN_* variable (see configure).
	pf := root.PersistentFlags()
	pf.StringVar(&g.data, "data", "./data", "data `folder` (Badger store, embedded broker state, generated models)")
	pf.StringVar(&g.zoo, "zoo", "", "extra model `folder` to load models from (besides the built-in zoo and <data>/models)")
	pf.StringSliceVar(&g.builtins, "with-builtin", nil, "also list and serve these opt-in built-in `name`s ("+strings.Join(zoo.OptIn(), ", ")+"; comma-separated): embedded, but profiling one on a fresh store takes a while")
	pf.StringVar(&g.cpuProfile, "cpuprofile", "", "write a CPU profile of the command to this `file`")
	choiceVar(pf, &g.logLevel, "log-level", "info", "log level", "debug", "info", "warn", "error")
	choiceVar(pf, &g.logFormat, "log-format", "text", "log format", "text", "json")
	root.AddCommand(newServeCmd(g), newSendCmd(g), newHistoryCmd(g), newModelsCmd(g), newProfileCmd(g), newBenchCmd(g), newSimCmd(g), newPasswdCmd(g))
	return root
}

// storeDir is the Badger folder inside the data folder.
func (g *globals) storeDir() string { return filepath.Join(g.data, "store") }
