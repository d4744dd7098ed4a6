package main

import (
	"fmt"
	"os"
	"time"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/models/train"
	"github.com/spf13/cobra"
)

func newModelsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "models", Short: "the model zoo: list, inspect, train, import, gen-replica"}
	c.AddCommand(newTrainCmd(g))
	return c
}

func newTrainCmd(g *globals) *cobra.Command {
	var out string
	var opt train.Options
	var seed uint64
	c := &cobra.Command{
		Use:   "train NAME",
		Short: "train a built-in model (mnist-ee) on MNIST and write its folder",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != train.ModelName {
				return fmt.Errorf("no trainer for %q (trainable: %s)", args[0], train.ModelName)
			}
			if out == "" {
				out = "models/zoo/" + train.ModelName
			}
			opt.Seed = seed
			set, err := mnist.Train()
			if err != nil {
				return err
			}
			test, err := mnist.Test()
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			fmt.Fprintf(stderr, "training %s on %d MNIST images (seed %d, %d epochs)\n", train.ModelName, set.Len(), seed, opt.Epochs)
			opt.Progress = func(s train.Status) { fmt.Fprintf(stderr, "\r%s ", s) }
			start := time.Now()
			net, err := train.Train(cmd.Context(), set, opt)
			fmt.Fprintln(stderr)
			if err != nil {
				return err
			}
			took := time.Since(start)
			ev := train.Evaluate(net, test)
			fmt.Fprintf(stderr, "test accuracy per exit (%d images): %.4f %.4f %.4f\n", ev.Count, ev.Accuracy[0], ev.Accuracy[1], ev.Accuracy[2])
			info := &models.TrainingInfo{
				Command: fmt.Sprintf("delen models train %s --seed %d --epochs %d", train.ModelName, seed, opt.Epochs),
				Seed:    int64(seed), Epochs: opt.Epochs, Dataset: "MNIST (" + mnist.GoModule + ")",
				Seconds: took.Round(time.Second).Seconds(), TestSize: ev.Count,
			}
			if _, err := train.Export(net, out, ev, info); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "wrote %s (trained in %s)\n", out, took.Round(time.Second))
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "output folder (default models/zoo/NAME)")
	c.Flags().Uint64Var(&seed, "seed", 1, "random seed (weights and shuffling)")
	c.Flags().IntVar(&opt.Epochs, "epochs", 3, "passes over the 60,000 training images")
	return c
}
