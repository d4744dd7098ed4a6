package agentbench

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/delen-edge/delen/models/zoo"
)

// nodeFiles is the Node.js baseline of bench cpu: the simplest service a
// user would write instead of the agent (mqtt.js + onnxruntime-node, the
// full model, the result published on receipt).
//
//go:embed node/package.json node/service.mjs
var nodeFiles embed.FS

// nodeService prepares the Node.js baseline in a cache folder (its npm
// packages installed there once, with --ignore-scripts: onnxruntime-node
// ships its library and binding in the package) and returns a command
// that starts it against url with the topic prefix. It prints "ready" once
// subscribed.
func nodeService(ctx context.Context, url, prefix string, progress func(string)) (*exec.Cmd, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("the Node.js baseline needs node on PATH: %w", err)
	}
	pkg, err := nodeFiles.ReadFile("node/package.json")
	if err != nil {
		return nil, err
	}
	svc, err := nodeFiles.ReadFile("node/service.mjs")
	if err != nil {
		return nil, err
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	sum := sha256.Sum256(pkg)
	dir := filepath.Join(base, "delen", "bench-node", hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "package.json"), pkg, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "service.mjs"), svc, 0o644); err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "onnxruntime-node", "package.json")); errors.Is(err, fs.ErrNotExist) {
		progress("node: npm install (mqtt, @msgpack/msgpack, onnxruntime-node) into " + dir)
		npm := exec.CommandContext(ctx, "npm", "install", "--ignore-scripts", "--no-audit", "--no-fund")
		npm.Dir = dir
		if out, err := npm.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("npm install in %s: %w\n%s", dir, err, out)
		}
	}
	// The full (monolithic) mnist-ee, as the agent serves it.
	e, err := zoo.New().Find("mnist-ee")
	if err != nil {
		return nil, err
	}
	man := e.Manifest
	if man.Monolithic == nil || len(man.Input.Mean) > 0 {
		return nil, errors.New("the Node.js baseline needs mnist-ee's monolithic model and a scale-only input")
	}
	onnx, err := fs.ReadFile(zoo.Builtin(), "mnist-ee/"+man.Monolithic.File)
	if err != nil {
		return nil, err
	}
	model := filepath.Join(dir, "mnist-ee-full.onnx")
	if err := os.WriteFile(model, onnx, 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, node, filepath.Join(dir, "service.mjs"), url, prefix, model,
		strconv.FormatFloat(float64(man.Input.Scale), 'g', -1, 32))
	cmd.Dir = dir
	return cmd, nil
}
