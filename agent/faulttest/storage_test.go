//go:build linux

package faulttest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/schema"
)

// startBroker is Mosquitto when installed (it keeps the broker's work out
// of the test process, which runs under -race), else the embedded broker.
func startBroker(t *testing.T) string {
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return startMosquitto(t).URL()
	}
	if _, err := exec.LookPath("mosquitto"); err == nil {
		return startMosquitto(t).URL()
	}
	return startEmbedded(t)
}

// setDefaultExit sets the tenant's default bound to a fixed exit through a
// control message and waits for the state that confirms it. The control
// message is NOT retained, so after a restart only the agent's store knows
// the setting (a retained one would be redelivered and applied again,
// hiding a store that lost it).
func setDefaultExit(t *testing.T, tc *tenantClient, exit int) {
	t.Helper()
	b := exitBound(exit)
	payload, err := schema.EncodeControl(&schema.Control{Bound: &b}, schema.JSON)
	if err != nil {
		t.Fatal(err)
	}
	if err := tc.publishTo(topics.Control(tc.name), payload); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(20 * time.Second)
	for {
		select {
		case s := <-tc.state:
			set, _, err := schema.DecodeSettings(s, 1<<20)
			if err != nil {
				t.Fatalf("state: %v", err)
			}
			if set.Bound.Exit != nil && *set.Bound.Exit == exit {
				return
			}
		case <-timeout:
			t.Fatal("no state confirming the tenant's default bound")
		}
	}
}

// TestKillDuringHistoryWrites kills the agent with SIGKILL while it writes
// history for a load of a few thousand requests, then restarts it on the
// same data folder: Badger opens (no corruption), the tenant's settings
// are intact, every request is answered once in content, and the store
// reads back cleanly once the agent has stopped.
func TestKillDuringHistoryWrites(t *testing.T) {
	requireSetup(t)
	const n, rate, defaultExit = 3000, 1000.0, 2
	began := time.Now()
	url := startBroker(t)
	data := newDataDir(t, t.TempDir())
	ag := newAgent(t, url, data, true)
	ag.start()
	cam := newTenant(t, url, "hist")
	setDefaultExit(t, cam, defaultExit)

	l := cam.sendLoad("h", n, rate, schema.Bound{}) // no bound: the tenant's default
	if !cam.waitAnswered(ag, l.ids, n/2, 20*time.Second, 10*time.Second) {
		t.Fatalf("only %d of %d answered before the kill", cam.answered(l.ids), n/2)
	}
	written := ag.metric("delen_history_written_total")
	ag.kill()
	atKill := cam.answered(l.ids)
	again := cam.lastAnswered(resendAfterCrash)
	ag.start() // fails the test if Badger does not open
	l.wait(t)
	if !cam.waitAnswered(ag, l.ids, n, 30*time.Second, 5*time.Second) {
		t.Errorf("after the restart, %d of %d answered", cam.answered(l.ids), n)
	}
	cam.resend(ag, l, again)
	// A request without a bound after the restart: served at the default
	// exit only if the settings came back from the store.
	probe := request(t, "probe", 7, schema.Bound{})
	if err := cam.publish(probe, time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !cam.waitAnswered(ag, []string{"probe"}, 1, 20*time.Second, 20*time.Second) {
		t.Fatal("no result for a request sent after the restart")
	}
	if r := cam.result("probe"); r.Status != schema.StatusOK || r.Exit != defaultExit {
		t.Errorf("after the restart a request without a bound got status %s exit %d, want ok at the tenant's default exit %d", r.Status, r.Exit, defaultExit)
	}
	cam.settle(300*time.Millisecond, 3*time.Second)
	ag.stop()
	tl := cam.tally(l.ids, int(l.sent.Load()))
	wrongExit := 0
	for _, id := range l.ids {
		if r := cam.result(id); r != nil && r.Exit != defaultExit {
			wrongExit++
		}
	}
	if wrongExit > 0 {
		t.Errorf("%d results not at the tenant's default exit %d", wrongExit, defaultExit)
	}

	// The store, opened by the test now that the agent has stopped.
	st, err := store.Open(filepath.Join(data, "store"), store.Options{})
	if err != nil {
		t.Fatalf("store does not open after the crash and restart: %v", err)
	}
	defer st.Close()
	tenants, err := st.Tenants()
	if err != nil {
		t.Fatalf("read tenants: %v", err)
	}
	if set, ok := tenants["hist"]; !ok || set.Bound.Exit == nil || *set.Bound.Exit != defaultExit {
		t.Errorf("stored settings of tenant hist: %+v (present %v), want default exit %d", set, ok, defaultExit)
	}
	hist, err := st.History("hist", time.Time{}, 0)
	if err != nil {
		t.Fatalf("read history: %v", err)
	}
	seen := map[string]bool{}
	for _, r := range hist {
		if r.Result == nil || r.ID == "" || seen[r.ID] {
			t.Errorf("history record %q: result %v, seen before %v", r.ID, r.Result != nil, seen[r.ID])
		}
		seen[r.ID] = true
	}
	for _, id := range l.ids {
		if d, err := st.GetDedupe("hist", id); err != nil {
			t.Errorf("dedupe record of %s: %v", id, err)
			break
		} else if raw := cam.rawFirst(id); raw != nil && string(d.Payload) != string(raw) {
			t.Errorf("dedupe record of %s differs from the result delivered", id)
			break
		}
	}
	t.Logf("kill -9 at %d answered (history written before the kill: %.0f): %s (incl. %d answered before the kill and resent after it); wrong exit %d; history records after restart %d of %d served (a crash loses the unflushed batch, ≤ 200 ms); %s",
		atKill, written, tl, len(again), wrongExit, len(hist), n+1, time.Since(began).Round(time.Millisecond))
	tl.check(t)
}

// TestFullDataFolder runs the agent with its data folder on a small
// filesystem that is then filled up: requests must still be served,
// requests resent after their answer get the same bytes (dedupe records
// kept in memory), history is lost and counted (delen_history_dropped_total,
// delen_store_errors_total) and a log line says so. Two filesystems: a
// tmpfs, and ext4 on a loop device (a real disk's allocation). Mounting
// needs root (CAP_SYS_ADMIN); without it the subtest is skipped. (A
// read-only or chmod-ed folder is no substitute: Badger must write to
// open, and root ignores permissions.)
func TestFullDataFolder(t *testing.T) {
	requireSetup(t)
	t.Run("tmpfs", func(t *testing.T) { fullDataFolder(t, mountTmpfs(t, "64m")) })
	t.Run("ext4", func(t *testing.T) { fullDataFolder(t, mountExt4(t)) })
}

// mountTmpfs mounts a tmpfs of size (e.g. "32m") for the test, unmounted
// at its end.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	mnt := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root): %v", err)
	}
	t.Cleanup(func() { unmount(mnt) })
	return mnt
}

// mountExt4 makes a 64 MiB ext4 image and mounts it through a loop device.
func mountExt4(t *testing.T) string {
	t.Helper()
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not installed")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "ext4.img"), filepath.Join(dir, "ext4")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err == nil {
		err = f.Truncate(64 << 20)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-m", "0", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4: %v\n%s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount an ext4 image (needs root and loop devices): %v\n%s", err, out)
	}
	t.Cleanup(func() { unmount(mnt) })
	return mnt
}

func unmount(mnt string) {
	if err := syscall.Unmount(mnt, 0); err != nil {
		_ = syscall.Unmount(mnt, syscall.MNT_DETACH)
	}
}

func fullDataFolder(t *testing.T, mnt string) {
	const n, rate = 1000, 500.0
	began := time.Now()
	url := startBroker(t)
	data := newDataDir(t, mnt)
	// Registered after the mount, so cleaned up (killed) before the unmount.
	ag := newAgent(t, url, data, true)
	ag.start()
	free := fill(t, mnt)
	cam := newTenant(t, url, "full")

	l := cam.sendLoad("f", n, rate, exitBound(1))
	l.wait(t)
	if !cam.waitAnswered(ag, l.ids, n, 30*time.Second, 5*time.Second) {
		t.Errorf("with the data folder full, %d of %d answered", cam.answered(l.ids), n)
	}
	// A tenant's retry of requests already answered: with no room for
	// dedupe records in the store, the agent's memory answers them with the
	// same bytes (the tally counts a differing answer as duplicated).
	again := cam.lastAnswered(resendAfterCrash)
	cam.resend(ag, l, again)
	cam.settle(300*time.Millisecond, 3*time.Second)
	if !ag.running() {
		tl := cam.tally(l.ids, int(l.sent.Load()))
		t.Logf("data folder full (%d bytes were free): %s; %s", free, tl, time.Since(began).Round(time.Millisecond))
		t.Fatalf("the agent died with its data folder full: %s", crashReason(ag.log.String()))
	}
	// History is flushed every 200 ms: wait (bounded) for the failures to
	// be counted.
	var dropped, storeErrors, written float64
	deadline := time.Now().Add(5 * time.Second)
	for {
		dropped = ag.metric("delen_history_dropped_total")
		storeErrors = ag.metric("delen_store_errors_total")
		written = ag.metric("delen_history_written_total")
		if (dropped > 0 && storeErrors > 0) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond) // polling a metric, bounded
	}
	logged := ag.log.count("history batch not written")
	deduped := ag.metric("delen_deduplicated_total")
	tl := cam.tally(l.ids, int(l.sent.Load()))
	t.Logf("data folder full (%d bytes were free): %s (incl. %d resent after their answer, deduplicated %.0f); history written %.0f, dropped %.0f, store errors %.0f, log lines %d; %s",
		free, tl, len(again), deduped, written, dropped, storeErrors, logged, time.Since(began).Round(time.Millisecond))
	tl.check(t)
	if deduped < float64(len(again)) {
		t.Errorf("deduplicated %.0f of %d requests resent after their answer", deduped, len(again))
	}
	if dropped == 0 || storeErrors == 0 {
		t.Errorf("history dropped %.0f and store errors %.0f with the data folder full; want both > 0", dropped, storeErrors)
	}
	if logged == 0 {
		t.Error("no log line says history was not written")
	}

	// A graceful stop and a start with the folder still full: the store
	// closes; the new agent does not open it for writing (Badger maps new
	// log files as it opens, and a page the file system cannot back kills
	// it with SIGBUS) but serves from memory, and says so.
	ag.stop()
	ag.start()
	if err := cam.publish(request(t, "again", 3, exitBound(1)), time.Now().Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !cam.waitAnswered(ag, []string{"again"}, 1, 20*time.Second, 20*time.Second) {
		t.Error("no result after a restart with the data folder still full")
	}
	if p := ag.metric("delen_store_persistent"); p != 0 {
		t.Errorf("after a restart with the data folder full, delen_store_persistent = %.0f, want 0", p)
	}
	ag.stop()
}

// fill writes a file into dir until the filesystem is full; it returns
// how many bytes it took.
func fill(t *testing.T, dir string) int64 {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var total int64
	for {
		n, err := f.Write(buf)
		total += int64(n)
		if errors.Is(err, syscall.ENOSPC) {
			return total
		}
		if err != nil {
			t.Fatalf("fill %s: %v", dir, err)
		}
		if total > 1<<30 {
			t.Fatalf("fill %s: more than 1 GiB written, not a small filesystem", dir)
		}
	}
}

// crashReason picks the lines of a Go crash that say what happened: the
// fatal error, the signal and the first frame outside the runtime.
func crashReason(log string) string {
	var out []string
	lines := strings.Split(log, "\n")
	for i, l := range lines {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "fatal error:"), strings.HasPrefix(l, "panic:"), strings.HasPrefix(l, "[signal "):
			out = append(out, l)
		case strings.HasPrefix(l, "goroutine ") && strings.HasSuffix(l, "[running]:"):
			for _, f := range lines[i+1:] {
				f = strings.TrimSpace(f)
				if f == "" {
					break
				}
				if !strings.HasPrefix(f, "runtime.") && !strings.HasPrefix(f, "/") {
					out = append(out, f)
					break
				}
			}
		}
		if len(out) >= 4 {
			break
		}
	}
	if len(out) == 0 {
		return "no Go crash report in its log"
	}
	return strings.Join(out, "; ")
}

// TestReadOnlyDataFolder restarts the agent on a data folder that has
// become read-only (an SD card the kernel remounted after I/O errors): it
// serves from an in-memory store, with the tenant settings it finds in the
// read-only one, says so in its log and in delen_store_persistent, and
// stops cleanly.
func TestReadOnlyDataFolder(t *testing.T) {
	requireSetup(t)
	const n, rate, defaultExit = 200, 200.0, 2
	mnt := mountTmpfs(t, "128m") // room for the settings to be stored
	url := startBroker(t)
	data := newDataDir(t, mnt)
	ag := newAgent(t, url, data, true)
	ag.start()
	cam := newTenant(t, url, "ro")
	setDefaultExit(t, cam, defaultExit)
	ag.stop()

	if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Skipf("cannot remount the tmpfs read-only: %v", err)
	}
	ag.start()
	l := cam.sendLoad("r", n, rate, schema.Bound{}) // the tenant's default bound
	l.wait(t)
	if !cam.waitAnswered(ag, l.ids, n, 20*time.Second, 5*time.Second) {
		t.Errorf("with the data folder read-only, %d of %d answered", cam.answered(l.ids), n)
	}
	persistent := ag.metric("delen_store_persistent")
	wrongExit := 0
	for _, id := range l.ids {
		if r := cam.result(id); r != nil && r.Exit != defaultExit {
			wrongExit++
		}
	}
	logged := ag.log.count("data folder not writable")
	tl := cam.tally(l.ids, int(l.sent.Load()))
	t.Logf("read-only data folder: %s; results not at the stored default exit %d: %d; delen_store_persistent %.0f; log lines %d", tl, defaultExit, wrongExit, persistent, logged)
	tl.check(t)
	if wrongExit > 0 {
		t.Errorf("%d results ignored the tenant's stored default bound (exit %d)", wrongExit, defaultExit)
	}
	if persistent != 0 {
		t.Errorf("delen_store_persistent = %.0f, want 0", persistent)
	}
	if logged == 0 {
		t.Error("no log line says the data folder is not writable")
	}
	ag.stop()
}
