//go:build linux

package faulttest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/delen-edge/delen/models/imagein"
	"github.com/delen-edge/delen/schema"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux architecture).
const userHZ = 100

// procCPU is the CPU time (user + system) that process pid has used.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// fields count from after its closing one.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	return time.Duration(utime+stime) * time.Second / userHZ
}

func (a *agentProc) pid() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd == nil {
		a.t.Fatal("agent not running")
	}
	return a.cmd.Process.Pid
}

// TestImageCPUPerRequest measures the agent's CPU time per request (user +
// system, from /proc, of the agent process alone: the broker is a real
// Mosquitto, the tenant this test) for one camera frame sent three ways at
// the same fixed rate: as a 640×480 JPEG as a camera publishes it (the
// agent decodes and resizes it), as the raw uint8 tensor of the same frame
// after that resize (what a tenant had to compute itself before), and as a
// 28×28 JPEG of the same tensor. It asserts only that every request was
// served; the figures are logged (a shared machine: compare the ratios).
func TestImageCPUPerRequest(t *testing.T) {
	requireSetup(t)
	convert := "/usr/bin/convert"
	if out, err := exec.Command(convert, "-version").Output(); err != nil || !bytes.Contains(out, []byte("ImageMagick")) {
		if os.Getenv("CI") != "" {
			t.Fatal("ImageMagick's convert not found (make setup installs it)")
		}
		t.Skip("ImageMagick's convert not found")
	}
	// 50 requests/s: a 640×480 JPEG costs ~9 ms of CPU here, and make test
	// runs packages in parallel on a shared machine.
	const n, rate = 300, 50.0
	dir := t.TempDir()
	pgm := filepath.Join(dir, "digit.pgm")
	if err := os.WriteFile(pgm, append([]byte("P5\n28 28\n255\n"), testSet.Images[0]...), 0o644); err != nil {
		t.Fatal(err)
	}
	frameFile := filepath.Join(dir, "frame.jpg")
	smallFile := filepath.Join(dir, "small.jpg")
	for _, args := range [][]string{
		{pgm, "-filter", "triangle", "-resize", "640x480!", "-type", "TrueColor", "-quality", "85", frameFile},
		{pgm, "-quality", "90", smallFile},
	} {
		if out, err := exec.Command(convert, args...).CombinedOutput(); err != nil {
			t.Fatalf("convert %v: %v\n%s", args, err, out)
		}
	}
	frame, err := os.ReadFile(frameFile)
	if err != nil {
		t.Fatal(err)
	}
	small, err := os.ReadFile(smallFile)
	if err != nil {
		t.Fatal(err)
	}
	// The raw tensor of the same frame: what the agent makes of the JPEG.
	px, err := imagein.Pixels(schema.FormatJPEG, frame, imagein.Layout{Channels: 1, Height: 28, Width: 28}, 0)
	if err != nil {
		t.Fatal(err)
	}

	m := startMosquitto(t)
	ag := newAgent(t, m.URL(), newDataDir(t, t.TempDir()), false)
	ag.start()
	cam := newTenant(t, m.URL(), "cam")
	exit := 3
	forms := []struct {
		name  string
		input schema.Tensor
	}{
		{"raw uint8 tensor 1x28x28", schema.NewUint8Tensor([]int{1, 28, 28}, px)},
		{"640x480 JPEG", schema.Tensor{Format: schema.FormatJPEG, Data: frame}},
		{"28x28 JPEG", schema.Tensor{Format: schema.FormatJPEG, Data: small}},
	}
	// A warm-up load first, so that start-up work is in no measurement.
	warm := cam.sendLoadOf("warm", 100, 0, forms[1].input)
	warm.wait(t)
	if !cam.waitAnswered(ag, warm.ids, len(warm.ids), 30*time.Second, 10*time.Second) {
		t.Fatal("warm-up not answered")
	}
	cpu := map[string]time.Duration{}
	var report []string
	for i, f := range forms {
		before := procCPU(t, ag.pid())
		l := cam.sendLoadOf(fmt.Sprintf("f%d-", i), n, rate, f.input)
		l.wait(t)
		if !cam.waitAnswered(ag, l.ids, n, 120*time.Second, 30*time.Second) {
			t.Fatalf("%s: %d of %d answered", f.name, cam.answered(l.ids), n)
		}
		cpu[f.name] = procCPU(t, ag.pid()) - before
		tl := cam.tally(l.ids, int(l.sent.Load()))
		tl.check(t)
		if r := cam.result(l.ids[0]); r == nil || r.Exit != exit || r.Class == nil || *r.Class != testSet.Label(0) {
			t.Errorf("%s: result %+v, want exit %d class %d", f.name, r, exit, testSet.Label(0))
		}
		report = append(report, fmt.Sprintf("%s (%d B): %.3f ms", f.name, len(f.input.Data), float64(cpu[f.name].Microseconds())/1000/n))
	}
	ag.stop()
	raw := cpu[forms[0].name]
	t.Logf("agent CPU per request at %.0f requests/s, exit %d, %d requests each: %s; 640x480 JPEG ÷ raw tensor %.2f, 28x28 JPEG ÷ raw tensor %.2f",
		rate, exit, n, strings.Join(report, ", "), float64(cpu[forms[1].name])/float64(raw), float64(cpu[forms[2].name])/float64(raw))
}

// sendLoadOf is sendLoad with every request carrying input (exit 3).
func (tc *tenantClient) sendLoadOf(prefix string, n int, rate float64, input schema.Tensor) *load {
	exit := 3
	return tc.sendPayloads(prefix, n, rate, func(id string, i int) []byte {
		label := testSet.Label(0)
		p, err := schema.EncodeRequest(&schema.Request{ID: id, Input: input, Bound: schema.Bound{Exit: &exit}, Label: &label,
			SentAt: time.Now().UnixMicro()}, schema.MsgPack)
		if err != nil {
			tc.t.Fatal(err)
		}
		return p
	})
}
