package energy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/delen-edge/delen/models/energy"
)

// fakeClock is an injectable clock; safe for concurrent use.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// write writes content to root/rel, creating folders.
func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const (
	nanoDev = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
	orinDev = "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
)

// nanoTree writes a Jetson Nano INA3221: rails POM_5V_IN, POM_5V_GPU, POM_5V_CPU with powers in mW.
func nanoTree(t *testing.T, root string, mW [3]int) {
	t.Helper()
	for i, name := range []string{"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"} {
		write(t, root, fmt.Sprintf("%s/rail_name_%d", nanoDev, i), name+"\n")
		write(t, root, fmt.Sprintf("%s/in_power%d_input", nanoDev, i), fmt.Sprintf("%d\n", mW[i]))
	}
}

// orinTree writes a Jetson Orin INA3221 hwmon device with the given labels, mV and mA (channels 1..3).
func orinTree(t *testing.T, root, dev string, labels [3]string, mV, mA [3]int) {
	t.Helper()
	for i := range 3 {
		write(t, root, fmt.Sprintf("%s/in%d_label", dev, i+1), labels[i]+"\n")
		write(t, root, fmt.Sprintf("%s/in%d_input", dev, i+1), fmt.Sprintf("%d\n", mV[i]))
		write(t, root, fmt.Sprintf("%s/curr%d_input", dev, i+1), fmt.Sprintf("%d\n", mA[i]))
	}
}

var orinLabels = [3]string{"VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"}

// raplZone writes a powercap zone (e.g. "intel-rapl:0" or "intel-rapl:0:0").
func raplZone(t *testing.T, root, zone, name string, uJ, maxRange int64) {
	t.Helper()
	dir := "sys/class/powercap/" + zone
	write(t, root, dir+"/name", name+"\n")
	write(t, root, dir+"/energy_uj", fmt.Sprintf("%d\n", uJ))
	write(t, root, dir+"/max_energy_range_uj", fmt.Sprintf("%d\n", maxRange))
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestINA3221(t *testing.T) {
	const el = 250 * time.Millisecond
	tests := []struct {
		name  string
		rail  string
		setup func(t *testing.T, root string, stop bool) // writes the values at Start (stop=false) or Stop
		want  float64                                    // mJ: trapezoid of the chosen rail's power over el
	}{
		{
			name: "nano default rail is POM_5V_IN",
			setup: func(t *testing.T, root string, stop bool) {
				if !stop {
					nanoTree(t, root, [3]int{2000, 300, 800})
				} else {
					nanoTree(t, root, [3]int{4000, 900, 1200})
				}
			},
			want: (2000.0 + 4000.0) / 2 * el.Seconds(),
		},
		{
			name: "nano configured rail",
			rail: "pom_5v_cpu",
			setup: func(t *testing.T, root string, stop bool) {
				if !stop {
					nanoTree(t, root, [3]int{2000, 300, 800})
				} else {
					nanoTree(t, root, [3]int{4000, 900, 1200})
				}
			},
			want: (800.0 + 1200.0) / 2 * el.Seconds(),
		},
		{
			name: "orin default rail is VDD_IN, power = mV*mA/1000",
			setup: func(t *testing.T, root string, stop bool) {
				if !stop {
					orinTree(t, root, orinDev, orinLabels, [3]int{5000, 5000, 5000}, [3]int{1000, 400, 200})
				} else {
					orinTree(t, root, orinDev, orinLabels, [3]int{4990, 5000, 5000}, [3]int{1400, 700, 300})
				}
			},
			want: (5000.0*1000/1000 + 4990.0*1400/1000) / 2 * el.Seconds(),
		},
		{
			name: "orin rail on a second device",
			rail: "VDD_GPU_SOC",
			setup: func(t *testing.T, root string, stop bool) {
				dev2 := "sys/bus/i2c/drivers/ina3221/1-0041/hwmon/hwmon4"
				labels2 := [3]string{"VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"}
				if !stop {
					orinTree(t, root, orinDev, orinLabels, [3]int{5000, 5000, 5000}, [3]int{1000, 400, 200})
					orinTree(t, root, dev2, labels2, [3]int{19000, 19000, 5000}, [3]int{300, 100, 50})
				} else {
					orinTree(t, root, dev2, labels2, [3]int{19000, 19000, 5000}, [3]int{500, 100, 50})
				}
			},
			want: (19000.0*300/1000 + 19000.0*500/1000) / 2 * el.Seconds(),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			clk := newClock()
			tc.setup(t, root, false)
			m, err := energy.New("ina3221", root, energy.Options{Rail: tc.rail, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			if m.Name() != "ina3221" {
				t.Errorf("Name() = %q, want ina3221", m.Name())
			}
			r := m.Start()
			tc.setup(t, root, true)
			clk.Advance(el)
			got, err := r.Stop(time.Hour) // busy is ignored by power meters
			if err != nil {
				t.Fatal(err)
			}
			if !near(got, tc.want) {
				t.Errorf("Stop = %v mJ, want %v mJ", got, tc.want)
			}
		})
	}
}

func TestRAPL(t *testing.T) {
	const maxRange = 262143328850
	tests := []struct {
		name             string
		pkg0From, pkg0To int64
		pkg1From, pkg1To int64
		wantUJ0, wantUJ1 int64
	}{
		{"no wrap", 1_000_000, 1_750_000, 40_000_000, 42_500_000, 750_000, 2_500_000},
		{"package 0 wraps", maxRange - 171_150, 500_000, 1_000_000, 3_500_000, 500_000 + 171_150, 2_500_000},
		{"idle", 7, 7, 9, 9, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			raplZone(t, root, "intel-rapl:0", "package-0", tc.pkg0From, maxRange)
			raplZone(t, root, "intel-rapl:1", "package-1", tc.pkg1From, maxRange)
			// Sub-zones and psys overlap the packages and must not be added.
			// One sub-zone carries a package name: sub-zones are excluded by path.
			raplZone(t, root, "intel-rapl:0:0", "core", 5, maxRange)
			raplZone(t, root, "intel-rapl:1:0", "package-1", 5, maxRange)
			raplZone(t, root, "intel-rapl:2", "psys", 5, maxRange)

			m, err := energy.New("rapl", root, energy.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if m.Name() != "rapl" {
				t.Errorf("Name() = %q, want rapl", m.Name())
			}
			r := m.Start()
			raplZone(t, root, "intel-rapl:0", "package-0", tc.pkg0To, maxRange)
			raplZone(t, root, "intel-rapl:1", "package-1", tc.pkg1To, maxRange)
			raplZone(t, root, "intel-rapl:0:0", "core", 999_999_999, maxRange)
			raplZone(t, root, "intel-rapl:1:0", "package-1", 999_999_999, maxRange)
			raplZone(t, root, "intel-rapl:2", "psys", 999_999_999, maxRange)
			got, err := r.Stop(0)
			if err != nil {
				t.Fatal(err)
			}
			want := float64(tc.wantUJ0+tc.wantUJ1) / 1000
			if !near(got, want) {
				t.Errorf("Stop = %v mJ, want %v mJ", got, want)
			}
		})
	}
}

func TestModel(t *testing.T) {
	tests := []struct {
		watts float64
		busy  time.Duration
		want  float64 // mJ = W × ms
	}{
		{10, 25 * time.Millisecond, 10 * 25},
		{0, 100 * time.Millisecond, energy.DefaultWatts * 100},
		{2.5, 1500 * time.Microsecond, 2.5 * 1.5},
		{7, 0, 0},
	}
	for _, tc := range tests {
		m, err := energy.New("model", "/nonexistent", energy.Options{Watts: tc.watts})
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.Start().Stop(tc.busy)
		if err != nil {
			t.Fatal(err)
		}
		if m.Name() != "model" || !near(got, tc.want) {
			t.Errorf("%v W, %v: %s %v mJ, want model %v mJ", tc.watts, tc.busy, m.Name(), got, tc.want)
		}
	}
	m, _ := energy.New("model", "", energy.Options{})
	if _, err := m.Start().Stop(-time.Millisecond); err == nil {
		t.Error("negative busy time: no error")
	}
}

// TestConcurrentReadings runs overlapping measurements on one meter from several goroutines.
func TestConcurrentReadings(t *testing.T) {
	const n = 8
	root := t.TempDir()
	raplZone(t, root, "intel-rapl:0", "package-0", 1000, 1<<40)
	nanoTree(t, root, [3]int{1000, 0, 0})
	clk := newClock()
	for _, kind := range []string{"rapl", "ina3221"} {
		m, err := energy.New(kind, root, energy.Options{Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		readings := make([]energy.Reading, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { readings[i] = m.Start() })
		}
		wg.Wait()

		raplZone(t, root, "intel-rapl:0", "package-0", 1000+60_000, 1<<40)
		nanoTree(t, root, [3]int{3000, 0, 0})
		clk.Advance(40 * time.Millisecond)
		want := map[string]float64{"rapl": 60, "ina3221": (1000.0 + 3000.0) / 2 * 0.040}[kind]

		got := make([]float64, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { got[i], errs[i] = readings[i].Stop(time.Millisecond) })
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil || !near(got[i], want) {
				t.Errorf("%s reading %d: %v mJ, %v; want %v mJ", kind, i, got[i], errs[i], want)
			}
		}
		// Reset for the next kind.
		raplZone(t, root, "intel-rapl:0", "package-0", 1000, 1<<40)
		nanoTree(t, root, [3]int{1000, 0, 0})
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name  string
		kind  string
		opts  energy.Options
		setup func(t *testing.T, root string)
		is    error    // if set, errors.Is must hold
		msg   []string // substrings of the error message
	}{
		{
			name: "ina3221 absent", kind: "ina3221",
			is: energy.ErrNotFound, msg: []string{"ina3221x", "hwmon"},
		},
		{
			name: "ina3221 rail absent lists the rails found", kind: "ina3221", opts: energy.Options{Rail: "VDD_FOO"},
			setup: func(t *testing.T, root string) { nanoTree(t, root, [3]int{1, 2, 3}) },
			is:    energy.ErrNotFound, msg: []string{"VDD_FOO", "POM_5V_IN", "POM_5V_CPU"},
		},
		{
			name: "nano power file missing", kind: "ina3221",
			setup: func(t *testing.T, root string) { write(t, root, nanoDev+"/rail_name_0", "POM_5V_IN\n") },
			is:    fs.ErrNotExist, msg: []string{"in_power0_input"},
		},
		{
			name: "nano power file malformed", kind: "ina3221",
			setup: func(t *testing.T, root string) {
				nanoTree(t, root, [3]int{1, 2, 3})
				write(t, root, nanoDev+"/in_power0_input", "n/a\n")
			},
			msg: []string{"in_power0_input", "not a decimal integer", `"n/a"`},
		},
		{
			name: "orin current file missing", kind: "ina3221",
			setup: func(t *testing.T, root string) {
				orinTree(t, root, orinDev, orinLabels, [3]int{5000, 5000, 5000}, [3]int{1, 1, 1})
				if err := os.Remove(filepath.Join(root, orinDev, "curr1_input")); err != nil {
					t.Fatal(err)
				}
			},
			is: fs.ErrNotExist, msg: []string{"curr1_input", "VDD_IN"},
		},
		{
			name: "rapl absent", kind: "rapl",
			is: energy.ErrNotFound, msg: []string{"powercap"},
		},
		{
			name: "rapl only sub-zones and psys", kind: "rapl",
			setup: func(t *testing.T, root string) {
				raplZone(t, root, "intel-rapl:0:0", "core", 1, 100)
				raplZone(t, root, "intel-rapl:1", "psys", 1, 100)
			},
			is: energy.ErrNotFound,
		},
		{
			name: "rapl energy_uj unreadable", kind: "rapl",
			setup: func(t *testing.T, root string) {
				raplZone(t, root, "intel-rapl:0", "package-0", 1, 100)
				p := filepath.Join(root, "sys/class/powercap/intel-rapl:0/energy_uj")
				// A folder is unreadable as a file even for root, who ignores mode bits.
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(p, 0o755); err != nil {
					t.Fatal(err)
				}
			},
			msg: []string{"energy_uj"},
		},
		{
			name: "rapl max range missing", kind: "rapl",
			setup: func(t *testing.T, root string) {
				raplZone(t, root, "intel-rapl:0", "package-0", 1, 100)
				if err := os.Remove(filepath.Join(root, "sys/class/powercap/intel-rapl:0/max_energy_range_uj")); err != nil {
					t.Fatal(err)
				}
			},
			is: fs.ErrNotExist, msg: []string{"max_energy_range_uj"},
		},
		{
			name: "rapl max range zero", kind: "rapl",
			setup: func(t *testing.T, root string) { raplZone(t, root, "intel-rapl:0", "package-0", 1, 0) },
			msg:   []string{"max_energy_range_uj is 0"},
		},
		{name: "unknown kind", kind: "nvml", msg: []string{`unknown meter kind "nvml"`}},
		{name: "negative watts", kind: "model", opts: energy.Options{Watts: -1}, msg: []string{"invalid watts"}},
		{name: "NaN watts", kind: "auto", opts: energy.Options{Watts: math.NaN()}, msg: []string{"invalid watts"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, root)
			}
			m, err := energy.New(tc.kind, root, tc.opts)
			if err == nil {
				t.Fatalf("New(%q) = %s meter, want an error", tc.kind, m.Name())
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			for _, s := range tc.msg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestRAPLPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads files whatever their mode")
	}
	root := t.TempDir()
	raplZone(t, root, "intel-rapl:0", "package-0", 1, 100)
	if err := os.Chmod(filepath.Join(root, "sys/class/powercap/intel-rapl:0/energy_uj"), 0o000); err != nil {
		t.Fatal(err)
	}
	if _, err := energy.New("rapl", root, energy.Options{}); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("New(rapl) error = %v, want permission denied", err)
	}
	m, err := energy.Detect(root, energy.Options{})
	if err != nil || m.Name() != "model" {
		t.Errorf("Detect = %v, %v; want the model meter", m, err)
	}
}

// TestStopErrors: a source that fails between Start and Stop gives an error, not a number.
func TestStopErrors(t *testing.T) {
	t.Run("ina3221 file removed before Start", func(t *testing.T) {
		root := t.TempDir()
		nanoTree(t, root, [3]int{1, 2, 3})
		m, err := energy.New("ina3221", root, energy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(root, nanoDev, "in_power0_input"))
		r := m.Start()
		nanoTree(t, root, [3]int{1, 2, 3}) // back again: Start's failure must still be reported
		if _, err := r.Stop(0); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "start") {
			t.Errorf("Stop error = %v, want the start failure", err)
		}
	})
	t.Run("ina3221 file malformed at Stop", func(t *testing.T) {
		root := t.TempDir()
		nanoTree(t, root, [3]int{1, 2, 3})
		m, err := energy.New("ina3221", root, energy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r := m.Start()
		write(t, root, nanoDev+"/in_power0_input", "")
		if _, err := r.Stop(0); err == nil || !strings.Contains(err.Error(), "empty value") {
			t.Errorf("Stop error = %v, want empty value", err)
		}
	})
	t.Run("ina3221 clock backwards", func(t *testing.T) {
		root := t.TempDir()
		nanoTree(t, root, [3]int{1, 2, 3})
		clk := newClock()
		m, err := energy.New("ina3221", root, energy.Options{Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		r := m.Start()
		clk.Advance(-time.Second)
		if _, err := r.Stop(0); err == nil {
			t.Error("Stop with the clock gone backwards: no error")
		}
	})
	t.Run("rapl file removed at Stop", func(t *testing.T) {
		root := t.TempDir()
		raplZone(t, root, "intel-rapl:0", "package-0", 1, 100)
		raplZone(t, root, "intel-rapl:1", "package-1", 1, 100)
		m, err := energy.New("rapl", root, energy.Options{})
		if err != nil {
			t.Fatal(err)
		}
		r := m.Start()
		os.Remove(filepath.Join(root, "sys/class/powercap/intel-rapl:1/energy_uj"))
		if _, err := r.Stop(0); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "intel-rapl:1") {
			t.Errorf("Stop error = %v, want intel-rapl:1 missing", err)
		}
	})
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name  string
		opts  energy.Options
		setup func(t *testing.T, root string)
		want  string
		log   []string // substrings of the log: why sources were skipped
	}{
		{
			name: "nano and rapl picks ina3221",
			setup: func(t *testing.T, root string) {
				nanoTree(t, root, [3]int{1, 2, 3})
				raplZone(t, root, "intel-rapl:0", "package-0", 1, 100)
			},
			want: "ina3221", log: []string{"rail=POM_5V_IN", "layout=nano"},
		},
		{
			name: "nano before orin",
			setup: func(t *testing.T, root string) {
				orinTree(t, root, orinDev, orinLabels, [3]int{1, 1, 1}, [3]int{1, 1, 1})
				nanoTree(t, root, [3]int{1, 2, 3})
			},
			want: "ina3221", log: []string{"layout=nano"},
		},
		{
			name: "orin and rapl picks ina3221",
			setup: func(t *testing.T, root string) {
				orinTree(t, root, orinDev, orinLabels, [3]int{1, 1, 1}, [3]int{1, 1, 1})
				raplZone(t, root, "intel-rapl:0", "package-0", 1, 100)
			},
			want: "ina3221", log: []string{"rail=VDD_IN", "layout=orin"},
		},
		{
			name:  "only rapl",
			setup: func(t *testing.T, root string) { raplZone(t, root, "intel-rapl:0", "package-0", 1, 100) },
			want:  "rapl", log: []string{"ina3221 unavailable", "no device"},
		},
		{
			name: "configured rail absent falls through to rapl",
			opts: energy.Options{Rail: "VDD_FOO"},
			setup: func(t *testing.T, root string) {
				nanoTree(t, root, [3]int{1, 2, 3})
				raplZone(t, root, "intel-rapl:0", "package-0", 1, 100)
			},
			want: "rapl", log: []string{"VDD_FOO"},
		},
		{
			name: "empty tree gives model", want: "model",
			log: []string{"ina3221 unavailable", "rapl unavailable", "watts=5"},
		},
		{
			name: "unreadable rapl gives model",
			setup: func(t *testing.T, root string) {
				raplZone(t, root, "intel-rapl:0", "package-0", 1, 100)
				write(t, root, "sys/class/powercap/intel-rapl:0/energy_uj", "")
			},
			want: "model", log: []string{"rapl unavailable", "energy_uj", "empty value"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.setup != nil {
				tc.setup(t, root)
			}
			var buf bytes.Buffer
			tc.opts.Logger = slog.New(slog.NewTextHandler(&buf, nil))
			for _, kind := range []string{"auto", ""} {
				buf.Reset()
				m, err := energy.New(kind, root, tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				if m.Name() != tc.want {
					t.Errorf("New(%q) picked %s, want %s; log:\n%s", kind, m.Name(), tc.want, &buf)
				}
				for _, s := range tc.log {
					if !strings.Contains(buf.String(), s) {
						t.Errorf("log does not mention %q:\n%s", s, &buf)
					}
				}
			}
		})
	}
}

// TestMeasureChargesCPUTime: the model meter charges the thread's CPU
// time, so work that mostly waits (descheduled, here asleep) costs far less
// than its wall time, and work that computes is charged what it ran.
func TestMeasureChargesCPUTime(t *testing.T) {
	m, err := energy.New("model", "", energy.Options{Watts: 10})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := energy.ThreadCPU(); !ok {
		t.Skip("no per-thread CPU clock here")
	}
	tests := []struct {
		name string
		work func() error
		// cpuOverWall bounds the CPU ÷ wall ratio the work must show.
		lo, hi float64
	}{
		{"asleep", func() error { time.Sleep(30 * time.Millisecond); return nil }, 0, 0.5},
		// At most 1.05 (CPU is capped at wall time); at least a little:
		// under nice 19 on a loaded machine the thread may get ~1% of a core.
		{"computing", func() error { spin(20 * time.Millisecond); return nil }, 0.002, 1.05},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Go code, unlike the one cgo call Measure is for, moves between
			// threads when preempted, and Measure reads the thread it
			// started on: keep it there.
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			w, err := energy.Measure(m, tc.work)
			if err != nil || w.MeterErr != nil {
				t.Fatal(err, w.MeterErr)
			}
			r := float64(w.CPU) / float64(w.Wall)
			if r < tc.lo || r > tc.hi || w.CPU <= 0 {
				t.Fatalf("CPU %v over wall %v = %.3f, want in [%v, %v]", w.CPU, w.Wall, r, tc.lo, tc.hi)
			}
			if want := 10 * float64(w.CPU) / float64(time.Millisecond); !near(w.MJ, want) {
				t.Fatalf("charged %v mJ, want 10 W × CPU %v = %v mJ", w.MJ, w.CPU, want)
			}
		})
	}
	boom := errors.New("boom")
	if _, err := energy.Measure(m, func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("work error %v, want boom", err)
	}
}

// spin computes for about d of wall time.
func spin(d time.Duration) {
	x := 1.0
	for t0 := time.Now(); time.Since(t0) < d; {
		for range 1000 {
			x = x*1.0000001 + 1e-9
		}
	}
	_ = x
}
