package zoo_test

import (
	"context"
	"testing"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/zoo"
)

func loadBench(b *testing.B) *models.Model {
	m, err := zoo.New().Load("mnist-ee", models.LoadOptions{Monolithic: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// BenchmarkStaged runs every stage of mnist-ee in sequence (batch 1): the
// executor's hot path. Compare with BenchmarkMonolithic.
func BenchmarkStaged(b *testing.B) {
	m := loadBench(b)
	st, err := m.NewState(1)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Release()
	b.ReportAllocs()
	for b.Loop() {
		st.Release()
		st, _ = m.NewState(1)
		for !st.Done() {
			if _, err := st.RunStage(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkMonolithic runs full.onnx (every exit in one call), the baseline.
func BenchmarkMonolithic(b *testing.B) {
	m := loadBench(b)
	r, err := m.NewMonolithicRun(1)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStage1 runs exit 1 only: what an early-exiting request costs.
func BenchmarkStage1(b *testing.B) {
	m := loadBench(b)
	b.ReportAllocs()
	for b.Loop() {
		st, _ := m.NewState(1)
		if _, err := st.RunStage(); err != nil {
			b.Fatal(err)
		}
		st.Release()
	}
}

func TestBenchExecutorReports(t *testing.T) {
	m, err := zoo.New().Load("mnist-ee", models.LoadOptions{Monolithic: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := models.BenchExecutor(context.Background(), m, models.BenchOptions{Reps: 20, Warmup: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.StagedMS <= 0 || r.MonoMS <= 0 || r.Ratio <= 0 || r.Reps != 20 || r.Exits != 3 {
		t.Fatalf("bench result %+v", r)
	}
	// Every call costs something, so two extra calls put the floor above 1.
	if r.CallMS <= 0 || r.FloorRatio <= 1 {
		t.Fatalf("call probe: call %v ms, floor ratio %v", r.CallMS, r.FloorRatio)
	}
}
