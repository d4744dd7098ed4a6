package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/schema"
)

func TestOpenWritableOrMemory(t *testing.T) {
	t.Run("writable", func(t *testing.T) {
		st, err := store.OpenWritableOrMemory(filepath.Join(t.TempDir(), "store"), store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		if st.InMemory() {
			t.Error("a writable folder gave an in-memory store")
		}
	})
	t.Run("not a folder", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(file, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		st, err := store.OpenWritableOrMemory(filepath.Join(file, "store"), store.Options{})
		if err == nil || errors.Is(err, store.ErrReadOnly) || st != nil {
			t.Fatalf("store under a file: %v (store %v); want a plain error and no store", err, st)
		}
	})
	t.Run("read-only mount", func(t *testing.T) {
		mnt := t.TempDir()
		if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=64m"); err != nil {
			t.Skipf("cannot mount a tmpfs (needs root): %v", err)
		}
		defer syscall.Unmount(mnt, syscall.MNT_DETACH)
		dir := filepath.Join(mnt, "store")
		st, err := store.Open(dir, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		w := 7.0
		if err := st.PutTenant("cam1", schema.Settings{Weight: w}); err != nil {
			t.Fatal(err)
		}
		prof := &profile.Profile{Model: "m", Version: "1", Device: "dev", EnergySource: "model",
			Stages:     []profile.StageStats{{Stage: 0, Runs: 10, LatencyMS: profile.Quantiles{P50: 1, P95: 2, P99: 3}}},
			Exits:      []profile.ExitStats{{Exit: 1, Accuracy: 0.9}},
			Validation: &profile.Validation{Confidence: [][]float32{{0.5, 0.9}}, Correct: [][]bool{{false, true}}}}
		if err := st.PutProfile(prof); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount("tmpfs", mnt, "tmpfs", syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			t.Skipf("cannot remount read-only: %v", err)
		}

		st, err = store.OpenWritableOrMemory(dir, store.Options{})
		if !errors.Is(err, store.ErrReadOnly) || st == nil {
			t.Fatalf("read-only folder: %v (store %v); want ErrReadOnly and an in-memory store", err, st)
		}
		defer st.Close()
		if !st.InMemory() {
			t.Error("InMemory() false")
		}
		tenants, err := st.Tenants()
		if err != nil || tenants["cam1"].Weight != w {
			t.Fatalf("tenants carried over: %+v, %v; want cam1 with weight %g", tenants, err, w)
		}
		if got, err := st.Profile("m", "1", "dev"); err != nil || got.Validation == nil || len(got.Validation.Confidence[0]) != 2 {
			t.Fatalf("profile carried over: %+v, %v; want its validation data", got, err)
		}
		// Writes work, in memory.
		if err := st.AppendHistory([]store.Record{{Result: &schema.Result{Tenant: "cam1", ID: "r1"}}}, time.Hour); err != nil {
			t.Errorf("history in memory: %v", err)
		}
	})
}
