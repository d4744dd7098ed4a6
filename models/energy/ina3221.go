package energy

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"
)

// The INA3221 gives instantaneous power, not a cumulative counter. A Reading
// samples the rail's power at Start (p0, t0) and at Stop (p1, t1) and
// integrates with the trapezoid rule: mJ = (p0+p1)/2 mW × (t1-t0) s. This
// needs no background goroutine and no shared state, so concurrent readings
// are independent; it is exact for power that changes linearly over the
// interval and an approximation otherwise (the INA3221 itself averages over a
// few milliseconds, so very short stages see one averaged sample anyway).

// defaultRails are the total input rails: Jetson Nano, then Orin (and Xavier).
var defaultRails = []string{"POM_5V_IN", "VDD_IN"}

// Sysfs layouts of the INA3221 driver, relative to root.
const (
	// Nano: iio device, rail_name_N and in_powerN_input (mW), N = 0..2.
	nanoDevices = "sys/bus/i2c/drivers/ina3221x/*/iio:device*"
	// Orin: hwmon device, inN_label, inN_input (mV) and currN_input (mA), N = 1..3.
	orinDevices = "sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*"
)

type ina3221 struct {
	layout string // "nano" or "orin"
	rail   string // label as found in sysfs
	power  func() (mW float64, err error)
	now    func() time.Time
}

func newINA3221(root string, opts Options) (*ina3221, error) {
	want := defaultRails
	if opts.Rail != "" {
		want = []string{opts.Rail}
	}
	var found []string // rail labels seen, for the error message
	var labelErr error // first unreadable label

	// Nano layout.
	nano := glob(root, nanoDevices)
	for _, dir := range nano {
		for _, lp := range glob(dir, "rail_name_*") {
			ch := strings.TrimPrefix(filepath.Base(lp), "rail_name_")
			label, err := readString(lp)
			if err != nil {
				labelErr = firstErr(labelErr, err)
				continue
			}
			found = append(found, label)
			if !matchRail(label, want) {
				continue
			}
			pp := filepath.Join(dir, "in_power"+ch+"_input")
			return newINAMeter("nano", label, func() (float64, error) {
				p, err := readInt(pp)
				return float64(p), err
			}, opts)
		}
	}

	// Orin layout.
	orin := glob(root, orinDevices)
	for _, dir := range orin {
		for _, lp := range glob(dir, "in*_label") {
			ch := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(lp), "in"), "_label")
			label, err := readString(lp)
			if err != nil {
				labelErr = firstErr(labelErr, err)
				continue
			}
			found = append(found, label)
			if !matchRail(label, want) {
				continue
			}
			vp := filepath.Join(dir, "in"+ch+"_input")
			cp := filepath.Join(dir, "curr"+ch+"_input")
			return newINAMeter("orin", label, func() (float64, error) {
				mV, err := readInt(vp)
				if err != nil {
					return 0, err
				}
				mA, err := readInt(cp)
				if err != nil {
					return 0, err
				}
				return float64(mV) * float64(mA) / 1000, nil
			}, opts)
		}
	}

	if len(nano) == 0 && len(orin) == 0 {
		return nil, fmt.Errorf("energy: ina3221: %w: no device under %s or %s",
			ErrNotFound, filepath.Join(root, nanoDevices), filepath.Join(root, orinDevices))
	}
	err := fmt.Errorf("energy: ina3221: %w: no rail %s (rails found: %s)",
		ErrNotFound, strings.Join(want, " or "), strings.Join(found, ", "))
	if labelErr != nil {
		err = fmt.Errorf("%w; unreadable label: %w", err, labelErr)
	}
	return nil, err
}

func firstErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func matchRail(label string, want []string) bool {
	for _, w := range want {
		if strings.EqualFold(label, w) {
			return true
		}
	}
	return false
}

// newINAMeter checks that the rail's power can be read before returning the meter.
func newINAMeter(layout, rail string, power func() (float64, error), opts Options) (*ina3221, error) {
	if _, err := power(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("energy: ina3221: rail %s: %w", rail, err)
		}
		return nil, fmt.Errorf("energy: ina3221: rail %s unreadable: %w", rail, err)
	}
	return &ina3221{layout: layout, rail: rail, power: power, now: opts.now()}, nil
}

func (m *ina3221) Name() string { return KindINA3221 }

func (m *ina3221) Start() Reading {
	t0 := m.now()
	p0, err := m.power()
	if err != nil {
		err = fmt.Errorf("energy: ina3221: start: %w", err)
	}
	return inaReading{m: m, t0: t0, p0: p0, err: err}
}

type inaReading struct {
	m   *ina3221
	t0  time.Time
	p0  float64 // mW
	err error
}

func (r inaReading) Stop(time.Duration) (float64, error) {
	if r.err != nil {
		return 0, r.err
	}
	t1 := r.m.now()
	p1, err := r.m.power()
	if err != nil {
		return 0, fmt.Errorf("energy: ina3221: stop: %w", err)
	}
	el := t1.Sub(r.t0)
	if el < 0 {
		return 0, fmt.Errorf("energy: ina3221: clock went backwards by %v", -el)
	}
	// mW × s = mJ.
	return (r.p0 + p1) / 2 * el.Seconds(), nil
}
