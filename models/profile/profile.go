// Package profile holds what a model costs and delivers on one device:
// stage latency quantiles, stage energy, exit accuracy and the calibration
// of exit confidence. Policies read profiles; the profiler and the agent
// write them. It imports no ONNX Runtime, so policies stay pure.
package profile

import (
	"fmt"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Profile is a model version's measured behaviour on one device.
type Profile struct {
	Model     string    `json:"model"`
	Version   string    `json:"version"`
	Device    string    `json:"device"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at,omitempty"`
	// Runtime is the inference runtime and its version (e.g. "onnxruntime 1.24.3").
	Runtime string `json:"runtime,omitempty"`
	// EnergySource is the meter the energies come from: ina3221, rapl or model.
	EnergySource string       `json:"energy_source"`
	Stages       []StageStats `json:"stages"`
	Exits        []ExitStats  `json:"exits"`
	Validation   *Validation  `json:"validation,omitempty"`
	// Live is what labelled results measured in service (nil before any).
	Live   *LiveAccuracy `json:"live_accuracy,omitempty"`
	Notes  []string      `json:"notes,omitempty"`
	Source ProfileSource `json:"source,omitempty"`
}

// ProfileSource says where a profile's numbers come from.
type ProfileSource string

// Profile sources.
const (
	SourceMeasured ProfileSource = "measured" // `delen profile` on this device
	SourceLive     ProfileSource = "live"     // refreshed from served requests
)

// Quantiles summarises a latency distribution in milliseconds.
type Quantiles struct {
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Mean float64 `json:"mean"`
}

// StageStats is one stage's cost for a batch of one, every figure measured
// by energy.Measure (the profiler and the agent's live profile alike).
type StageStats struct {
	Stage int `json:"stage"`
	Runs  int `json:"runs"`
	// LatencyMS is the stage's wall time, what a deadline sees.
	LatencyMS Quantiles `json:"latency_ms"`
	// CPUMS is the CPU time of the thread that ran the stage: its work,
	// without time spent descheduled (the model meter charges this).
	CPUMS Quantiles `json:"cpu_ms"`
	// EnergyMJ is the stage's mean energy per request; EnergyQuantilesMJ
	// its distribution (zero in profiles written before it was recorded).
	// The profiler measures batches of one; a live profile records each
	// request's share of the stage's runs in service, batched or alone
	// (what results report), while its latency and CPU time are lone runs.
	EnergyMJ          float64   `json:"energy_mj"`
	EnergyQuantilesMJ Quantiles `json:"energy_quantiles_mj"`
}

// ExitStats is what stopping at one exit (1-based) delivers and costs,
// cumulative from the input.
type ExitStats struct {
	Exit int `json:"exit"`
	// Accuracy is measured top-1 accuracy on labelled validation data; when
	// the model has none it is the manifest's figure (AccuracyFrom says which).
	Accuracy     float64 `json:"accuracy"`
	AccuracyFrom string  `json:"accuracy_from"`
	// AccuracySplit names the data split Accuracy was measured on
	// ("calibration" when measured, the manifest's split otherwise).
	AccuracySplit string `json:"accuracy_split,omitempty"`
	Samples       int    `json:"samples,omitempty"`
	// LatencyMS sums the stage quantiles up to this exit (an upper bound for
	// the quantiles of the sum, which is what a deadline needs).
	LatencyMS   Quantiles `json:"latency_ms"`
	EnergyMJ    float64   `json:"energy_mj"`
	FLOPs       float64   `json:"flops"`
	Calibration []Bin     `json:"calibration,omitempty"`
}

// Bin is one bin of a calibration table: of the samples whose top-1
// softmax confidence fell in [Lo, Hi), Count were seen and Accuracy of them
// were right; MeanConfidence is their average confidence.
type Bin struct {
	Lo             float64 `json:"lo"`
	Hi             float64 `json:"hi"`
	Count          int     `json:"count"`
	Accuracy       float64 `json:"accuracy"`
	MeanConfidence float64 `json:"mean_confidence"`
}

// Validation keeps, per exit, every validation sample's top-1 confidence
// and whether it was right, so policies can tune per-exit thresholds on the
// joint behaviour of the exits. Confidence[k][i] and Correct[k][i] belong to
// sample i at exit k+1.
type Validation struct {
	// Split names the data split the samples come from ("calibration").
	Split      string      `json:"split,omitempty"`
	Confidence [][]float32 `json:"confidence"`
	Correct    [][]bool    `json:"correct"`
}

// LiveAccuracy is the accuracy measured in service from the labels tenants
// send: over the latest Samples labelled answers of this model on this
// device, the share that was right (Measured) and the mean of their
// expected accuracy, the results' accuracy_est (Expected). Expected −
// Measured is how much the calibration overstates accuracy in service; the
// accuracy policy raises the target it tunes for by that much.
type LiveAccuracy struct {
	Samples   int       `json:"samples"`
	Measured  float64   `json:"measured"`
	Expected  float64   `json:"expected"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Key is the storage key suffix of a profile: <model>@<version>/<device>.
func (p *Profile) Key() string { return p.Model + "@" + p.Version + "/" + p.Device }

// Validate checks that a profile is usable by policies.
func (p *Profile) Validate() error {
	if p.Model == "" || p.Version == "" || p.Device == "" {
		return fmt.Errorf("profile: model, version and device must be set")
	}
	if len(p.Stages) == 0 || len(p.Stages) != len(p.Exits) {
		return fmt.Errorf("profile %s: %d stages and %d exits", p.Key(), len(p.Stages), len(p.Exits))
	}
	return nil
}

// Summarize computes quantiles (Quantile) and the mean of samples
// (milliseconds). It sorts samples.
func Summarize(samples []float64) Quantiles {
	if len(samples) == 0 {
		return Quantiles{}
	}
	sort.Float64s(samples)
	var sum float64
	for _, s := range samples {
		sum += s
	}
	return Quantiles{P50: Quantile(samples, 0.50), P95: Quantile(samples, 0.95), P99: Quantile(samples, 0.99), Mean: sum / float64(len(samples))}
}

// Calibrate bins (confidence, correct) pairs into n equal-width bins over [0, 1].
func Calibrate(conf []float32, correct []bool, n int) []Bin {
	bins := make([]Bin, n)
	for i := range bins {
		bins[i].Lo = float64(i) / float64(n)
		bins[i].Hi = float64(i+1) / float64(n)
	}
	right := make([]int, n)
	for i, c := range conf {
		b := int(float64(c) * float64(n))
		if b >= n {
			b = n - 1
		}
		if b < 0 {
			b = 0
		}
		bins[b].Count++
		bins[b].MeanConfidence += float64(c)
		if correct[i] {
			right[b]++
		}
	}
	for i := range bins {
		if bins[i].Count > 0 {
			bins[i].Accuracy = float64(right[i]) / float64(bins[i].Count)
			bins[i].MeanConfidence /= float64(bins[i].Count)
		}
	}
	return bins
}

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

// DeviceID names this machine's kind for profile keys: the device-tree
// model on boards such as a Jetson, else the CPU model, prefixed with the
// architecture, lower-case and dash-separated. $DELEN_DEVICE overrides it.
func DeviceID() string {
	if d := os.Getenv("DELEN_DEVICE"); d != "" {
		return Sanitize(d)
	}
	name := ""
	if b, err := os.ReadFile("/proc/device-tree/model"); err == nil {
		name = strings.TrimRight(string(b), "\x00\n ")
	}
	if name == "" {
		if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
					name = strings.TrimSpace(v)
					break
				}
			}
		}
	}
	if name == "" {
		name = "unknown"
	}
	return Sanitize(runtime.GOARCH + "-" + name)
}

// Sanitize lower-cases s and joins its words with dashes, at most 64 bytes.
func Sanitize(s string) string {
	s = strings.Trim(nonWord.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(s) > 64 {
		s = strings.TrimRight(s[:64], "-")
	}
	return s
}
