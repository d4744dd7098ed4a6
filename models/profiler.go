package models

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/delen-edge/delen/models/energy"
	"github.com/delen-edge/delen/models/profile"
)

// Labeled is a labelled validation set in the model's input layout: Len
// samples, Sample(i, dst) writes sample i's float32 input into dst.
type Labeled interface {
	Len() int
	Sample(i int, dst []float32)
	Label(i int) int
}

// ProfileOptions tunes Profile. The zero value measures 200 runs per stage
// after 20 warm-up runs.
type ProfileOptions struct {
	Runs, Warmup int
	// Data, when set, gives measured accuracy and calibration; otherwise
	// the manifest's accuracy is recorded.
	Data Labeled
	// DataSplit names the split Data comes from (for MNIST models
	// "calibration", see zoo.CalibrationData); the profile records it.
	DataSplit string
	// Batch is the batch size for the accuracy pass (default 100, or 1 for
	// fixed-batch models).
	Batch int
	// Device names the device (default profile.DeviceID()).
	Device string
	// Progress, when set, receives short progress lines.
	Progress func(string)
}

// Profile measures m on this device: per-stage latency quantiles and
// energy from meter over opt.Runs runs at batch 1, then, with opt.Data, each
// exit's accuracy, calibration and per-sample confidences.
func Profile(ctx context.Context, m *Model, meter energy.Meter, opt ProfileOptions) (*profile.Profile, error) {
	if opt.Runs <= 0 {
		opt.Runs = 200
	}
	if opt.Warmup <= 0 {
		opt.Warmup = 20
	}
	if opt.Device == "" {
		opt.Device = profile.DeviceID()
	}
	progress := opt.Progress
	if progress == nil {
		progress = func(string) {}
	}
	_, version := RuntimeInfo()
	man := m.Manifest
	p := &profile.Profile{
		Model: man.Name, Version: man.Version, Device: opt.Device,
		CreatedAt: time.Now().UTC(), Runtime: "onnxruntime " + version,
		EnergySource: meter.Name(), Source: profile.SourceMeasured,
	}
	n := m.Exits()
	lat, cpu, en := make([][]float64, n), make([][]float64, n), make([][]float64, n)
	st, err := m.NewState(1)
	if err != nil {
		return nil, err
	}
	defer st.Release()
	in := st.Input()
	sample := 0
	fill := func() {
		if opt.Data != nil && opt.Data.Len() > 0 {
			opt.Data.Sample(sample%opt.Data.Len(), in)
			sample++
			return
		}
		for i := range in {
			in[i] = float32(math.Sin(float64(i + sample)))
		}
		sample++
	}
	total := opt.Warmup + opt.Runs
	lastReport := time.Now()
	for r := 0; r < total; r++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		fill()
		st.next = 0
		for k := 0; k < n; k++ {
			w, err := energy.Measure(meter, func() error {
				_, err := st.RunStage()
				return err
			})
			if err == nil {
				err = w.MeterErr
			}
			if err != nil {
				return nil, fmt.Errorf("stage %d: %w", k, err)
			}
			if r >= opt.Warmup {
				lat[k] = append(lat[k], durMS(w.Wall))
				cpu[k] = append(cpu[k], durMS(w.CPU))
				en[k] = append(en[k], w.MJ)
			}
		}
		if time.Since(lastReport) > time.Second || r == total-1 {
			lastReport = time.Now()
			progress(fmt.Sprintf("latency: run %d/%d", r+1, total))
		}
	}
	var cum profile.Quantiles
	var cumEnergy float64
	for k := 0; k < n; k++ {
		q, eq := profile.Summarize(lat[k]), profile.Summarize(en[k])
		e := eq.Mean
		p.Stages = append(p.Stages, profile.StageStats{Stage: k, Runs: opt.Runs, LatencyMS: q,
			CPUMS: profile.Summarize(cpu[k]), EnergyMJ: e, EnergyQuantilesMJ: eq})
		cum = profile.Quantiles{P50: cum.P50 + q.P50, P95: cum.P95 + q.P95, P99: cum.P99 + q.P99, Mean: cum.Mean + q.Mean}
		cumEnergy += e
		p.Exits = append(p.Exits, profile.ExitStats{
			Exit: k + 1, Accuracy: man.Exits[k].Accuracy, AccuracyFrom: "manifest", AccuracySplit: man.Exits[k].AccuracySplit,
			LatencyMS: cum, EnergyMJ: cumEnergy, FLOPs: man.Exits[k].FLOPs,
		})
	}
	if opt.Data != nil && opt.Data.Len() > 0 {
		if err := measureAccuracy(ctx, m, p, opt, progress); err != nil {
			return nil, err
		}
	}
	return p, p.Validate()
}

// measureAccuracy runs every validation sample through every exit and
// records accuracy, calibration and per-sample confidences.
func measureAccuracy(ctx context.Context, m *Model, p *profile.Profile, opt ProfileOptions, progress func(string)) error {
	n, classes, count := m.Exits(), m.Classes(), opt.Data.Len()
	batch := opt.Batch
	if batch <= 0 {
		batch = 100
	}
	if !m.DynamicBatch(0) {
		batch = 1
	}
	val := &profile.Validation{Confidence: make([][]float32, n), Correct: make([][]bool, n)}
	for k := range val.Confidence {
		val.Confidence[k] = make([]float32, count)
		val.Correct[k] = make([]bool, count)
	}
	states := map[int]*State{}
	defer func() {
		for _, s := range states {
			s.Release()
		}
	}()
	per := m.Manifest.SampleSize()
	lastReport := time.Now()
	for lo := 0; lo < count; lo += batch {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := min(batch, count-lo)
		st := states[b]
		if st == nil {
			var err error
			if st, err = m.NewState(b); err != nil {
				return err
			}
			states[b] = st
		}
		st.next = 0
		in := st.Input()
		for j := 0; j < b; j++ {
			opt.Data.Sample(lo+j, in[j*per:(j+1)*per])
		}
		for k := 0; k < n; k++ {
			logits, err := st.RunStage()
			if err != nil {
				return err
			}
			for j := 0; j < b; j++ {
				cls, conf := Top1(logits[j*classes : (j+1)*classes])
				val.Confidence[k][lo+j] = conf
				val.Correct[k][lo+j] = cls == opt.Data.Label(lo+j)
			}
		}
		if time.Since(lastReport) > time.Second || lo+b == count {
			lastReport = time.Now()
			progress(fmt.Sprintf("accuracy: %d/%d samples", lo+b, count))
		}
	}
	for k := 0; k < n; k++ {
		right := 0
		for _, c := range val.Correct[k] {
			if c {
				right++
			}
		}
		e := &p.Exits[k]
		e.Accuracy = float64(right) / float64(count)
		e.AccuracyFrom = "measured"
		e.AccuracySplit = opt.DataSplit
		e.Samples = count
		e.Calibration = profile.Calibrate(val.Confidence[k], val.Correct[k], 10)
	}
	val.Split = opt.DataSplit
	p.Validation = val
	return nil
}

// durMS is d in milliseconds.
func durMS(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// Top1 returns the arg-max class of logits and its softmax probability.
func Top1(logits []float32) (int, float32) {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	var sum float64
	mx := float64(logits[best])
	for _, v := range logits {
		sum += math.Exp(float64(v) - mx)
	}
	return best, float32(1 / sum)
}

// Softmax writes the softmax of logits into dst.
func Softmax(dst, logits []float32) {
	mx := logits[0]
	for _, v := range logits {
		mx = max(mx, v)
	}
	var sum float64
	for i, v := range logits {
		e := math.Exp(float64(v - mx))
		dst[i] = float32(e)
		sum += e
	}
	for i := range dst[:len(logits)] {
		dst[i] = float32(float64(dst[i]) / sum)
	}
}
