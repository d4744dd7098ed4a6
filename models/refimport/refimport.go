// Package refimport converts the reference implementation's export of a
// multi-exit model into a Dělen model folder.
//
// The reference export is a folder holding, for one model <m>:
//
//	<m>_net00.onnx, <m>_net01.onnx, …  one file per stage, numbered from 00
//	<m>_profile.json                   one object per exit
//
// Every stage file takes a tensor named "input" (the image for stage 0, the
// previous stage's features otherwise) and outputs "output" (its exit's
// logits) and, on all stages but the last, "features". The profile is a JSON
// list like [{"accuracy": 0.43, "flops": 0.81, "energy": 45.99}, …] with
// cumulative GFLOPs and cumulative energy in mJ.
package refimport

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/delen-edge/delen/models"
	ort "github.com/yalue/onnxruntime_go"
)

// Tensor names the reference export uses in every stage file.
const (
	// InputName is every stage's input: the image for stage 0, the previous
	// stage's features otherwise.
	InputName = "input"
	// FeaturesName is the features output of every stage but the last.
	FeaturesName = "features"
	// LogitsName is every stage's exit logits output.
	LogitsName = "output"
)

// ErrBadExport is wrapped by every error about the export's contents (as
// opposed to I/O errors or a missing ONNX Runtime).
var ErrBadExport = errors.New("bad reference export")

// stageRe matches a stage file name: <model>_net<NN>.onnx.
var stageRe = regexp.MustCompile(`^(.+)_net(\d+)\.onnx$`)

// profileName is the profile's file name, given the model prefix.
const profileName = "%s_profile.json"

// bad returns an ErrBadExport error about file.
func bad(file, format string, a ...any) error {
	return fmt.Errorf("%s: %w: %s", file, ErrBadExport, fmt.Sprintf(format, a...))
}

// Import converts the reference export in srcDir into a model folder in
// dstDir (created if needed) and returns its manifest. The export's model
// prefix <m> is discovered from the <m>_netNN.onnx files: there must be
// exactly one. name is the manifest's model name; empty means <m>
// lower-cased. The stage files are copied as stage00.onnx, stage01.onnx, …;
// the input's shape and dtype come from stage 0 (batch dimension dropped),
// the classes ("0" … "K-1") from the last stage's output; exits come from
// the profile (GFLOPs × 1e9 into FLOPs, energy into energy_mj).
//
// Everything is checked before anything is written: stage numbering,
// tensor names, features shapes chaining from one stage into the next, the
// same number of classes at every exit, and one profile entry per stage.
// Errors name the offending file and wrap ErrBadExport. Import initialises
// ONNX Runtime (models.InitRuntime) to read the stage files.
func Import(srcDir, name, dstDir string) (*models.Manifest, error) {
	prefix, files, err := discover(srcDir)
	if err != nil {
		return nil, err
	}
	profilePath := filepath.Join(srcDir, fmt.Sprintf(profileName, prefix))
	exits, err := readProfile(profilePath)
	if err != nil {
		return nil, err
	}
	if len(exits) != len(files) {
		return nil, bad(profilePath, "%d exits for %d stages (%s … %s): want one per stage",
			len(exits), len(files), files[0], files[len(files)-1])
	}
	if err := models.InitRuntime(); err != nil {
		return nil, err
	}
	in, classes, err := inspect(srcDir, files)
	if err != nil {
		return nil, err
	}

	if name == "" {
		name = strings.ToLower(prefix)
	}
	m := &models.Manifest{
		Name:    name,
		Version: "1",
		Kind:    models.KindImported,
		Description: fmt.Sprintf("Imported from the reference implementation's export %s … %s with %s.",
			files[0], files[len(files)-1], filepath.Base(profilePath)),
		Input: in,
		Exits: exits,
	}
	for c := range classes {
		m.Classes = append(m.Classes, strconv.Itoa(c))
	}
	for i := range files {
		s := models.StageSpec{File: fmt.Sprintf("stage%02d.onnx", i), Input: InputName,
			Outputs: models.StageOutputs{Features: FeaturesName, Logits: LogitsName}}
		if i == len(files)-1 {
			s.Outputs.Features = ""
		}
		m.Stages = append(m.Stages, s)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", srcDir, err)
	}

	if err := os.MkdirAll(dstDir, 0o755); err != nil {
		return nil, err
	}
	for i, f := range files {
		if err := copyFile(filepath.Join(srcDir, f), filepath.Join(dstDir, m.Stages[i].File)); err != nil {
			return nil, err
		}
	}
	if err := models.WriteManifest(dstDir, m); err != nil {
		return nil, err
	}
	return m, nil
}

// discover finds the single model prefix in dir and its stage files, in
// stage order, checking they are numbered 0, 1, … without gaps.
func discover(dir string) (string, []string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", nil, err
	}
	byPrefix := map[string]map[int]string{}
	for _, e := range entries {
		mt := stageRe.FindStringSubmatch(e.Name())
		if mt == nil || e.IsDir() {
			continue
		}
		idx, err := strconv.Atoi(mt[2])
		if err != nil {
			return "", nil, bad(filepath.Join(dir, e.Name()), "stage number %q: %v", mt[2], err)
		}
		if byPrefix[mt[1]] == nil {
			byPrefix[mt[1]] = map[int]string{}
		}
		if prev, ok := byPrefix[mt[1]][idx]; ok {
			return "", nil, bad(filepath.Join(dir, e.Name()), "stage %d also in %s", idx, prev)
		}
		byPrefix[mt[1]][idx] = e.Name()
	}
	switch len(byPrefix) {
	case 0:
		return "", nil, bad(dir, "no stage files: want <model>_net00.onnx, <model>_net01.onnx, …")
	case 1:
	default:
		var ps []string
		for p := range byPrefix {
			ps = append(ps, p)
		}
		slices.Sort(ps)
		return "", nil, bad(dir, "stage files of several models (%s): want exactly one <model>_netNN.onnx set", strings.Join(ps, ", "))
	}
	var prefix string
	var stages map[int]string
	for p, s := range byPrefix {
		prefix, stages = p, s
	}
	files := make([]string, len(stages))
	for i := range files {
		f, ok := stages[i]
		if !ok {
			var have []string
			for idx := range stages {
				have = append(have, stages[idx])
			}
			slices.Sort(have)
			return "", nil, bad(filepath.Join(dir, fmt.Sprintf("%s_net%02d.onnx", prefix, i)),
				"missing: stage numbers are not contiguous from 00 (have %s)", strings.Join(have, ", "))
		}
		files[i] = f
	}
	return prefix, files, nil
}

// readProfile reads the reference profile: a JSON list with one object per
// exit holding accuracy (0..1), flops (cumulative GFLOPs) and energy
// (cumulative mJ, optional). Keys match case-insensitively; values may be
// numbers or numeric strings.
func readProfile(path string) ([]models.ExitSpec, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, bad(path, "missing profile")
	}
	if err != nil {
		return nil, err
	}
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, bad(path, "want a JSON list of {accuracy, flops, energy} objects: %v", err)
	}
	var exits []models.ExitSpec
	for i, obj := range raw {
		vals := map[string]float64{}
		for k, v := range obj {
			key := strings.ToLower(strings.TrimSpace(k))
			if key != "accuracy" && key != "flops" && key != "energy" {
				continue
			}
			if _, dup := vals[key]; dup {
				return nil, bad(path, "exit %d: %s given twice", i+1, key)
			}
			f, err := number(v)
			if err != nil {
				return nil, bad(path, "exit %d: %s: %v", i+1, k, err)
			}
			if f < 0 {
				return nil, bad(path, "exit %d: %s %v is negative", i+1, k, f)
			}
			vals[key] = f
		}
		for _, key := range []string{"accuracy", "flops"} {
			if _, ok := vals[key]; !ok {
				return nil, bad(path, "exit %d: no %s", i+1, key)
			}
		}
		if a := vals["accuracy"]; a > 1 {
			return nil, bad(path, "exit %d: accuracy %v: want 0..1", i+1, a)
		}
		e := models.ExitSpec{Accuracy: vals["accuracy"], FLOPs: vals["flops"] * 1e9, EnergyMJ: vals["energy"]}
		if i > 0 && e.FLOPs < exits[i-1].FLOPs {
			return nil, bad(path, "exit %d: flops %v below exit %d's %v: want cumulative GFLOPs",
				i+1, vals["flops"], i, exits[i-1].FLOPs/1e9)
		}
		exits = append(exits, e)
	}
	return exits, nil
}

// number reads a JSON number or a string holding one; it must be finite.
func number(raw json.RawMessage) (float64, error) {
	var f float64
	if err := json.Unmarshal(raw, &f); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, fmt.Errorf("want a number, got %s", raw)
		}
		if f, err = strconv.ParseFloat(strings.TrimSpace(s), 64); err != nil {
			return 0, fmt.Errorf("want a number, got %s", raw)
		}
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("want a finite number, got %s", raw)
	}
	return f, nil
}

// inspect reads every stage file's inputs and outputs with ONNX Runtime,
// checks names, types and chaining, and returns the model input and the
// number of classes.
func inspect(dir string, files []string) (models.InputSpec, int, error) {
	var in models.InputSpec
	var prevFeatures ort.Shape
	classes := 0
	for i, f := range files {
		path := filepath.Join(dir, f)
		last := i == len(files)-1
		ins, outs, err := ort.GetInputOutputInfo(path)
		if err != nil {
			return in, 0, bad(path, "ONNX Runtime cannot read it: %v", err)
		}
		if len(ins) != 1 || ins[0].Name != InputName {
			return in, 0, bad(path, "want one input named %q, have %s", InputName, names(ins))
		}
		x := ins[0]
		if x.OrtValueType != ort.ONNXTypeTensor || len(x.Dimensions) < 2 {
			return in, 0, bad(path, "input %q: want a tensor with a batch dimension, have %v", InputName, x.Dimensions)
		}
		byName := map[string]ort.InputOutputInfo{}
		for _, o := range outs {
			byName[o.Name] = o
		}
		need := []string{LogitsName}
		if !last {
			need = []string{FeaturesName, LogitsName}
		}
		for _, n := range need {
			o, ok := byName[n]
			if !ok {
				return in, 0, bad(path, "no output named %q (outputs: %s)", n, names(outs))
			}
			if o.OrtValueType != ort.ONNXTypeTensor || o.DataType != ort.TensorElementDataTypeFloat {
				return in, 0, bad(path, "output %q: want a float32 tensor, have %v", n, o.DataType)
			}
		}

		if i == 0 {
			switch x.DataType {
			case ort.TensorElementDataTypeFloat:
				in.DType = "float32"
			case ort.TensorElementDataTypeUint8:
				in.DType = "uint8"
			default:
				return in, 0, bad(path, "input %q: want float32 or uint8, have %v", InputName, x.DataType)
			}
			in.Name, in.Scale = InputName, 1
			in.Shape = slices.Clone(x.Dimensions[1:])
			for _, d := range in.Shape {
				if d <= 0 {
					return in, 0, bad(path, "input %q shape %v: want fixed sizes after the batch dimension", InputName, x.Dimensions)
				}
			}
		} else {
			if x.DataType != ort.TensorElementDataTypeFloat {
				return in, 0, bad(path, "input %q: want float32 (the previous stage's features), have %v", InputName, x.DataType)
			}
			if !chains(prevFeatures, x.Dimensions) {
				return in, 0, bad(path, "input %q shape %v does not take %s's %q shape %v",
					InputName, x.Dimensions, files[i-1], FeaturesName, prevFeatures)
			}
		}
		if !last {
			prevFeatures = byName[FeaturesName].Dimensions
		}

		o := byName[LogitsName]
		if len(o.Dimensions) != 2 || o.Dimensions[1] <= 0 {
			return in, 0, bad(path, "output %q shape %v: want [batch, classes] with a fixed number of classes", LogitsName, o.Dimensions)
		}
		k := int(o.Dimensions[1])
		if i > 0 && k != classes {
			return in, 0, bad(path, "output %q has %d classes, %s's has %d: every exit must have the same classes",
				LogitsName, k, files[i-1], classes)
		}
		classes = k
	}
	return in, classes, nil
}

// chains reports whether a stage input of shape in can take features of
// shape feat: same rank and the same sizes after the batch dimension, where
// a dynamic size (-1) on either side matches anything.
func chains(feat, in ort.Shape) bool {
	if len(feat) != len(in) {
		return false
	}
	for j := 1; j < len(in); j++ {
		if feat[j] >= 0 && in[j] >= 0 && feat[j] != in[j] {
			return false
		}
	}
	return true
}

// names lists the tensor names in infos, for error messages.
func names(infos []ort.InputOutputInfo) string {
	if len(infos) == 0 {
		return "none"
	}
	var s []string
	for _, x := range infos {
		s = append(s, strconv.Quote(x.Name))
	}
	return strings.Join(s, ", ")
}

// copyFile copies src to dst, replacing dst.
func copyFile(src, dst string) (err error) {
	r, err := os.Open(src)
	if err != nil {
		return err
	}
	defer r.Close()
	w, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := w.Close(); err == nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(w, r); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}
