// Package zoo is the model zoo: the built-in models embedded in the binary
// (mnist-ee, and mnist-ee-large on request: see OptIn) and model folders found under extra directories, such as the
// agent's data folder where `delen models gen-replica` and `delen models
// import` write.
package zoo

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/mnist"
)

//go:embed mnist-ee/manifest.json mnist-ee/*.onnx
//go:embed mnist-ee-large/manifest.json mnist-ee-large/*.onnx
var builtin embed.FS

// Builtin is the file system of the built-in models, one folder each.
func Builtin() fs.FS { return builtin }

// ErrUnknownModel is returned for a name no folder of the zoo carries.
var ErrUnknownModel = errors.New("unknown model")

// Entry is one model the zoo can load.
type Entry struct {
	Name     string
	Source   string // "builtin" or the folder it was found in
	Manifest *models.Manifest
	fsys     fs.FS
	dir      string
}

// optIn names the built-in models that are embedded but not listed, and so
// not served by the agent, unless a Zoo's Include names them.
var optIn = map[string]bool{"mnist-ee-large": true}

// OptIn returns the names of the built-in models a zoo lists only when its
// Include names them: mnist-ee-large, whose first profile on a device runs
// the 10,000 calibration images through ~103 MFLOPs each (about half a
// minute on a 2-core machine), which every agent start with a fresh store
// would otherwise pay. Find and Load find them by name either way (so
// `delen models inspect`, `delen profile` and `delen bench` work on them).
func OptIn() []string {
	out := make([]string, 0, len(optIn))
	for n := range optIn {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Zoo finds models: the built-in ones and every folder with a manifest
// directly under each of Dirs. A folder model shadows a built-in model of
// the same name; an earlier Dirs entry shadows a later one.
type Zoo struct {
	Dirs []string
	// Include names opt-in built-in models (see OptIn) to list too.
	Include []string
}

// New returns a zoo over the built-in models and dirs (missing dirs are
// skipped).
func New(dirs ...string) *Zoo { return &Zoo{Dirs: dirs} }

// List returns the zoo's models, sorted by name. Folders whose manifest
// does not read are reported in the error but do not hide the others.
func (z *Zoo) List() ([]Entry, error) { return z.list(false) }

// list is List, with every opt-in built-in model when all is set.
func (z *Zoo) list(all bool) ([]Entry, error) {
	seen := map[string]Entry{}
	var errs []error
	for i := len(z.Dirs) - 1; i >= -1; i-- {
		var fsys fs.FS
		source := "builtin"
		if i == -1 {
			fsys = builtin
		} else {
			fsys = os.DirFS(z.Dirs[i])
			source = z.Dirs[i]
		}
		ents, err := fs.ReadDir(fsys, ".")
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		for _, e := range ents {
			if !e.IsDir() {
				continue
			}
			if _, err := fs.Stat(fsys, e.Name()+"/"+models.ManifestFile); err != nil {
				continue
			}
			m, err := models.ReadManifest(fsys, e.Name())
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", filepath.Join(source, e.Name()), err))
				continue
			}
			if _, dup := seen[m.Name]; dup && i == -1 {
				continue // a folder model shadows the built-in one
			}
			if i == -1 && optIn[m.Name] && !all && !slices.Contains(z.Include, m.Name) {
				continue
			}
			seen[m.Name] = Entry{Name: m.Name, Source: source, Manifest: m, fsys: fsys, dir: e.Name()}
		}
	}
	out := make([]Entry, 0, len(seen))
	for _, e := range seen {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, errors.Join(errs...)
}

// Find returns the zoo entry called name.
// Opt-in built-in models are found whether or not Include names them.
func (z *Zoo) Find(name string) (Entry, error) {
	list, err := z.list(true)
	for _, e := range list {
		if e.Name == name {
			return e, nil
		}
	}
	if err != nil {
		return Entry{}, fmt.Errorf("%w %q (%v)", ErrUnknownModel, name, err)
	}
	return Entry{}, fmt.Errorf("%w %q", ErrUnknownModel, name)
}

// Load opens the model called name.
func (z *Zoo) Load(name string, opt models.LoadOptions) (*models.Model, error) {
	e, err := z.Find(name)
	if err != nil {
		return nil, err
	}
	return e.Load(opt)
}

// Load opens the entry's model.
func (e Entry) Load(opt models.LoadOptions) (*models.Model, error) {
	return models.LoadFS(e.fsys, e.dir, opt)
}

// The labelled data a model is run on comes from these two functions, one
// per use, so that tuning never sees the images accuracy is reported on
// (the splits are described in package mnist):
//
//   - CalibrationData: what profiles measure exit accuracy, confidence
//     calibration and the per-sample validation confidences on, and so
//     what the accuracy policy tunes its thresholds on.
//   - TestData: held-out images that only report accuracy (the manifest's
//     per-exit accuracy, benchmarks); never tune on them.
//
// Both return the data and its split name (mnist.SplitCalibration or
// mnist.SplitTest; mnist.Splits() describes it), or nil and "" when the
// model has no labelled data: only models that take a 1×28×28 digit and
// have 10 classes get MNIST, and cost replicas get none (their logits mean
// nothing).

// CalibrationData is the calibration split for m: the last 10,000 MNIST
// training images, embedded in the binary.
func CalibrationData(m *models.Manifest) (models.Labeled, string) {
	return digits(m, mnist.Calibration, mnist.SplitCalibration)
}

// TestData is the held-out test split for m: the 10,000 MNIST test images,
// embedded in the binary. Use it to report accuracy only.
func TestData(m *models.Manifest) (models.Labeled, string) {
	return digits(m, mnist.Test, mnist.SplitTest)
}

func digits(m *models.Manifest, read func() (*mnist.Set, error), split string) (models.Labeled, string) {
	if m.Kind == models.KindCostReplica || len(m.Classes) != 10 || len(m.Input.Shape) != 3 ||
		m.Input.Shape[0] != 1 || m.Input.Shape[1] != mnist.Side || m.Input.Shape[2] != mnist.Side {
		return nil, ""
	}
	set, err := read()
	if err != nil {
		return nil, ""
	}
	return set, split
}
