package energy

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// RAPL exposes a cumulative energy counter per zone (energy_uj, µJ) that
// wraps at max_energy_range_uj. A Reading keeps each package's counter at
// Start and sums the per-package deltas at Stop, allowing one wrap per
// package between the two (at most about a minute on current CPUs; stages are
// far shorter). Only top-level package zones (intel-rapl:N named package-N)
// are summed: sub-zones intel-rapl:N:M (core, uncore, dram) are part of their
// package, and a psys zone covers the packages too.

const raplZones = "sys/class/powercap/intel-rapl:*"

var topLevelZone = regexp.MustCompile(`^intel-rapl:[0-9]+$`)

type raplZone struct {
	energy   string // path of energy_uj
	maxRange int64  // max_energy_range_uj
}

type rapl struct{ zones []raplZone }

func newRAPL(root string) (*rapl, error) {
	var zones []raplZone
	for _, dir := range glob(root, raplZones) {
		if !topLevelZone.MatchString(filepath.Base(dir)) {
			continue
		}
		name, err := readString(filepath.Join(dir, "name"))
		if err != nil {
			return nil, fmt.Errorf("energy: rapl: %w", err)
		}
		if !strings.HasPrefix(name, "package") {
			continue
		}
		z := raplZone{energy: filepath.Join(dir, "energy_uj")}
		z.maxRange, err = readInt(filepath.Join(dir, "max_energy_range_uj"))
		if err != nil {
			return nil, fmt.Errorf("energy: rapl: %w", err)
		}
		if z.maxRange <= 0 {
			return nil, fmt.Errorf("energy: rapl: %s: max_energy_range_uj is %d", dir, z.maxRange)
		}
		if _, err := readInt(z.energy); err != nil {
			// Since Linux 5.10 energy_uj is readable only by root.
			return nil, fmt.Errorf("energy: rapl: %w", err)
		}
		zones = append(zones, z)
	}
	if len(zones) == 0 {
		return nil, fmt.Errorf("energy: rapl: %w: no package zone under %s",
			ErrNotFound, filepath.Join(root, "sys/class/powercap"))
	}
	return &rapl{zones: zones}, nil
}

func (m *rapl) Name() string { return KindRAPL }

func (m *rapl) Start() Reading {
	start, err := m.read()
	if err != nil {
		err = fmt.Errorf("energy: rapl: start: %w", err)
	}
	return raplReading{m: m, start: start, err: err}
}

func (m *rapl) read() ([]int64, error) {
	v := make([]int64, len(m.zones))
	for i, z := range m.zones {
		var err error
		if v[i], err = readInt(z.energy); err != nil {
			return nil, err
		}
	}
	return v, nil
}

type raplReading struct {
	m     *rapl
	start []int64 // µJ per zone
	err   error
}

func (r raplReading) Stop(time.Duration) (float64, error) {
	if r.err != nil {
		return 0, r.err
	}
	end, err := r.m.read()
	if err != nil {
		return 0, fmt.Errorf("energy: rapl: stop: %w", err)
	}
	var uJ int64
	for i, z := range r.m.zones {
		d, err := counterDelta(r.start[i], end[i], z.maxRange)
		if err != nil {
			return 0, fmt.Errorf("energy: rapl: %s: %w", z.energy, err)
		}
		uJ += d
	}
	return float64(uJ) / 1000, nil
}

// counterDelta is the increase of a counter that wraps at maxRange.
func counterDelta(old, cur, maxRange int64) (int64, error) {
	if cur >= old {
		return cur - old, nil
	}
	d := cur + maxRange - old
	if d < 0 {
		return 0, fmt.Errorf("counter went from %d to %d, more than max_energy_range_uj %d", old, cur, maxRange)
	}
	return d, nil
}
