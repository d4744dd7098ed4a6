package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/delen-edge/delen/schema"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// tenantDefaultsKey is the config key of per-tenant default settings; every
// other key is a flag of the command.
const tenantDefaultsKey = "tenant-defaults"

// fileConfig is a parsed configuration file: flag values by flag name, and
// tenants' default settings.
type fileConfig struct {
	path     string
	values   map[string]string
	order    []string
	tenants  map[string]schema.Settings
	fromFile map[string]bool // flags whose value came from the file
}

// envName is the environment variable that overrides a flag: DELEN_ and
// the flag name in upper case with '_' for '-'.
func envName(flag string) string {
	return "DELEN_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// loadConfig reads a YAML (or JSON) configuration file whose keys are the
// command's flag names (`listen`, `workers`, `log-level`, …) plus
// `tenant-defaults`. Unknown keys, values of the wrong kind and invalid
// tenant settings fail with the key and the reason.
func loadConfig(path string, cmd *cobra.Command) (*fileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c := &fileConfig{path: path, values: map[string]string{}, tenants: map[string]schema.Settings{}, fromFile: map[string]bool{}}
	for key, v := range raw {
		if key == tenantDefaultsKey {
			if err := c.readTenants(v); err != nil {
				return nil, err
			}
			continue
		}
		if lookup(cmd, key) == nil {
			return nil, fmt.Errorf("config %s: unknown key %q (keys are the flags of `delen %s`: %s, and %s)", path, key, cmd.Name(), strings.Join(flagNames(cmd), ", "), tenantDefaultsKey)
		}
		switch v := v.(type) {
		case map[string]any, []any:
			return nil, fmt.Errorf("config %s: %s: want a single value, got a %T", path, key, v)
		case nil:
			c.values[key] = ""
		default:
			c.values[key] = fmt.Sprint(v)
		}
		c.order = append(c.order, key)
	}
	sort.Strings(c.order)
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
		c.tenants[name] = schema.Settings{Weight: 1}.Apply(ctl)
	}
	return nil
}

// apply sets every flag the file names, unless the command line set it or
// its DELEN_ environment variable is set: flags beat the environment, the
// environment beats the file.
func (c *fileConfig) apply(cmd *cobra.Command) error {
	for _, key := range c.order {
		f := lookup(cmd, key)
		if f.Changed || os.Getenv(envName(key)) != "" {
			continue
		}
		if err := f.Value.Set(c.values[key]); err != nil {
			return fmt.Errorf("config %s: %s: %q: %w", c.path, key, c.values[key], err)
		}
		c.fromFile[key] = true
	}
	return nil
}

func lookup(cmd *cobra.Command, name string) *pflag.Flag {
	if name == "config" || name == "help" {
		return nil
	}
	if f := cmd.Flags().Lookup(name); f != nil {
		return f
	}
	return cmd.InheritedFlags().Lookup(name)
}

func flagNames(cmd *cobra.Command) []string {
	var names []string
	add := func(f *pflag.Flag) {
		if f.Name != "config" && f.Name != "help" {
			names = append(names, f.Name)
		}
	}
	cmd.Flags().VisitAll(add)
	cmd.InheritedFlags().VisitAll(add)
	sort.Strings(names)
	return names
}

// applyConfigFile loads and applies --config (or DELEN_CONFIG) when the
// command has that flag.
func applyConfigFile(cmd *cobra.Command, g *globals) error {
	f := cmd.Flags().Lookup("config")
	if f == nil {
		return nil
	}
	path := f.Value.String()
	if path == "" {
		return nil
	}
	c, err := loadConfig(path, cmd)
	if err != nil {
		return err
	}
	if err := c.apply(cmd); err != nil {
		return err
	}
	g.config = c
	return nil
}

// errBadChoice reports a flag value outside its choices.
func errBadChoice(flag, value string, choices ...string) error {
	return errors.New("--" + flag + " " + fmt.Sprintf("%q", value) + ": want one of " + strings.Join(choices, ", "))
}
