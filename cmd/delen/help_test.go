package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// placeholders are the argument names a flag's usage may give in back
// quotes (pflag shows the first back-quoted word as the argument's name);
// any other back-quoted word would become a wrong placeholder.
var placeholders = map[string]bool{"file": true, "folder": true, "url": true, "address": true, "name": true, "N": true, "ms": true, "mJ": true}

// A flag's placeholder in --help is its type, its choices or one of the
// argument names above: never a word quoted in its description.
func TestHelpPlaceholders(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			name, _ := pflag.UnquoteUsage(f)
			if !strings.Contains(f.Usage, "`") || placeholders[name] {
				return // no back quotes: pflag shows the type (or the choices)
			}
			t.Errorf("%s --%s: --help shows %q as its argument (a back-quoted word in %q)", c.CommandPath(), f.Name, name, f.Usage)
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot())
}

func help(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	root := newRoot()
	root.SetArgs(append(args, "--help"))
	root.SetOut(&out)
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestServeAndSendHelp(t *testing.T) {
	cases := []struct {
		cmd     string
		want    []string
		notWant []string
	}{
		{"serve", []string{"--max-payload int ", "--max-tenants int ", "--queue-limit int ", "--tenants file ", "--infeasible late|shed ", "DELEN_QUEUE_LIMIT"},
			[]string{"too_large ", "overloaded ", "delen passwd "}},
		{"send", []string{"Examples:", "delen send --tenant cam1 --mnist 0", "--mnist N ", "--tenant name "},
			[]string{"(default -1)"}},
	}
	for _, c := range cases {
		t.Run(c.cmd, func(t *testing.T) {
			out := help(t, c.cmd)
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("delen %s --help lacks %q:\n%s", c.cmd, w, out)
				}
			}
			for _, w := range c.notWant {
				if strings.Contains(out, "--"+w) || strings.Contains(out, w+"  ") {
					t.Errorf("delen %s --help shows %q", c.cmd, w)
				}
			}
		})
	}
}
