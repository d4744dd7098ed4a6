package sim

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Spacings of arrivals within a phase of bursty and step.
const (
	SpacingPoisson  = "poisson"  // exponential gaps (the default)
	SpacingConstant = "constant" // evenly spaced
)

// maxTraceBytes bounds a trace file.
const maxTraceBytes = 256 << 20

func (a *Arrival) validate(key string, s *Scenario) error {
	only := func(field, process string, set bool) error {
		if set {
			return fmt.Errorf("%s.%s: only for process %s", key, field, process)
		}
		return nil
	}
	finite := func(field string, v float64) error {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("%s.%s: must be a finite number ≥ 0, got %g", key, field, v)
		}
		return nil
	}
	if err := finite("rate", a.Rate); err != nil {
		return err
	}
	if err := finite("burst_rate", a.BurstRate); err != nil {
		return err
	}
	switch a.Spacing {
	case "", SpacingPoisson, SpacingConstant:
	default:
		return fmt.Errorf("%s.spacing: %q: want poisson or constant", key, a.Spacing)
	}
	d := s.Duration.Seconds()
	peak := a.Rate
	switch a.Process {
	case ProcessConstant, ProcessPoisson:
		if !(a.Rate > 0) {
			return fmt.Errorf("%s.rate: must be > 0 for process %s", key, a.Process)
		}
		for _, e := range []error{
			only("on", ProcessBursty, a.On != 0), only("off", ProcessBursty, a.Off != 0),
			only("burst_rate", ProcessBursty, a.BurstRate != 0), only("steps", ProcessStep, a.Steps != nil),
			only("file", ProcessTrace, a.File != ""), only("spacing", "bursty or step", a.Spacing != ""),
		} {
			if e != nil {
				return e
			}
		}
	case ProcessBursty:
		if a.On <= 0 {
			return fmt.Errorf("%s.on: required for process bursty: the length of a burst, > 0 (such as 2s)", key)
		}
		if a.Off <= 0 {
			return fmt.Errorf("%s.off: required for process bursty: the length of the quiet phase, > 0 (such as 5s)", key)
		}
		if !(a.BurstRate > 0) {
			return fmt.Errorf("%s.burst_rate: required for process bursty, > 0", key)
		}
		if err := only("steps", ProcessStep, a.Steps != nil); err != nil {
			return err
		}
		if err := only("file", ProcessTrace, a.File != ""); err != nil {
			return err
		}
		peak = max(a.Rate, a.BurstRate)
	case ProcessStep:
		if len(a.Steps) == 0 {
			return fmt.Errorf("%s.steps: required for process step: a list of {at, rate}", key)
		}
		for _, e := range []error{
			only("on", ProcessBursty, a.On != 0), only("off", ProcessBursty, a.Off != 0),
			only("burst_rate", ProcessBursty, a.BurstRate != 0), only("file", ProcessTrace, a.File != ""),
		} {
			if e != nil {
				return e
			}
		}
		positive := a.Rate > 0
		for i, st := range a.Steps {
			sk := fmt.Sprintf("%s.steps[%d]", key, i)
			if st.At < 0 || st.At >= s.Duration {
				return fmt.Errorf("%s.at: %s is outside the scenario's [0, %s)", sk, st.At, s.Duration)
			}
			if i > 0 && st.At <= a.Steps[i-1].At {
				return fmt.Errorf("%s.at: steps must be in increasing time order (%s after %s)", sk, st.At, a.Steps[i-1].At)
			}
			if err := finite(fmt.Sprintf("steps[%d].rate", i), st.Rate); err != nil {
				return err
			}
			positive = positive || st.Rate > 0
			peak = max(peak, st.Rate)
		}
		if !positive {
			return fmt.Errorf("%s.steps: every rate is 0", key)
		}
	case ProcessTrace:
		if a.File == "" {
			return fmt.Errorf("%s.file: required for process trace: a CSV of timestamps in seconds", key)
		}
		for _, e := range []error{
			only("rate", "constant, poisson, bursty or step", a.Rate != 0),
			only("on", ProcessBursty, a.On != 0), only("off", ProcessBursty, a.Off != 0),
			only("burst_rate", ProcessBursty, a.BurstRate != 0), only("steps", ProcessStep, a.Steps != nil),
			only("spacing", "bursty or step", a.Spacing != ""),
		} {
			if e != nil {
				return e
			}
		}
		ts, err := readTrace(a.path(s.dir))
		if err != nil {
			return fmt.Errorf("%s.file: %w", key, err)
		}
		if len(ts) > MaxRequests {
			return fmt.Errorf("%s.file: %d timestamps, at most %d", key, len(ts), MaxRequests)
		}
		return nil
	case "":
		return fmt.Errorf("%s.process: required: constant, poisson, bursty, step or trace", key)
	default:
		return fmt.Errorf("%s.process: %q: want constant, poisson, bursty, step or trace", key, a.Process)
	}
	if peak*d > MaxRequests {
		return fmt.Errorf("%s: up to %.0f requests in %s; at most %d per tenant", key, peak*d, s.Duration, MaxRequests)
	}
	return nil
}

// path resolves the trace file against dir.
func (a *Arrival) path(dir string) string {
	if filepath.IsAbs(a.File) || dir == "" {
		return a.File
	}
	return filepath.Join(dir, a.File)
}

// Schedule returns the send times of the process over [0, d), from the
// start of the run, in increasing order. Random processes draw from rng;
// trace files are read relative to dir.
func (a *Arrival) Schedule(d time.Duration, rng *rand.Rand, dir string) ([]time.Duration, error) {
	end := d.Seconds()
	poisson := a.Spacing != SpacingConstant
	var out []time.Duration
	var err error
	switch a.Process {
	case ProcessConstant:
		out, err = phase(out, 0, end, a.Rate, false, rng)
	case ProcessPoisson:
		out, err = phase(out, 0, end, a.Rate, true, rng)
	case ProcessBursty:
		off, on := a.Off.Seconds(), a.On.Seconds()
		if off <= 0 || on <= 0 {
			return nil, errors.New("bursty: on and off must be > 0")
		}
		for start := 0.0; start < end && err == nil; start += off + on {
			out, err = phase(out, start, min(start+off, end), a.Rate, poisson, rng)
			if err == nil {
				out, err = phase(out, start+off, min(start+off+on, end), a.BurstRate, poisson, rng)
			}
		}
	case ProcessStep:
		from, rate := 0.0, a.Rate
		for _, st := range a.Steps {
			if out, err = phase(out, from, min(st.At.Seconds(), end), rate, poisson, rng); err != nil {
				break
			}
			from, rate = st.At.Seconds(), st.Rate
		}
		if err == nil {
			out, err = phase(out, from, end, rate, poisson, rng)
		}
	case ProcessTrace:
		ts, terr := readTrace(a.path(dir))
		if terr != nil {
			return nil, terr
		}
		for _, t := range ts {
			if t < d {
				out = append(out, t)
			}
		}
	default:
		return nil, fmt.Errorf("unknown arrival process %q", a.Process)
	}
	return out, err
}

// phase appends the arrivals in [from, to) at rate: Poisson (exponential
// gaps, which may restart at from since the process is memoryless) or
// evenly spaced from `from`.
func phase(out []time.Duration, from, to, rate float64, poisson bool, rng *rand.Rand) ([]time.Duration, error) {
	if !(rate > 0) || to <= from {
		return out, nil
	}
	if poisson {
		for t := from; ; {
			t += rng.ExpFloat64() / rate
			if t >= to {
				break
			}
			out = append(out, seconds(t))
			if len(out) > MaxRequests {
				return nil, fmt.Errorf("more than %d requests", MaxRequests)
			}
		}
		return out, nil
	}
	for k := 0; ; k++ {
		t := from + float64(k)/rate
		if t >= to {
			break
		}
		out = append(out, seconds(t))
		if len(out) > MaxRequests {
			return nil, fmt.Errorf("more than %d requests", MaxRequests)
		}
	}
	return out, nil
}

func seconds(t float64) time.Duration { return time.Duration(math.Round(t * float64(time.Second))) }

// readTrace reads a trace file: one timestamp per line (seconds from the
// start, ≥ 0); the first CSV column counts; blank lines, # comments and a
// non-numeric first line (a header) are skipped. The result is sorted.
func readTrace(path string) ([]time.Duration, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxTraceBytes {
		return nil, fmt.Errorf("%s: larger than %d MiB", path, maxTraceBytes>>20)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []time.Duration
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	first := true
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		field, _, _ := strings.Cut(line, ",")
		field = strings.TrimSpace(field)
		v, err := strconv.ParseFloat(field, 64)
		if err != nil {
			if first {
				first = false
				continue // header
			}
			return nil, fmt.Errorf("%s:%d: %q is not a number of seconds", path, n, field)
		}
		first = false
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return nil, fmt.Errorf("%s:%d: timestamp %s must be a finite number ≥ 0", path, n, field)
		}
		if v > MaxDuration.Seconds() {
			return nil, fmt.Errorf("%s:%d: timestamp %s is beyond %s", path, n, field, MaxDuration)
		}
		out = append(out, seconds(v))
		if len(out) > MaxRequests {
			return nil, fmt.Errorf("%s: more than %d timestamps", path, MaxRequests)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no timestamps", path)
	}
	slices.Sort(out)
	return out, nil
}
