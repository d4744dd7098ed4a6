package models

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/delen-edge/delen/models/profile"
)

// ExecutorBench compares running every stage in sequence with running the
// monolithic file of the same network, in one process on the same inputs.
type ExecutorBench struct {
	Model       string  `json:"model"`
	Exits       int     `json:"exits"`
	Batch       int     `json:"batch"`
	Reps        int     `json:"reps"`
	StagedMS    float64 `json:"staged_median_ms"`
	MonoMS      float64 `json:"monolithic_median_ms"`
	Ratio       float64 `json:"ratio"`        // StagedMS / MonoMS
	PairedRatio float64 `json:"paired_ratio"` // median of per-repetition ratios
}

// BenchOptions tunes BenchExecutor; zero values give 500 repetitions after
// 50 warm-up rounds at batch 1.
type BenchOptions struct {
	Reps, Warmup, Batch int
	// Fill writes the input of repetition r (default: a fixed pattern).
	Fill func(r int, dst []float32)
	// Progress receives a line about once a second.
	Progress func(string)
}

// BenchExecutor times staged against monolithic execution. Repetitions
// interleave the two and alternate which goes first, so drift and caches
// affect both sides alike. m must be loaded with LoadOptions.Monolithic.
func BenchExecutor(ctx context.Context, m *Model, opt BenchOptions) (*ExecutorBench, error) {
	if opt.Reps <= 0 {
		opt.Reps = 500
	}
	if opt.Warmup <= 0 {
		opt.Warmup = 50
	}
	if opt.Batch <= 0 {
		opt.Batch = 1
	}
	if opt.Fill == nil {
		opt.Fill = func(r int, dst []float32) {
			for i := range dst {
				dst[i] = float32(math.Sin(float64(i*7+r))+1) / 2
			}
		}
	}
	mono, err := m.NewMonolithicRun(opt.Batch)
	if err != nil {
		return nil, err
	}
	defer mono.Close()
	st, err := m.NewState(opt.Batch)
	if err != nil {
		return nil, err
	}
	defer st.Release()
	staged := func() error {
		st.next = 0
		for !st.Done() {
			if _, err := st.RunStage(); err != nil {
				return err
			}
		}
		return nil
	}
	var ts, tm, ratios []float64
	last := time.Now()
	for r := 0; r < opt.Warmup+opt.Reps; r++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		opt.Fill(r, st.Input())
		copy(mono.Input(), st.Input())
		var ds, dm time.Duration
		for turn := 0; turn < 2; turn++ {
			t0 := time.Now()
			if (turn == 0) == (r%2 == 0) {
				if err := staged(); err != nil {
					return nil, err
				}
				ds = time.Since(t0)
			} else {
				if _, err := mono.Run(); err != nil {
					return nil, err
				}
				dm = time.Since(t0)
			}
		}
		if r >= opt.Warmup {
			ts = append(ts, ms(ds))
			tm = append(tm, ms(dm))
			ratios = append(ratios, float64(ds)/float64(dm))
		}
		if opt.Progress != nil && time.Since(last) > time.Second {
			last = time.Now()
			opt.Progress(fmt.Sprintf("executor bench: %d/%d", r+1, opt.Warmup+opt.Reps))
		}
	}
	b := &ExecutorBench{Model: m.Manifest.ID(), Exits: m.Exits(), Batch: opt.Batch, Reps: opt.Reps,
		StagedMS: profile.Median(ts), MonoMS: profile.Median(tm), PairedRatio: profile.Median(ratios)}
	b.Ratio = b.StagedMS / b.MonoMS
	return b, nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
