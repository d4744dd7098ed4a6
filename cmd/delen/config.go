package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/delen-edge/delen/schema"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// How a flag gets its value, in order: the command line, its DELEN_*
// environment variable, the --config file, its default. The flag set is
// the one source of truth: which flags have a variable and which are keys
// of the file is derived from it (and from the annotations below), so a
// flag added to `delen serve` has both without further code.

// tenantDefaultsKey is the config key of per-tenant default settings; every
// other key is a flag of the command.
const tenantDefaultsKey = "tenant-defaults"

const (
	// cmdAllEnv, a command annotation, gives every flag of the command a
	// DELEN_<FLAG> variable; --config is offered by such commands only.
	cmdAllEnv = "delen_all_env"
	// flagEnv, a flag annotation, names the flag's variable (on commands
	// without cmdAllEnv, or to use another name than DELEN_<FLAG>).
	flagEnv = "delen_env"
	// flagSecret, a flag annotation, keeps a flag out of the file: its
	// value comes from the command line or the variable only.
	flagSecret = "delen_secret"
)

// Flag value sources, as recorded in globals.sources.
const (
	fromFlag = "flag"
	fromEnv  = "env"
	fromFile = "file"
)

// fileConfig is a parsed configuration file: flag values by flag name, and
// tenants' default settings.
type fileConfig struct {
	path    string
	values  map[string]string
	tenants map[string]schema.Settings
	// applied counts the flags whose value came from the file.
	applied int
}

// envName is the default variable of a flag: DELEN_ and the flag name in
// upper case with '_' for '-'.
func envName(flag string) string {
	return "DELEN_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// withEnv gives the named flags of fs a variable: DELEN_<FLAG>, or
// variable when it is not empty. Flags of commands marked cmdAllEnv have
// theirs already.
func withEnv(fs *pflag.FlagSet, variable string, names ...string) {
	for _, name := range names {
		v := variable
		if v == "" {
			v = envName(name)
		}
		if err := fs.SetAnnotation(name, flagEnv, []string{v}); err != nil {
			panic(err) // a flag name misspelled in the code
		}
	}
}

// secret marks flags whose value stays out of configuration files.
func secret(fs *pflag.FlagSet, names ...string) {
	for _, name := range names {
		if err := fs.SetAnnotation(name, flagSecret, []string{"true"}); err != nil {
			panic(err)
		}
	}
}

// envOf is the variable of flag f of cmd, or "" when it has none.
func envOf(cmd *cobra.Command, f *pflag.Flag) string {
	if v := f.Annotations[flagEnv]; len(v) > 0 {
		return v[0]
	}
	if cmd.Annotations[cmdAllEnv] != "" || cmd.Root().PersistentFlags().Lookup(f.Name) == f {
		return envName(f.Name)
	}
	return ""
}

// fileKey reports whether flag f may be set by cmd's configuration file.
func fileKey(f *pflag.Flag) bool {
	return f.Name != "config" && f.Name != "help" && len(f.Annotations[flagSecret]) == 0
}

// flags returns every flag cmd takes (its own and inherited ones), once
// each, in name order.
func flags(cmd *cobra.Command) []*pflag.Flag {
	seen := map[string]bool{}
	var out []*pflag.Flag
	add := func(f *pflag.Flag) {
		if !seen[f.Name] {
			seen[f.Name] = true
			out = append(out, f)
		}
	}
	cmd.Flags().VisitAll(add)
	cmd.InheritedFlags().VisitAll(add)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func lookup(cmd *cobra.Command, name string) *pflag.Flag {
	if f := cmd.Flags().Lookup(name); f != nil {
		return f
	}
	return cmd.InheritedFlags().Lookup(name)
}

// kind describes the values a flag accepts, for error messages.
func kind(f *pflag.Flag) string {
	if c, ok := f.Value.(*choiceValue); ok {
		return "one of " + strings.Join(c.choices, ", ")
	}
	switch t := f.Value.Type(); t {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "an integer"
	case "float32", "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "duration":
		return "a duration such as 500ms, 30s or 5m"
	default:
		return "a " + t
	}
}

// configure gives every flag of cmd that the command line left unset its
// value from its DELEN_* variable, else from the --config file (or
// DELEN_CONFIG), and records where each value came from in g.sources. A
// value that does not parse stops the command, naming the variable or the
// key and the kind of value it wants.
func configure(cmd *cobra.Command, g *globals) error {
	g.sources = map[string]string{}
	var c *fileConfig
	if cf := cmd.Flags().Lookup("config"); cf != nil {
		path := cf.Value.String()
		if !cf.Changed {
			path = os.Getenv(envName("config"))
		}
		if path != "" {
			var err error
			if c, err = loadConfig(path, cmd); err != nil {
				return err
			}
		}
	}
	for _, f := range flags(cmd) {
		if f.Name == "config" || f.Name == "help" {
			continue
		}
		if f.Changed {
			g.sources[f.Name] = fromFlag
			continue
		}
		if env := envOf(cmd, f); env != "" {
			if v := os.Getenv(env); v != "" {
				if err := f.Value.Set(v); err != nil {
					return fmt.Errorf("%s=%q: want %s (the variable of --%s)", env, v, kind(f), f.Name)
				}
				g.sources[f.Name] = fromEnv
				continue
			}
		}
		if v, ok := c.value(f.Name); ok {
			if err := f.Value.Set(v); err != nil {
				return fmt.Errorf("config %s: %s: %q: want %s", c.path, f.Name, v, kind(f))
			}
			g.sources[f.Name] = fromFile
			c.applied++
		}
	}
	g.config = c
	return nil
}

func (c *fileConfig) value(key string) (string, bool) {
	if c == nil {
		return "", false
	}
	v, ok := c.values[key]
	return v, ok
}

// loadConfig reads a YAML (or JSON) configuration file whose keys are the
// command's flag names (`listen`, `workers`, `log-level`, …) plus
// `tenant-defaults`. Unknown keys, secrets, values that are not single
// values and invalid tenant settings fail with the key and the reason;
// values of the wrong kind fail in configure.
func loadConfig(path string, cmd *cobra.Command) (*fileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c := &fileConfig{path: path, values: map[string]string{}, tenants: map[string]schema.Settings{}}
	var keys []string
	for _, f := range flags(cmd) {
		if fileKey(f) {
			keys = append(keys, f.Name)
		}
	}
	for key, v := range raw {
		if key == tenantDefaultsKey {
			if err := c.readTenants(v); err != nil {
				return nil, err
			}
			continue
		}
		if !slices.Contains(keys, key) {
			if f := lookup(cmd, key); f != nil && len(f.Annotations[flagSecret]) > 0 {
				return nil, fmt.Errorf("config %s: %s: a secret stays out of the file; set %s or --%s instead", path, key, envOf(cmd, f), key)
			}
			return nil, fmt.Errorf("config %s: unknown key %q (keys are the flags of `delen %s`: %s; and %s)", path, key, cmd.Name(), strings.Join(keys, ", "), tenantDefaultsKey)
		}
		switch v := v.(type) {
		case map[string]any, []any:
			return nil, fmt.Errorf("config %s: %s: want a single value, got a %T", path, key, v)
		case nil:
			c.values[key] = ""
		default:
			c.values[key] = fmt.Sprint(v)
		}
	}
	return c, nil
}

func (c *fileConfig) readTenants(v any) error {
	m, ok := v.(map[string]any)
	if !ok {
		return fmt.Errorf("config %s: %s: want a map of tenant name to settings", c.path, tenantDefaultsKey)
	}
	for name, s := range m {
		if !schema.ValidTenant(name) {
			return fmt.Errorf("config %s: %s.%s: not a valid tenant name", c.path, tenantDefaultsKey, name)
		}
		// The settings use the control message's fields and rules.
		j, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("config %s: %s.%s: %w", c.path, tenantDefaultsKey, name, err)
		}
		ctl, _, err := schema.DecodeControl(j, 1<<20)
		if err == nil {
			err = ctl.Validate()
		}
		if err != nil {
			return fmt.Errorf("config %s: %s.%s: %w", c.path, tenantDefaultsKey, name, err)
		}
		c.tenants[name] = schema.Settings{}.Apply(ctl) // weight 0: not set (the default 1, no ceiling of its own)
	}
	return nil
}

// choiceValue is a string flag that takes one of a fixed set of values; it
// refuses others when set, whatever the source.
type choiceValue struct {
	p       *string
	choices []string
}

// choiceVar defines a flag whose value is one of choices (def among them).
func choiceVar(fs *pflag.FlagSet, p *string, name, def, usage string, choices ...string) {
	*p = def
	fs.Var(&choiceValue{p: p, choices: choices}, name, usage)
}

func (c *choiceValue) String() string { return *c.p }

// Type is the flag's placeholder in --help: its choices.
func (c *choiceValue) Type() string { return strings.Join(c.choices, "|") }

func (c *choiceValue) Set(v string) error {
	if !slices.Contains(c.choices, v) {
		return fmt.Errorf("want one of %s", strings.Join(c.choices, ", "))
	}
	*c.p = v
	return nil
}

// userSet reports whether a flag's value was given (on the command line,
// by its variable or by the file) rather than left to its default.
func (g *globals) userSet(name string) bool { return g.sources[name] != "" }
