package profile

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	cases := []struct {
		name    string
		samples []float64
		want    Quantiles
	}{
		{"empty", nil, Quantiles{}},
		{"one", []float64{2}, Quantiles{P50: 2, P95: 2, P99: 2, Mean: 2}},
		{"1..100", func() []float64 {
			v := make([]float64, 100)
			for i := range v {
				v[i] = float64(100 - i) // unsorted on purpose
			}
			return v
		}(), Quantiles{P50: 50, P95: 95, P99: 99, Mean: 50.5}},
		{"outlier", []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 100}, Quantiles{P50: 1, P95: 100, P99: 100, Mean: 10.9}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Summarize(c.samples)
			if got.P50 != c.want.P50 || got.P95 != c.want.P95 || got.P99 != c.want.P99 || math.Abs(got.Mean-c.want.Mean) > 1e-9 {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

func TestCalibrate(t *testing.T) {
	conf := []float32{0.05, 0.95, 0.97, 0.99, 1.0, 0.55}
	correct := []bool{false, true, true, false, true, true}
	bins := Calibrate(conf, correct, 10)
	if len(bins) != 10 {
		t.Fatalf("%d bins", len(bins))
	}
	if b := bins[0]; b.Count != 1 || b.Accuracy != 0 {
		t.Errorf("bin 0: %+v", b)
	}
	if b := bins[9]; b.Count != 4 || b.Accuracy != 0.75 || math.Abs(b.MeanConfidence-0.9775) > 1e-6 {
		t.Errorf("bin 9 (confidence 1.0 falls in the last bin): %+v", b)
	}
	if b := bins[5]; b.Count != 1 || b.Accuracy != 1 {
		t.Errorf("bin 5: %+v", b)
	}
}

func TestSanitizeAndKey(t *testing.T) {
	if got := Sanitize("NVIDIA Jetson Nano Developer Kit\x00"); got != "nvidia-jetson-nano-developer-kit" {
		t.Errorf("Sanitize: %q", got)
	}
	p := Profile{Model: "m", Version: "1", Device: "d"}
	if p.Key() != "m@1/d" {
		t.Errorf("Key: %q", p.Key())
	}
}
