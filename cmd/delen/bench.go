package main

import (
	"fmt"

	"github.com/delen-edge/delen/models"
	"github.com/spf13/cobra"
)

func newBenchCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "bench", Short: "performance figures, each as a ratio of two sides measured in one run"}
	c.AddCommand(newBenchExecutorCmd(g))
	return c
}

func newBenchExecutorCmd(g *globals) *cobra.Command {
	var asJSON bool
	var name string
	var reps, warmup, batch int
	c := &cobra.Command{
		Use:   "executor",
		Short: "all stages in sequence vs the monolithic model: medians and their ratio",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := g.openZoo().Load(name, models.LoadOptions{Monolithic: true})
			if err != nil {
				return err
			}
			defer m.Close()
			opt := models.BenchOptions{Reps: reps, Warmup: warmup, Batch: batch,
				Progress: func(s string) { fmt.Fprintf(cmd.ErrOrStderr(), "\r%s", s) }}
			if data, _ := validationData(m.Manifest); data != nil {
				per := m.Manifest.SampleSize()
				opt.Fill = func(r int, dst []float32) {
					for j := 0; j*per < len(dst); j++ {
						data.Sample((r*batch+j)%data.Len(), dst[j*per:(j+1)*per])
					}
				}
			}
			r, err := models.BenchExecutor(cmd.Context(), m, opt)
			fmt.Fprint(cmd.ErrOrStderr(), "\r\033[K")
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), r)
			}
			return table(cmd.OutOrStdout(), []string{"MODEL", "EXITS", "BATCH", "REPS", "STAGED_MS", "MONOLITHIC_MS", "RATIO", "PAIRED_RATIO"},
				[][]string{{r.Model, fmt.Sprint(r.Exits), fmt.Sprint(r.Batch), fmt.Sprint(r.Reps),
					fmt.Sprintf("%.4f", r.StagedMS), fmt.Sprintf("%.4f", r.MonoMS), fmt.Sprintf("%.3f", r.Ratio), fmt.Sprintf("%.3f", r.PairedRatio)}})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	c.Flags().StringVar(&name, "model", "mnist-ee", "model to measure")
	c.Flags().IntVar(&reps, "reps", 500, "timed repetitions of each side")
	c.Flags().IntVar(&warmup, "warmup", 50, "warm-up repetitions")
	c.Flags().IntVar(&batch, "batch", 1, "batch size")
	return c
}
