package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFile: what a reader finds at the name after WriteFile, and that
// no temporary file is left behind, whatever was there before: nothing,
// an older file, a temporary file a crash left half written; and that a
// write that fails leaves the name as it was.
func TestWriteFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		old     string // the file's content before; "" none
		tmp     string // a leftover temporary file's; "" none
		dirName bool   // the name is a non-empty folder: the rename fails
		missing bool   // the folder does not exist
		wantErr bool
		want    string // the file's content after
	}{
		{name: "new file", want: "new"},
		{name: "replaces", old: "old", want: "new"},
		{name: "leftover temporary file", old: "old", tmp: `{"torn`, want: "new"},
		{name: "leftover temporary file, no file", tmp: "torn", want: "new"},
		{name: "rename fails", dirName: true, wantErr: true},
		{name: "no folder", missing: true, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.missing {
				dir = filepath.Join(dir, "gone")
			}
			name := filepath.Join(dir, "f.json")
			if tc.old != "" {
				if err := os.WriteFile(name, []byte(tc.old), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tc.tmp != "" {
				if err := os.WriteFile(name+TempSuffix, []byte(tc.tmp), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if tc.dirName {
				if err := os.MkdirAll(filepath.Join(name, "x"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			err := WriteFile(name, []byte("new"), 0o644)
			if (err != nil) != tc.wantErr {
				t.Fatalf("WriteFile: %v, want an error: %v", err, tc.wantErr)
			}
			if _, err := os.Lstat(name + TempSuffix); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("temporary file left behind (%v)", err)
			}
			switch {
			case tc.dirName:
				if fi, err := os.Stat(name); err != nil || !fi.IsDir() {
					t.Errorf("the folder at the name: %v, %v", fi, err)
				}
			case tc.wantErr:
				if _, err := os.Stat(name); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("a failed write left a file (%v)", err)
				}
			default:
				b, err := os.ReadFile(name)
				if err != nil || string(b) != tc.want {
					t.Errorf("read back %q, %v; want %q", b, err, tc.want)
				}
				// The mode asked for (as the umask leaves it), not a
				// leftover's.
				ref := filepath.Join(dir, "ref")
				if err := os.WriteFile(ref, nil, 0o644); err != nil {
					t.Fatal(err)
				}
				fi, err := os.Stat(name)
				rfi, rerr := os.Stat(ref)
				if err != nil || rerr != nil || fi.Mode() != rfi.Mode() {
					t.Errorf("mode %v (%v), want %v (%v)", fi.Mode(), err, rfi.Mode(), rerr)
				}
			}
		})
	}
}
