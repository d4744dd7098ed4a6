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
	"syscall"

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
	logLevel string
	level    slog.Level
	log      *slog.Logger

	cpuProfile string
	stopProf   func()

	logFormat string
	// config is the --config file, when one was given.
	config *fileConfig
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

func newRoot() *cobra.Command {
	g := &globals{}
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
			if err := applyConfigFile(cmd, g); err != nil {
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
			switch g.logFormat {
			case "text":
				g.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			case "json":
				g.log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
			default:
				return errBadChoice("log-format", g.logFormat, "text", "json")
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&g.data, "data", envOr("DELEN_DATA", "./data"), "data folder (Badger store)")
	root.PersistentFlags().StringVar(&g.zoo, "zoo", envOr("DELEN_ZOO", ""), "extra model folder to load models from (besides the built-in zoo)")
	root.PersistentFlags().StringVar(&g.cpuProfile, "cpuprofile", "", "write a CPU profile of the command to this file")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", envOr("DELEN_LOG_LEVEL", "info"), "debug, info, warn or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", envOr("DELEN_LOG_FORMAT", "text"), "log format: text or json")
	root.AddCommand(newServeCmd(g), newSendCmd(g), newHistoryCmd(g), newModelsCmd(g), newProfileCmd(g), newBenchCmd(g), newSimCmd(g), newPasswdCmd(g))
	return root
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// storeDir is the Badger folder inside the data folder.
func (g *globals) storeDir() string { return filepath.Join(g.data, "store") }
