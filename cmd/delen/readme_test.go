package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/delen-edge/delen/agent/tenants"
	"github.com/delen-edge/delen/schema"
)

// runMainEnv makes the test binary act as the delen command (see
// TestMain), so a README snippet can call it as bin/delen.
const runMainEnv = "CLI_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// readmeBlock returns the README's first sh block that contains marker.
func readmeBlock(t *testing.T, marker string) []string {
	t.Helper()
	f, err := os.Open("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var block []string
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "```") {
			if in {
				for _, l := range block {
					if strings.Contains(l, marker) {
						return block
					}
				}
			}
			in, block = line == "```sh", nil
			continue
		}
		if in {
			block = append(block, line)
		}
	}
	t.Fatalf("README has no sh block with %q", marker)
	return nil
}

// The README's tenants example, run as pasted up to starting the agent,
// writes a file whose hashes match the passwords it made: the agent's
// (which serve checks at start) and the tenant's.
func TestReadmeTenantsExample(t *testing.T) {
	block := readmeBlock(t, "delen passwd")
	var script []string
	for _, l := range block {
		if strings.Contains(l, "bin/delen serve") {
			break
		}
		script = append(script, l)
	}
	script = append(script, `printf '%s\n%s\n' "$AGENT_PASSWORD" "$CAM1_PASSWORD"`)
	dir := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := "#!/bin/sh\n" + runMainEnv + "=1 exec '" + self + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "bin", "delen"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "-c", strings.Join(script, "\n"))
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("README tenants example: %v\n%s", err, out)
	}
	pw := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(pw) != 2 || pw[0] == "" || pw[1] == "" {
		t.Fatalf("passwords: %q", out)
	}
	tf, err := tenants.Load(filepath.Join(dir, "tenants.yaml"))
	if err != nil {
		t.Fatalf("the README's tenants file: %v", err)
	}
	if err := tf.CheckAgentPassword(pw[0]); err != nil {
		t.Errorf("agent password: %v", err)
	}
	auth := tf.Authenticator(schema.Topics{})
	found := false
	for _, u := range auth.Users {
		if u.Name == "cam1" {
			found = true
			if err := auth.VerifyPassword([]byte(u.PasswordHash), []byte(pw[1])); err != nil {
				t.Errorf("cam1's password does not match its hash: %v", err)
			}
		}
	}
	if !found {
		t.Errorf("no cam1 account in %+v", tf)
	}
}

// Every relative link of the repository's Markdown files points at a file
// inside the repository that exists: a clone has no ../shared/.
func TestDocLinksStayInTheRepository(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	n := 0
	err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") && path != root || d.Name() == "node_modules" || d.Name() == "data" || d.Name() == "out") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".md") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			n++
			abs := filepath.Join(filepath.Dir(path), target)
			rel, _ := filepath.Rel(root, path)
			if r, err := filepath.Rel(root, abs); err != nil || strings.HasPrefix(r, "..") {
				t.Errorf("%s links to %s, outside the repository", rel, m[1])
			} else if _, err := os.Stat(abs); err != nil {
				t.Errorf("%s links to %s, which does not exist", rel, m[1])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no relative links found: the walk is broken")
	}
}
