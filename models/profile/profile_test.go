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
		}(), Quantiles{P50: 50.5, P95: 95.05, P99: 99.01, Mean: 50.5}},
		{"outlier", []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 100}, Quantiles{P50: 1, P95: 55.45, P99: 91.09, Mean: 10.9}},
		{"even count: the median is the mean of the middle two", []float64{4, 1, 3, 2}, Quantiles{P50: 2.5, P95: 3.85, P99: 3.97, Mean: 2.5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Summarize(c.samples)
			near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
			if !near(got.P50, c.want.P50) || !near(got.P95, c.want.P95) || !near(got.P99, c.want.P99) || !near(got.Mean, c.want.Mean) {
				t.Fatalf("got %+v, want %+v", got, c.want)
			}
		})
	}
}

// TestQuantile: the one quantile definition, and Median and Summarize
// agreeing with it on the same samples.
func TestQuantile(t *testing.T) {
	sorted := []float64{10, 20, 30, 40, 50}
	for _, c := range []struct{ q, want float64 }{
		{0, 10}, {0.25, 20}, {0.5, 30}, {0.6, 34}, {0.99, 49.6}, {1, 50}, {-1, 10}, {2, 50},
	} {
		if got := Quantile(sorted, c.q); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("Quantile(%v, %g) = %g, want %g", sorted, c.q, got, c.want)
		}
	}
	if Quantile(nil, 0.5) != 0 || Median(nil) != 0 {
		t.Error("no values: want 0")
	}
	v := []float64{7, 1, 9, 3, 5, 8} // unsorted, even count
	if got := Median(v); got != 6 {
		t.Errorf("Median(%v) = %g, want 6", v, got)
	}
	if v[0] != 7 {
		t.Error("Median reordered its argument")
	}
	if s := Summarize(append([]float64(nil), v...)); s.P50 != Median(v) {
		t.Errorf("Summarize's P50 %g differs from Median %g", s.P50, Median(v))
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
