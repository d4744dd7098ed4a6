package sim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/delen-edge/delen/schema"
	"gopkg.in/yaml.v3"
)

// Arrival process names.
const (
	ProcessConstant = "constant" // evenly spaced at rate
	ProcessPoisson  = "poisson"  // exponential gaps at rate
	ProcessBursty   = "bursty"   // off at rate, on at burst_rate, repeated
	ProcessStep     = "step"     // piecewise constant rate
	ProcessTrace    = "trace"    // timestamps from a CSV file
)

// Input sources.
const (
	// SourceMNIST sends MNIST test images with their labels.
	SourceMNIST = "mnist"
	// SourceRandom sends seeded uniform noise of Input.Shape, unlabelled.
	SourceRandom = "random"
)

// Limits of a scenario, so a typo cannot ask for a billion requests.
const (
	// MaxDuration is the longest scenario duration.
	MaxDuration = 24 * time.Hour
	// MaxRequests is the most requests one tenant may be scheduled.
	MaxRequests = 5_000_000
)

// Duration is a time.Duration that reads from YAML as a Go duration string
// ("1m30s", "250ms") or a number of seconds, and writes to JSON as a
// duration string.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Seconds returns d in seconds.
func (d Duration) Seconds() float64 { return time.Duration(d).Seconds() }

// String formats d like time.Duration.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML reads "10s"-style strings and plain numbers of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as 10s or a number of seconds", n.Line)
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > MaxDuration.Seconds()*10 {
			return 0, fmt.Errorf("duration %q out of range", s)
		}
		return time.Duration(f * float64(time.Second)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (such as 10s, 1m30s, 250ms) or a number of seconds", s)
	}
	return v, nil
}

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var f float64
		if err := json.Unmarshal(b, &f); err != nil {
			return errors.New("want a duration string or a number of seconds")
		}
		s = strconv.FormatFloat(f, 'g', -1, 64)
	}
	v, err := parseDuration(s)
	*d = Duration(v)
	return err
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// Scenario is a workload: tenants, each with an arrival process, a bound
// and control changes over time. Load one with LoadScenario.
type Scenario struct {
	// Name names the scenario in reports.
	Name string `yaml:"name" json:"name"`
	// Description is free text for the report.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Duration is how long requests are sent.
	Duration Duration `yaml:"duration" json:"duration"`
	// Seed seeds the arrival processes and random inputs.
	Seed int64 `yaml:"seed" json:"seed"`
	// Tenants are the applications; at least one.
	Tenants []Tenant `yaml:"tenants" json:"tenants"`
	// Compare, when set, runs the scenario once per variant.
	Compare []Variant `yaml:"compare,omitempty" json:"compare,omitempty"`
	// Matrix, with Compare, runs the variants at several deadlines and
	// arrival patterns and reports deadlines met against accuracy with a
	// hindsight bound (see Matrix).
	Matrix *Matrix `yaml:"matrix,omitempty" json:"matrix,omitempty"`

	// dir is the folder of the scenario file, for trace paths.
	dir string
}

// Tenant is one application of a scenario.
type Tenant struct {
	// Name is the tenant name (^[a-z0-9][a-z0-9_-]{0,62}$).
	Name string `yaml:"name" json:"name"`
	// Arrival is when requests are sent.
	Arrival Arrival `yaml:"arrival" json:"arrival"`
	// Bound is sent with every request; empty means the tenant's default.
	Bound *BoundSpec `yaml:"bound,omitempty" json:"bound,omitempty"`
	// SLOMS is the deadline (ms) the simulator judges end-to-end latency
	// against; default the latency bound in force (the request's, else the
	// one set by the tenant's controls).
	SLOMS *float64 `yaml:"slo_ms,omitempty" json:"slo_ms,omitempty"`
	// Policy is sent with every request; empty means the tenant's.
	Policy string `yaml:"policy,omitempty" json:"policy,omitempty"`
	// Model is sent with every request; empty means the tenant's.
	Model string `yaml:"model,omitempty" json:"model,omitempty"`
	// QoS of the requests, 0 or 1; default 1.
	QoS *int `yaml:"qos,omitempty" json:"qos,omitempty"`
	// Encoding of the requests: msgpack (default) or json.
	Encoding string `yaml:"encoding,omitempty" json:"encoding,omitempty"`
	// Input is what the requests carry.
	Input Input `yaml:"input,omitempty" json:"input"`
	// Controls are published at their times on the tenant's control topic.
	Controls []ControlSpec `yaml:"controls,omitempty" json:"controls,omitempty"`
	// Reset, true by default, resets the tenant's settings on the agent
	// before the run (see the package doc).
	Reset *bool `yaml:"reset,omitempty" json:"reset,omitempty"`
}

// Arrival configures an arrival process (see the package doc).
type Arrival struct {
	// Process is constant, poisson, bursty, step or trace.
	Process string `yaml:"process" json:"process"`
	// Rate in requests per second: the rate of constant and poisson, the
	// quiet rate of bursty, the rate before the first step.
	Rate float64 `yaml:"rate,omitempty" json:"rate,omitempty"`
	// On and Off are the lengths of bursty's burst and quiet phases.
	On  Duration `yaml:"on,omitempty" json:"on,omitempty"`
	Off Duration `yaml:"off,omitempty" json:"off,omitempty"`
	// BurstRate is bursty's rate during the burst.
	BurstRate float64 `yaml:"burst_rate,omitempty" json:"burst_rate,omitempty"`
	// Steps are step's rate changes, in time order.
	Steps []RateStep `yaml:"steps,omitempty" json:"steps,omitempty"`
	// File is trace's CSV of timestamps, relative to the scenario file.
	File string `yaml:"file,omitempty" json:"file,omitempty"`
	// Spacing of arrivals within a bursty or step phase: poisson (default)
	// or constant.
	Spacing string `yaml:"spacing,omitempty" json:"spacing,omitempty"`
}

// RateStep is one rate change of the step process.
type RateStep struct {
	At   Duration `yaml:"at" json:"at"`     // from the start of the run
	Rate float64  `yaml:"rate" json:"rate"` // requests per second from At on
}

// BoundSpec is a bound in a scenario (see schema.Bound).
type BoundSpec struct {
	LatencyMS  *float64 `yaml:"latency_ms,omitempty" json:"latency_ms,omitempty"` // deadline from sent_at (else arrival), ms
	Accuracy   *float64 `yaml:"accuracy,omitempty" json:"accuracy,omitempty"`     // minimum expected accuracy
	EnergyMJ   *float64 `yaml:"energy_mj,omitempty" json:"energy_mj,omitempty"`   // energy budget, mJ
	Confidence *float64 `yaml:"confidence,omitempty" json:"confidence,omitempty"` // top-1 threshold
	Exit       *int     `yaml:"exit,omitempty" json:"exit,omitempty"`             // fixed exit, 1-based
}

// Schema returns the bound as sent on the wire.
func (b *BoundSpec) Schema() schema.Bound {
	if b == nil {
		return schema.Bound{}
	}
	return schema.Bound{LatencyMS: b.LatencyMS, Accuracy: b.Accuracy, EnergyMJ: b.EnergyMJ, Confidence: b.Confidence, Exit: b.Exit}
}

// Input is what a tenant's requests carry.
type Input struct {
	// Source is mnist (default) or random.
	Source string `yaml:"source,omitempty" json:"source,omitempty"`
	// DType is uint8 (default) or float32.
	DType string `yaml:"dtype,omitempty" json:"dtype,omitempty"`
	// Offset is the first MNIST test image sent; images cycle from it.
	Offset int `yaml:"offset,omitempty" json:"offset,omitempty"`
	// Shape of random inputs; default [3, 224, 224] (the replica's).
	Shape []int `yaml:"shape,omitempty" json:"shape,omitempty"`
}

// ControlSpec is a control message of a scenario, published at At: `at`
// and the fields of a control message (schema.Control, read by its own
// decoder, so the scenario names no setting of its own).
type ControlSpec struct {
	// At is when the control is published, from the start of the run.
	At Duration `yaml:"at" json:"at"`
	schema.Control
}

// UnmarshalYAML reads `at` and the control's fields; a key that is
// neither is an error, as everywhere in a scenario.
func (c *ControlSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a control is a map of at and control fields", n.Line)
	}
	known := schema.SettingNames()
	rest := map[string]any{}
	*c = ControlSpec{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch {
		case k.Value == "at":
			if err := v.Decode(&c.At); err != nil {
				return err
			}
		case slices.Contains(known, k.Value):
			var val any
			if err := v.Decode(&val); err != nil {
				return err
			}
			rest[k.Value] = val
		default:
			return fmt.Errorf("line %d: field %s not found in a control (at, %s)", k.Line, k.Value, strings.Join(known, ", "))
		}
	}
	j, err := json.Marshal(rest)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	ctl, _, err := schema.DecodeControl(j, 0)
	if err != nil {
		return fmt.Errorf("line %d: %s", n.Line, schemaMessage(err))
	}
	c.Control = *ctl
	return nil
}

// Schema returns the control as sent on the wire.
func (c *ControlSpec) Schema() *schema.Control {
	out := c.Control
	return &out
}

// Variant is one entry of Scenario.Compare: the settings every tenant gets
// in that run. Policy and Bound replace the tenants' request policy and
// bound; the other fields join each tenant's initial control.
type Variant struct {
	// Name names the variant in reports.
	Name string `yaml:"name" json:"name"`
	// Policy replaces every tenant's request policy.
	Policy string `yaml:"policy,omitempty" json:"policy,omitempty"`
	// Bound replaces every tenant's request bound.
	Bound *BoundSpec `yaml:"bound,omitempty" json:"bound,omitempty"`
	// SLOMS replaces every tenant's slo_ms.
	SLOMS *float64 `yaml:"slo_ms,omitempty" json:"slo_ms,omitempty"`
	// Settings join each tenant's control at 0 s (its `at` must be 0).
	Settings *ControlSpec `yaml:"settings,omitempty" json:"settings,omitempty"`
}

// LoadScenario reads and validates a scenario file. Trace files are
// resolved relative to the file's folder.
func LoadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s, err := ParseScenario(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// ParseScenario decodes and validates a scenario; dir is the folder trace
// paths are relative to. Unknown keys are errors.
func ParseScenario(data []byte, dir string) (*Scenario, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	s := &Scenario{}
	if err := dec.Decode(s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty scenario")
		}
		return nil, fmt.Errorf("scenario: %w", err)
	}
	s.dir = dir
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Dir is the folder trace paths are relative to.
func (s *Scenario) Dir() string { return s.dir }

// SetDir sets the folder trace paths are relative to.
func (s *Scenario) SetDir(dir string) { s.dir = dir }

// Validate checks the scenario; its errors name the offending key, such as
// "tenants[1].arrival.rate: must be > 0".
func (s *Scenario) Validate() error {
	if strings.TrimSpace(s.Name) == "" {
		return errors.New("name: required")
	}
	if s.Duration <= 0 {
		return errors.New("duration: required, > 0 (such as 30s)")
	}
	if s.Duration.D() > MaxDuration {
		return fmt.Errorf("duration: %s is longer than %s", s.Duration, MaxDuration)
	}
	if len(s.Tenants) == 0 {
		return errors.New("tenants: at least one tenant")
	}
	seen := map[string]bool{}
	for i := range s.Tenants {
		t := &s.Tenants[i]
		key := fmt.Sprintf("tenants[%d]", i)
		if err := t.validate(key, s); err != nil {
			return err
		}
		if seen[t.Name] {
			return fmt.Errorf("%s.name: %q appears twice", key, t.Name)
		}
		seen[t.Name] = true
	}
	names := map[string]bool{}
	for i, v := range s.Compare {
		key := fmt.Sprintf("compare[%d]", i)
		if !schema.ValidTenant(v.Name) {
			return fmt.Errorf("%s.name: %q: want lower-case letters, digits, _ and - (it names output rows)", key, v.Name)
		}
		if names[v.Name] {
			return fmt.Errorf("%s.name: %q appears twice", key, v.Name)
		}
		names[v.Name] = true
		if err := checkName(key+".policy", v.Policy); err != nil {
			return err
		}
		if err := checkBound(key+".bound", v.Bound); err != nil {
			return err
		}
		if err := checkSLO(key+".slo_ms", v.SLOMS); err != nil {
			return err
		}
		if v.Settings != nil {
			if v.Settings.At != 0 {
				return fmt.Errorf("%s.settings.at: variant settings apply at 0s", key)
			}
			if err := checkControl(key+".settings", v.Settings); err != nil {
				return err
			}
		}
	}
	if s.Matrix != nil {
		return s.Matrix.validate(s)
	}
	return nil
}

func (t *Tenant) validate(key string, s *Scenario) error {
	if !schema.ValidTenant(t.Name) {
		return fmt.Errorf("%s.name: %q is not a valid tenant name (^[a-z0-9][a-z0-9_-]{0,62}$)", key, t.Name)
	}
	if err := t.Arrival.validate(key+".arrival", s); err != nil {
		return err
	}
	if err := checkBound(key+".bound", t.Bound); err != nil {
		return err
	}
	if err := checkSLO(key+".slo_ms", t.SLOMS); err != nil {
		return err
	}
	if err := checkName(key+".policy", t.Policy); err != nil {
		return err
	}
	if err := checkName(key+".model", t.Model); err != nil {
		return err
	}
	if t.QoS != nil && *t.QoS != 0 && *t.QoS != 1 {
		return fmt.Errorf("%s.qos: %d: want 0 or 1", key, *t.QoS)
	}
	switch t.Encoding {
	case "", "msgpack", "json":
	default:
		return fmt.Errorf("%s.encoding: %q: want msgpack or json", key, t.Encoding)
	}
	in := &t.Input
	switch in.Source {
	case "", SourceMNIST:
		if len(in.Shape) > 0 {
			return fmt.Errorf("%s.input.shape: MNIST images are [1, 28, 28]; shape is for source random", key)
		}
	case SourceRandom:
		n := 1
		for _, d := range in.Shape {
			if d <= 0 {
				return fmt.Errorf("%s.input.shape: dimensions must be > 0, got %v", key, in.Shape)
			}
			n *= d
			if n > schema.MaxElements {
				return fmt.Errorf("%s.input.shape: %v has more than %d elements", key, in.Shape, schema.MaxElements)
			}
		}
		if len(in.Shape) > schema.MaxRank {
			return fmt.Errorf("%s.input.shape: more than %d dimensions", key, schema.MaxRank)
		}
	default:
		return fmt.Errorf("%s.input.source: %q: want mnist or random", key, in.Source)
	}
	switch in.DType {
	case "", schema.DTypeUint8, schema.DTypeFloat32:
	default:
		return fmt.Errorf("%s.input.dtype: %q: want uint8 or float32", key, in.DType)
	}
	if in.Offset < 0 {
		return fmt.Errorf("%s.input.offset: must be ≥ 0, got %d", key, in.Offset)
	}
	for j := range t.Controls {
		c := &t.Controls[j]
		ck := fmt.Sprintf("%s.controls[%d]", key, j)
		if c.At < 0 || c.At >= s.Duration {
			return fmt.Errorf("%s.at: %s is outside the scenario's [0, %s)", ck, c.At, s.Duration)
		}
		if j > 0 && c.At < t.Controls[j-1].At {
			return fmt.Errorf("%s.at: controls must be in time order (%s after %s)", ck, c.At, t.Controls[j-1].At)
		}
		if err := checkControl(ck, c); err != nil {
			return err
		}
	}
	return nil
}

func checkName(key, name string) error {
	if len(name) > schema.MaxNameBytes {
		return fmt.Errorf("%s: longer than %d bytes", key, schema.MaxNameBytes)
	}
	return nil
}

func checkSLO(key string, v *float64) error {
	if v != nil && !(*v > 0) {
		return fmt.Errorf("%s: must be > 0", key)
	}
	return nil
}

func checkBound(key string, b *BoundSpec) error {
	if b == nil {
		return nil
	}
	sb := b.Schema()
	if err := sb.Validate(); err != nil {
		return fmt.Errorf("%s%s", key, strings.TrimPrefix(schemaMessage(err), "bound"))
	}
	return nil
}

func checkControl(key string, c *ControlSpec) error {
	sc := c.Schema()
	if sc.IsEmpty() {
		return fmt.Errorf("%s: sets nothing (give any of %s)", key, strings.Join(schema.SettingNames(), ", "))
	}
	if err := sc.Validate(); err != nil {
		return fmt.Errorf("%s.%s", key, schemaMessage(err))
	}
	return nil
}

// schemaMessage is err's message without the error code prefix.
func schemaMessage(err error) string {
	var e *schema.Error
	if errors.As(err, &e) {
		return e.Message
	}
	return err.Error()
}

// variant returns the scenario as run under v: every tenant with v's policy,
// bound and slo, and v's settings merged into its control at 0 s.
func (s *Scenario) variant(v Variant) *Scenario {
	out := *s
	out.Compare = nil
	out.Tenants = make([]Tenant, len(s.Tenants))
	for i, t := range s.Tenants {
		if v.Policy != "" {
			t.Policy = v.Policy
		}
		if v.Bound != nil {
			t.Bound = v.Bound
		}
		if v.SLOMS != nil {
			t.SLOMS = v.SLOMS
		}
		if v.Settings != nil {
			ctl := make([]ControlSpec, 0, len(t.Controls)+1)
			ctl = append(ctl, *v.Settings)
			ctl = append(ctl, t.Controls...)
			t.Controls = ctl
		}
		out.Tenants[i] = t
	}
	return &out
}

// Models lists the models the scenario names (requests, controls and
// variants), without duplicates; the agent's default model is not listed.
func (s *Scenario) Models() []string {
	var out []string
	seen := map[string]bool{}
	add := func(m string) {
		if m != "" && !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	for _, t := range s.Tenants {
		add(t.Model)
		for _, c := range t.Controls {
			if c.Model != nil {
				add(*c.Model)
			}
		}
	}
	for _, v := range s.Compare {
		if v.Settings != nil && v.Settings.Model != nil {
			add(*v.Settings.Model)
		}
	}
	return out
}
