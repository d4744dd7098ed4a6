package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/mnist"
	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/models/refimport"
	"github.com/delen-edge/delen/models/replica"
	"github.com/delen-edge/delen/models/train"
	"github.com/delen-edge/delen/models/zoo"
	"github.com/spf13/cobra"
)

// modelsDir is where generated and imported models go: <data>/models.
func (g *globals) modelsDir() string { return filepath.Join(g.data, "models") }

// zoo is the built-in models plus --zoo and <data>/models.
func (g *globals) openZoo() *zoo.Zoo {
	dirs := []string{}
	if g.zoo != "" {
		dirs = append(dirs, g.zoo)
	}
	z := zoo.New(append(dirs, g.modelsDir())...)
	for _, b := range g.builtins {
		if !slices.Contains(zoo.OptIn(), b) {
			g.log.Warn("--with-builtin names no opt-in built-in model", "model", b, "opt_in", zoo.OptIn())
		}
	}
	z.Include = g.builtins
	return z
}

func newModelsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "models", Short: "the model zoo: list, inspect, train, import, gen-replica"}
	c.AddCommand(newListCmd(g), newInspectCmd(g), newTrainCmd(g), newImportCmd(g), newReplicaCmd(g))
	return c
}

// modelSummary is one row of `delen models list`.
type modelSummary struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
	Exits   int    `json:"exits"`
	Source  string `json:"source"`
}

func newListCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "list the models the agent can serve",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			list, err := g.openZoo().List()
			if err != nil {
				g.log.Warn("some model folders could not be read", "err", err)
			}
			out := []modelSummary{}
			for _, e := range list {
				out = append(out, modelSummary{e.Name, e.Manifest.Version, e.Manifest.Kind, len(e.Manifest.Exits), e.Source})
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), out)
			}
			var rows [][]string
			for _, s := range out {
				rows = append(rows, []string{s.Name, s.Version, s.Kind, fmt.Sprint(s.Exits), s.Source})
			}
			return table(cmd.OutOrStdout(), []string{"NAME", "VERSION", "KIND", "EXITS", "SOURCE"}, rows)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

// exitView is one exit in `delen models inspect`.
type exitView struct {
	Exit     int     `json:"exit"`
	Accuracy float64 `json:"accuracy"`
	// AccuracySplit is the data split Accuracy comes from (the manifest's:
	// "test" for the built-in models).
	AccuracySplit string             `json:"accuracy_split,omitempty"`
	FLOPs         float64            `json:"flops"`
	LatencyMS     *profile.Quantiles `json:"latency_ms,omitempty"`
	EnergyMJ      *float64           `json:"energy_mj,omitempty"`
	// MeasuredAccuracy is the profile's accuracy on this device, when
	// profiled with data, and MeasuredAccuracySplit the split it was
	// measured on ("calibration").
	MeasuredAccuracy      *float64 `json:"measured_accuracy,omitempty"`
	MeasuredAccuracySplit string   `json:"measured_accuracy_split,omitempty"`
}

// modelView is `delen models inspect --json`.
type modelView struct {
	Name        string               `json:"name"`
	Version     string               `json:"version"`
	Kind        string               `json:"kind"`
	Description string               `json:"description,omitempty"`
	Source      string               `json:"source"`
	Input       models.InputSpec     `json:"input"`
	Classes     int                  `json:"classes"`
	Exits       []exitView           `json:"exits"`
	Profile     *profileRef          `json:"profile,omitempty"`
	Training    *models.TrainingInfo `json:"training,omitempty"`
}

type profileRef struct {
	Device       string    `json:"device"`
	EnergySource string    `json:"energy_source"`
	CreatedAt    time.Time `json:"created_at"`
}

func newInspectCmd(g *globals) *cobra.Command {
	var asJSON bool
	var agent agentHTTP
	c := &cobra.Command{
		Use:   "inspect NAME",
		Short: "show a model's exits: accuracy, FLOPs and, once profiled, latency and energy",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := g.openZoo().Find(args[0])
			if err != nil {
				return err
			}
			m := e.Manifest
			v := modelView{Name: m.Name, Version: m.Version, Kind: m.Kind, Description: m.Description,
				Source: e.Source, Input: m.Input, Classes: len(m.Classes), Training: m.Training}
			p, err := g.storedProfile(m, &agent)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			for i, ex := range m.Exits {
				ev := exitView{Exit: i + 1, Accuracy: ex.Accuracy, AccuracySplit: ex.AccuracySplit, FLOPs: ex.FLOPs}
				if p != nil && i < len(p.Exits) {
					pe := p.Exits[i]
					q, en := pe.LatencyMS, pe.EnergyMJ
					ev.LatencyMS, ev.EnergyMJ = &q, &en
					if pe.AccuracyFrom == "measured" {
						a := pe.Accuracy
						ev.MeasuredAccuracy = &a
						ev.MeasuredAccuracySplit = pe.AccuracySplit
					}
				}
				v.Exits = append(v.Exits, ev)
			}
			if p != nil {
				v.Profile = &profileRef{Device: p.Device, EnergySource: p.EnergySource, CreatedAt: p.CreatedAt}
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), v)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "%s version %s (%s) from %s\n", v.Name, v.Version, v.Kind, v.Source)
			if v.Description != "" {
				fmt.Fprintln(w, v.Description)
			}
			fmt.Fprintf(w, "input %s %v, %d classes\n", m.Input.DType, m.Input.Shape, v.Classes)
			if v.Profile != nil {
				fmt.Fprintf(w, "profile: device %s, energy from %s, %s\n", p.Device, p.EnergySource, p.CreatedAt.Format(time.RFC3339))
			} else {
				fmt.Fprintf(w, "not profiled on this device yet (run `delen profile %s`)\n", m.Name)
			}
			var rows [][]string
			for _, ex := range v.Exits {
				split := ex.AccuracySplit
				if split == "" {
					split = "-"
				}
				r := []string{fmt.Sprint(ex.Exit), fmt.Sprintf("%.4f", ex.Accuracy), split, fmt.Sprintf("%.3g", ex.FLOPs), "-", "-", "-", "-", "-"}
				if ex.LatencyMS != nil {
					r[4] = fmt.Sprintf("%.3f", ex.LatencyMS.P50)
					r[5] = fmt.Sprintf("%.3f", ex.LatencyMS.P95)
					r[6] = fmt.Sprintf("%.3f", ex.LatencyMS.P99)
					r[7] = fmt.Sprintf("%.3f", *ex.EnergyMJ)
				}
				if ex.MeasuredAccuracy != nil {
					r[8] = fmt.Sprintf("%.4f (%s)", *ex.MeasuredAccuracy, ex.MeasuredAccuracySplit)
				}
				rows = append(rows, r)
			}
			return table(w, []string{"EXIT", "ACCURACY", "SPLIT", "FLOPS", "P50_MS", "P95_MS", "P99_MS", "ENERGY_MJ", "PROFILED_ACCURACY"}, rows)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	agent.addFlags(c.Flags(), false)
	return c
}

// storedProfile reads m's profile for this device, if there is one: from
// the store, or through the running agent's HTTP endpoint while the agent
// holds the store (see fromStoreOrAgent). No store means no profile.
func (g *globals) storedProfile(m *models.Manifest, agent *agentHTTP) (*profile.Profile, error) {
	var p *profile.Profile
	err := fromStoreOrAgent(g, func() error {
		var got profile.Profile
		err := agent.get("/profile", url.Values{"model": {m.Name}, "version": {m.Version}}, &got)
		if errors.Is(err, errNotFound) {
			return store.ErrNotFound
		}
		p = &got
		return err
	}, func(s *store.Store) (err error) {
		p, err = s.Profile(m.Name, m.Version, profile.DeviceID())
		return err
	})
	if errors.Is(err, errNoStore) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

func newTrainCmd(g *globals) *cobra.Command {
	var out string
	var epochs int
	var seed uint64
	c := &cobra.Command{
		Use:   "train NAME",
		Short: "train a built-in model (" + train.ModelName + " or " + train.LargeName + ") on MNIST's training split and write its folder",
		Long: `Trains a built-in model on the first 50,000 MNIST training images, measures
each exit's accuracy on the 10,000 held-out test images (written into the
manifest) and writes the model folder. The last 10,000 training images
(the calibration split) are not used: profiles and the accuracy policy
calibrate on them. ` + train.LargeName + ` trains with OpenBLAS when it loads
(Debian's libopenblas0; $` + train.BackendEnv + `=go forces the portable loops).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if name != train.ModelName && name != train.LargeName {
				return fmt.Errorf("no trainer for %q (trainable: %s, %s)", name, train.ModelName, train.LargeName)
			}
			if out == "" {
				out = "models/zoo/" + name
			}
			set, err := mnist.Train()
			if err != nil {
				return err
			}
			test, err := mnist.Test()
			if err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			prog := newProgress(stderr)
			// On a terminal the status line is redrawn; in a log, a line
			// every 30 s and at the end of each epoch.
			var logged time.Time
			progress := func(s train.Status) {
				if prog.on {
					prog.show(s.String())
				} else if time.Since(logged) >= 30*time.Second || s.Step == s.Steps {
					logged = time.Now()
					fmt.Fprintln(stderr, s)
				}
			}
			var export func(ev train.Evaluation, info *models.TrainingInfo) error
			var ev train.Evaluation
			var took time.Duration
			trainer := "go"
			switch name {
			case train.ModelName:
				opt := train.Options{Seed: seed, Epochs: epochs, Progress: progress}
				if opt.Epochs == 0 {
					opt.Epochs = 3
				}
				epochs = opt.Epochs
				fmt.Fprintf(stderr, "training %s on %d MNIST images (seed %d, %d epochs)\n", name, set.Len(), seed, epochs)
				start := time.Now()
				net, err := train.Train(cmd.Context(), set, opt)
				prog.keep()
				if err != nil {
					return err
				}
				took = time.Since(start)
				ev = train.Evaluate(net, test)
				export = func(ev train.Evaluation, info *models.TrainingInfo) error {
					_, err := train.Export(net, out, ev, info)
					return err
				}
			case train.LargeName:
				be := train.NewBackend()
				trainer = be.Name
				net, err := train.NewNetwork(train.LargeArch(), seed)
				if err != nil {
					return err
				}
				opt := train.BatchOptions{Seed: seed, Epochs: epochs, Backend: be, Progress: progress}
				if opt.Epochs == 0 {
					opt.Epochs = train.LargeEpochs
				}
				epochs = opt.Epochs
				fl := net.FLOPs()
				fmt.Fprintf(stderr, "training %s on %d MNIST images (seed %d, %d epochs, %d parameters, %.1f MFLOPs at the last exit, arithmetic: %s)\n",
					name, set.Len(), seed, epochs, net.Size(), fl[len(fl)-1]/1e6, be.Name)
				start := time.Now()
				err = train.TrainNetwork(cmd.Context(), net, set, opt)
				prog.keep()
				if err != nil {
					return err
				}
				took = time.Since(start)
				ev = train.EvaluateNetwork(net, test, be)
				export = func(ev train.Evaluation, info *models.TrainingInfo) error {
					_, err := train.ExportNetwork(net, out, ev, info)
					return err
				}
			}
			ev.Split = mnist.SplitTest
			fmt.Fprintf(stderr, "test accuracy per exit (%d held-out images):", ev.Count)
			for _, a := range ev.Accuracy {
				fmt.Fprintf(stderr, " %.4f", a)
			}
			fmt.Fprintln(stderr)
			info := &models.TrainingInfo{
				Command: fmt.Sprintf("delen models train %s --seed %d --epochs %d", name, seed, epochs),
				Seed:    int64(seed), Epochs: epochs, Dataset: "MNIST (" + mnist.GoModule + ")",
				Seconds: took.Round(time.Second).Seconds(), TrainSize: set.Len(), TestSize: ev.Count,
				Splits: mnist.Splits(), Trainer: trainer,
			}
			if err := export(ev, info); err != nil {
				return err
			}
			// Check what was written by loading it in ONNX Runtime.
			m, err := models.Load(out, models.LoadOptions{Monolithic: true})
			if err != nil {
				return fmt.Errorf("written model does not load: %w", err)
			}
			m.Close()
			fmt.Fprintf(stderr, "wrote %s (trained in %s)\n", out, took.Round(time.Second))
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "output folder (default models/zoo/NAME)")
	c.Flags().Uint64Var(&seed, "seed", 1, "random seed (weights and shuffling)")
	c.Flags().IntVar(&epochs, "epochs", 0, fmt.Sprintf("passes over the 50,000 images of the training split (default %d for %s, %d for %s)",
		3, train.ModelName, train.LargeEpochs, train.LargeName))
	return c
}

func newImportCmd(g *globals) *cobra.Command {
	var from, name, out string
	c := &cobra.Command{
		Use:   "import --from-delen DIR --name NAME",
		Short: "convert the reference implementation's export (<m>_netNN.onnx + <m>_profile.json) into a model folder",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" {
				return errors.New("--from-delen DIR is required")
			}
			if out == "" {
				n := name
				if n == "" {
					n = filepath.Base(filepath.Clean(from))
				}
				out = filepath.Join(g.modelsDir(), n)
			}
			if err := models.InitRuntime(); err != nil {
				return err
			}
			m, err := refimport.Import(from, name, out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported %s (%d exits) into %s\n", m.Name, len(m.Exits), out)
			return nil
		},
	}
	c.Flags().StringVar(&from, "from-delen", "", "folder with the reference export")
	c.Flags().StringVar(&name, "name", "", "model name (default: the export's file prefix)")
	c.Flags().StringVar(&out, "out", "", "output folder (default <data>/models/NAME)")
	return c
}

func newReplicaCmd(g *globals) *cobra.Command {
	var out string
	var seed int64
	c := &cobra.Command{
		Use:   "gen-replica NAME",
		Short: "write a cost replica of the reference setup (" + replica.Name + "): real compute, random weights",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != replica.Name {
				return fmt.Errorf("no replica called %q (available: %s)", args[0], replica.Name)
			}
			if out == "" {
				out = filepath.Join(g.modelsDir(), replica.Name)
			}
			if err := os.MkdirAll(out, 0o755); err != nil {
				return err
			}
			stderr := cmd.ErrOrStderr()
			m, err := replica.Generate(out, replica.Options{Seed: seed, Progress: func(s string) { fmt.Fprintln(stderr, s) }})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d exits, %.2f GFLOPs at the last) into %s\n", m.Name, len(m.Exits), m.Exits[len(m.Exits)-1].FLOPs/1e9, out)
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "output folder (default <data>/models/NAME)")
	c.Flags().Int64Var(&seed, "seed", 1, "weight seed")
	return c
}
