// Package energy measures the energy that a piece of work (one model stage)
// costs, from whichever source the device offers: the Jetson INA3221 power
// monitor, Intel RAPL counters, or, as a fallback, a model of configured watts
// times the CPU time of the thread that ran the work (Measure).
//
// All readers take a root folder ("/" in production) under which they look for
// sysfs, so tests can run the real readers on fake trees.
//
// Meters are safe for concurrent use: a Meter holds no mutable state after
// construction, and each Reading carries its own start sample. The power-rail
// and RAPL readers measure the whole device (or rail) over the interval, so
// concurrent stages each see the total energy spent during their interval,
// not a share of it.
package energy

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"
)

// Meter measures the energy a piece of work costs.
type Meter interface {
	// Name is the energy source reported in results: "ina3221", "rapl" or "model".
	Name() string
	// Start begins a measurement; the returned Reading's Stop gives millijoules spent since Start.
	Start() Reading
}

// Reading is one measurement in progress, begun by Meter.Start.
type Reading interface {
	// Stop returns the millijoules spent since Start. busy is the CPU time
	// of the thread that ran the work (Measure passes it): the model meter
	// uses it (mJ = W × ms), so time spent descheduled is never charged;
	// the INA3221 and RAPL meters ignore it and use their own power or
	// counter readings.
	// A failure to read the source at Start is reported here. Stop does not
	// change the Reading: every call measures from the same Start.
	Stop(busy time.Duration) (mJ float64, err error)
}

// Kinds accepted by New; the first three are also the values of Meter.Name.
const (
	// KindINA3221 is the Jetson INA3221 power monitor (sysfs, Nano and Orin layouts).
	KindINA3221 = "ina3221"
	// KindRAPL is Intel RAPL through the powercap sysfs interface.
	KindRAPL = "rapl"
	// KindModel is the estimate Options.Watts × the work's CPU time.
	KindModel = "model"
	// KindAuto picks the first available source, as Detect does.
	KindAuto = "auto"
)

// DefaultWatts is the power the model meter assumes when Options.Watts is 0,
// roughly a Jetson Nano in its 5 W mode.
const DefaultWatts = 5.0

// ErrNotFound reports that an energy source (device, zone or rail) is not
// present under the root folder.
var ErrNotFound = errors.New("energy: source not found")

// Options configures the meters. The zero value is ready to use.
type Options struct {
	// Rail is the INA3221 rail to measure, matched case-insensitively
	// against rail_name_N (Nano) or inN_label (Orin). Empty means the total
	// input rail: POM_5V_IN (Nano) or VDD_IN (Orin).
	Rail string
	// Watts is the model meter's power draw; 0 means DefaultWatts.
	Watts float64
	// Now is the clock used to time power-rail readings; nil means time.Now.
	Now func() time.Time
	// Logger, if set, receives Detect's choices and why each source was
	// skipped (for example RAPL's energy_uj readable only by root).
	Logger *slog.Logger
}

func (o Options) now() func() time.Time {
	if o.Now != nil {
		return o.Now
	}
	return time.Now
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// New returns a meter of the given kind ("ina3221", "rapl", "model", or
// "auto"/"" for Detect), reading sysfs under root.
func New(kind, root string, opts Options) (Meter, error) {
	switch kind {
	case KindINA3221:
		return newINA3221(root, opts)
	case KindRAPL:
		return newRAPL(root)
	case KindModel:
		return newModel(opts)
	case KindAuto, "":
		return Detect(root, opts)
	default:
		return nil, fmt.Errorf("energy: unknown meter kind %q (want %s, %s, %s or %s)",
			kind, KindINA3221, KindRAPL, KindModel, KindAuto)
	}
}

// Detect returns the first available meter in the order INA3221 (Nano
// layout, then Orin), RAPL, model. A source that is missing or unreadable is
// skipped, and the reason is logged to Options.Logger. It fails only if the
// options are invalid for the model meter.
func Detect(root string, opts Options) (Meter, error) {
	log := opts.logger()
	ina, err := newINA3221(root, opts)
	if err == nil {
		log.Info("energy: using ina3221", "source", KindINA3221, "rail", ina.rail, "layout", ina.layout)
		return ina, nil
	}
	log.Info("energy: ina3221 unavailable", "source", KindINA3221, "reason", err.Error())

	r, err := newRAPL(root)
	if err == nil {
		log.Info("energy: using rapl", "source", KindRAPL, "packages", len(r.zones))
		return r, nil
	}
	log.Info("energy: rapl unavailable", "source", KindRAPL, "reason", err.Error())

	m, err := newModel(opts)
	if err != nil {
		return nil, err
	}
	log.Info("energy: using model", "source", KindModel, "watts", m.watts)
	return m, nil
}

// model estimates energy as watts × busy (CPU) time.
type model struct{ watts float64 }

func newModel(opts Options) (*model, error) {
	w := opts.Watts
	if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
		return nil, fmt.Errorf("energy: model: invalid watts %v", w)
	}
	if w == 0 {
		w = DefaultWatts
	}
	return &model{watts: w}, nil
}

func (m *model) Name() string   { return KindModel }
func (m *model) Start() Reading { return modelReading{watts: m.watts} }

type modelReading struct{ watts float64 }

func (r modelReading) Stop(busy time.Duration) (float64, error) {
	if busy < 0 {
		return 0, fmt.Errorf("energy: model: negative busy time %v", busy)
	}
	// W × ms = mJ.
	return r.watts * float64(busy) / float64(time.Millisecond), nil
}
