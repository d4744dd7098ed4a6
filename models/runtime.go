package models

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// EnvORTLib names the environment variable that points at the ONNX Runtime
// shared library to use (e.g. JetPack's build with CUDA/TensorRT).
const EnvORTLib = "DELEN_ORT_LIB"

// ErrNoRuntime is returned when no ONNX Runtime shared library can be found.
var ErrNoRuntime = errors.New("ONNX Runtime library not found (run `make setup`, or set " + EnvORTLib + ")")

// ONNX Runtime keeps one environment per process, so initialisation is
// process-wide too; this is the only package-level state in models.
var (
	rtMu   sync.Mutex
	rtPath string
)

// LibraryPath finds the ONNX Runtime shared library: $DELEN_ORT_LIB, else
// .cache/ort/<arch>/libonnxruntime.so.1 in the working folder or one of its
// parents (where `make setup` puts it), else next to the executable.
func LibraryPath() (string, error) {
	if p := os.Getenv(EnvORTLib); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvORTLib, p, err)
		}
		return p, nil
	}
	arch := map[string]string{"amd64": "x64", "arm64": "arm64"}[runtime.GOARCH]
	rel := filepath.Join(".cache", "ort", arch, "libonnxruntime.so.1")
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, rel)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			if _, err := os.Stat(filepath.Join(dir, "libonnxruntime.so.1")); err == nil {
				return filepath.Join(dir, "libonnxruntime.so.1"), nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", ErrNoRuntime
}

// InitRuntime loads the ONNX Runtime library found by LibraryPath and
// creates its environment. It is safe to call more than once and from
// several goroutines; calls after the first success do nothing.
func InitRuntime() error {
	rtMu.Lock()
	defer rtMu.Unlock()
	if ort.IsInitialized() {
		return nil
	}
	p, err := LibraryPath()
	if err != nil {
		return err
	}
	ort.SetSharedLibraryPath(p)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		return fmt.Errorf("initialise ONNX Runtime from %s: %w", p, err)
	}
	rtPath = p
	return nil
}

// RuntimeInfo reports the loaded library's path and version ("" before
// InitRuntime succeeds).
func RuntimeInfo() (path, version string) {
	rtMu.Lock()
	defer rtMu.Unlock()
	if !ort.IsInitialized() {
		return "", ""
	}
	return rtPath, ort.GetVersion()
}
