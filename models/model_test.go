package models_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/energy"
	"github.com/delen-edge/delen/models/modeltest"
)

func writeTiny(t *testing.T, o modeltest.Options) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := modeltest.Write(dir, o); err != nil {
		t.Fatal(err)
	}
	return dir
}

func editManifest(t *testing.T, dir string, edit func(m map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, models.ManifestFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, _ = json.Marshal(m)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func stage(m map[string]any, i int) map[string]any {
	return m["stages"].([]any)[i].(map[string]any)
}

func TestLoadValidation(t *testing.T) {
	cases := []struct {
		name    string
		break_  func(t *testing.T, dir string)
		wantErr error
		want    []string // substrings of the error
	}{
		{"missing manifest", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "manifest.json")) },
			os.ErrNotExist, []string{"manifest.json"}},
		{"manifest not JSON", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "manifest.json"), []byte("{nope"), 0o644)
		}, models.ErrBadManifest, []string{"manifest.json"}},
		{"more exits than stages", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) {
				m["exits"] = append(m["exits"].([]any), map[string]any{"accuracy": 0.9, "flops": 1e9})
			})
		}, models.ErrBadManifest, []string{"4 exits for 3 stages"}},
		{"flops not cumulative", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["exits"].([]any)[2].(map[string]any)["flops"] = 1.0 })
		}, models.ErrBadManifest, []string{"cumulative"}},
		{"bad dtype", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["input"].(map[string]any)["dtype"] = "int64" })
		}, models.ErrBadManifest, []string{"dtype"}},
		{"stage file outside the folder", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { stage(m, 1)["file"] = "../x.onnx" })
		}, models.ErrBadManifest, []string{"stages[1].file"}},
		{"missing stage file", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, "stage1.onnx")) },
			os.ErrNotExist, []string{"stage 1", "stage1.onnx"}},
		{"stage file not ONNX", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "stage2.onnx"), []byte("not a model"), 0o644)
		}, models.ErrBadModel, []string{"stage2.onnx", "not a loadable ONNX model"}},
		{"input name differs", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { stage(m, 1)["input"] = "x" })
		}, models.ErrBadModel, []string{"stage1.onnx", `input is named "input"`, `"x"`}},
		{"features name differs", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { stage(m, 0)["outputs"].(map[string]any)["features"] = "feat" })
		}, models.ErrBadModel, []string{"stage0.onnx", `no output named "feat"`}},
		{"logits name differs", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { stage(m, 2)["outputs"].(map[string]any)["logits"] = "out" })
		}, models.ErrBadModel, []string{"stage2.onnx", `no output named "out"`}},
		{"features do not chain", func(t *testing.T, dir string) {
			// Replace stage 1 with one from a model whose features have 3 channels.
			other := t.TempDir()
			if _, err := modeltest.Write(other, modeltest.Options{Channels: 3}); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(other, "stage1.onnx"))
			os.WriteFile(filepath.Join(dir, "stage1.onnx"), b, 0o644)
		}, models.ErrBadModel, []string{"stage1.onnx", "does not chain", "stage0.onnx"}},
		{"input shape differs from manifest", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["input"].(map[string]any)["shape"] = []int{1, 9, 9} })
		}, models.ErrBadModel, []string{"stage0.onnx", "input.shape"}},
		{"classes differ from logits", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m map[string]any) { m["classes"] = []string{"a", "b", "c"} })
		}, models.ErrBadModel, []string{"stage0.onnx", "logits"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeTiny(t, modeltest.Options{})
			c.break_(t, dir)
			m, err := models.Load(dir, models.LoadOptions{})
			if err == nil {
				m.Close()
				t.Fatal("loaded a broken model folder")
			}
			if !errors.Is(err, c.wantErr) {
				t.Errorf("error %q does not wrap %v", err, c.wantErr)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestStagesRunOneAtATime(t *testing.T) {
	m, err := models.Load(writeTiny(t, modeltest.Options{}), models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st, err := m.NewState(2)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Release()
	for i := range st.Input() {
		st.Input()[i] = float32(i%7) / 7
	}
	for k := 0; k < m.Exits(); k++ {
		if st.Next() != k {
			t.Fatalf("next stage %d, want %d", st.Next(), k)
		}
		l, err := st.RunStage()
		if err != nil {
			t.Fatal(err)
		}
		if len(l) != 2*m.Classes() {
			t.Fatalf("exit %d: %d logits, want %d", k+1, len(l), 2*m.Classes())
		}
	}
	if !st.Done() {
		t.Fatal("not done after the last stage")
	}
	if _, err := st.RunStage(); !errors.Is(err, models.ErrFinished) {
		t.Fatalf("running past the last stage: %v, want ErrFinished", err)
	}
}

// TestConcurrentStates runs interleaved stages of many states from several
// goroutines and checks each gets the logits a lone run gives.
func TestConcurrentStates(t *testing.T) {
	m, err := models.Load(writeTiny(t, modeltest.Options{}), models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	run := func(seed int) [][]float32 {
		st, err := m.NewState(1)
		if err != nil {
			t.Error(err)
			return nil
		}
		defer st.Release()
		for i := range st.Input() {
			st.Input()[i] = float32((i+seed)%5) / 5
		}
		var out [][]float32
		for !st.Done() {
			l, err := st.RunStage()
			if err != nil {
				t.Error(err)
				return nil
			}
			out = append(out, append([]float32(nil), l...))
		}
		return out
	}
	want := map[int][][]float32{}
	for s := 0; s < 5; s++ {
		want[s] = run(s)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				s := (g + i) % 5
				got := run(s)
				for k := range got {
					for j := range got[k] {
						if got[k][j] != want[s][k][j] {
							t.Errorf("goroutine %d: exit %d logit %d differs", g, k+1, j)
							return
						}
					}
				}
			}
		}()
	}
	wg.Wait()
}

func TestFixedBatchRefusesBatches(t *testing.T) {
	m, err := models.Load(writeTiny(t, modeltest.Options{FixedBatch: true}), models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.DynamicBatch(0) {
		t.Fatal("fixed-batch stage reported dynamic")
	}
	if _, err := m.NewState(4); err == nil {
		t.Fatal("batch of 4 accepted by a fixed-batch model")
	}
}

// TestRunBatchEqualsSingle runs states stage by stage in batches of
// several and checks every exit's logits equal those of lone runs.
func TestRunBatchEqualsSingle(t *testing.T) {
	m, err := models.Load(writeTiny(t, modeltest.Options{}), models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const n = 5
	lone := make([][][]float32, n)
	states := make([]*models.State, n)
	for k := 0; k < n; k++ {
		s, err := m.NewState(1)
		if err != nil {
			t.Fatal(err)
		}
		for i := range s.Input() {
			s.Input()[i] = float32((i*(k+1))%11) / 11
		}
		states[k] = s
		ref, _ := m.NewState(1)
		copy(ref.Input(), s.Input())
		for !ref.Done() {
			l, err := ref.RunStage()
			if err != nil {
				t.Fatal(err)
			}
			lone[k] = append(lone[k], append([]float32(nil), l...))
		}
		ref.Release()
	}
	for stage := 0; stage < m.Exits(); stage++ {
		// Batch all but the last state; run the last one alone.
		if err := m.RunBatch(states[:n-1]); err != nil {
			t.Fatal(err)
		}
		if _, err := states[n-1].RunStage(); err != nil {
			t.Fatal(err)
		}
		for k, s := range states {
			got := s.Logits(stage + 1)
			for j := range got {
				if d := got[j] - lone[k][stage][j]; d > 1e-5 || d < -1e-5 {
					t.Fatalf("state %d exit %d logit %d: batched %v, alone %v", k, stage+1, j, got[j], lone[k][stage][j])
				}
			}
		}
	}
}

// TestProviderFallback asks for CUDA and TensorRT from the CPU-only ONNX
// Runtime build: the model still loads, runs on the CPU, and says why.
func TestProviderFallback(t *testing.T) {
	dir := writeTiny(t, modeltest.Options{})
	for _, p := range []string{models.ProviderCUDA, models.ProviderTensorRT} {
		m, err := models.Load(dir, models.LoadOptions{Provider: p})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if m.Provider == p {
			// A GPU build: nothing to fall back from.
			m.Close()
			continue
		}
		if m.Provider != models.ProviderCPU || m.Fallback == "" {
			t.Errorf("%s: provider %q fallback %q, want cpu with a reason", p, m.Provider, m.Fallback)
		}
		st, _ := m.NewState(1)
		if _, err := st.RunStage(); err != nil {
			t.Errorf("%s fallback does not run: %v", p, err)
		}
		st.Release()
		m.Close()
	}
	if _, err := models.Load(dir, models.LoadOptions{Provider: "tpu"}); err == nil {
		t.Fatal("unknown provider accepted")
	}
}

// TestStageRunsOnCallingThread: with one intra-op thread, ONNX Runtime runs
// a stage on the calling thread, so that thread's CPU time is the stage's
// work (what the model meter charges): over many runs it accounts for
// nearly all the CPU time the process spent (were the work on a pool
// thread, the calling thread would show next to none).
func TestStageRunsOnCallingThread(t *testing.T) {
	if _, ok := energy.ThreadCPU(); !ok {
		t.Skip("no per-thread CPU clock here")
	}
	m, err := models.Load(writeTiny(t, modeltest.Options{}), models.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	meter, _ := energy.New(energy.KindModel, "", energy.Options{})
	st, err := m.NewState(1)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Release()
	var thread time.Duration
	p0 := processCPU(t)
	for range 3000 {
		w, err := energy.Measure(meter, func() error {
			_, err := st.RunStage()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		thread += w.CPU
		if st.Done() {
			st.Release()
			if st, err = m.NewState(1); err != nil {
				t.Fatal(err)
			}
		}
	}
	proc := processCPU(t) - p0
	if share := float64(thread) / float64(proc); share < 0.5 {
		t.Fatalf("stage threads' CPU %v of the process's %v (%.2f): the stages ran elsewhere", thread, proc, share)
	} else {
		t.Logf("the calling threads' CPU time is %.2f of the process's", share)
	}
}

// processCPU is the process's user + system CPU time.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
