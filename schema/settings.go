package schema

import (
	"maps"
	"math"
	"slices"
)

// settingField is one tenant setting, a field of both Control (a pointer,
// or a nil-able slice or map: absent when nil) and Settings (its value).
// settingFields is the one list of them: the decoders of both types,
// validation, Apply, IsEmpty, Merge, Reflects and ResetControl all walk it,
// so a new setting is its two struct fields plus one entry there.
type settingField struct {
	name           string
	present        func(*Control) bool
	decodeControl  func(reader, *Control) *Error
	decodeSettings func(reader, *Settings) *Error
	check          func(*Control) *Error // nil: any value; called when present
	apply          func(*Settings, *Control)
	merge          func(dst, src *Control) // when present in src
	reflects       func(*Settings, *Control) bool
	reset          func(*Control) // to the value of a tenant that set nothing
}

// scalar is the entry of a setting held as *T in Control and T in
// Settings; reset is its value in a tenant that set nothing.
func scalar[T comparable](name string, ctl func(*Control) **T, set func(*Settings) *T,
	read func(reader, string) (T, *Error), reset T, check func(T) *Error) settingField {
	f := settingField{
		name:    name,
		present: func(c *Control) bool { return *ctl(c) != nil },
		decodeControl: func(r reader, c *Control) *Error {
			v, err := read(r, name)
			if err == nil {
				*ctl(c) = &v
			}
			return err
		},
		decodeSettings: func(r reader, s *Settings) *Error {
			v, err := read(r, name)
			*set(s) = v
			return err
		},
		apply:    func(s *Settings, c *Control) { *set(s) = **ctl(c) },
		merge:    func(dst, src *Control) { *ctl(dst) = *ctl(src) },
		reflects: func(s *Settings, c *Control) bool { return *set(s) == **ctl(c) },
		reset:    func(c *Control) { v := reset; *ctl(c) = &v },
	}
	if check != nil {
		f.check = func(c *Control) *Error { return check(**ctl(c)) }
	}
	return f
}

func readStr(r reader, path string) (string, *Error) { return r.str(path) }

// settingFields lists the tenant settings in wire order.
var settingFields = []settingField{
	{
		name:    "bound",
		present: func(c *Control) bool { return c.Bound != nil },
		decodeControl: func(r reader, c *Control) *Error {
			c.Bound = &Bound{}
			return readBound(r, "bound", c.Bound)
		},
		decodeSettings: func(r reader, s *Settings) *Error { return readBound(r, "bound", &s.Bound) },
		check:          func(c *Control) *Error { return c.Bound.check("bound") },
		apply:          func(s *Settings, c *Control) { s.Bound = c.Bound.clone() },
		merge:          func(dst, src *Control) { dst.Bound = src.Bound },
		reflects:       func(s *Settings, c *Control) bool { return s.Bound.equal(*c.Bound) },
		reset:          func(c *Control) { c.Bound = &Bound{} },
	},
	scalar("policy", func(c *Control) **string { return &c.Policy }, func(s *Settings) *string { return &s.Policy }, readStr, "",
		func(v string) *Error { return checkName("policy", v) }),
	scalar("model", func(c *Control) **string { return &c.Model }, func(s *Settings) *string { return &s.Model }, readStr, "",
		func(v string) *Error { return checkName("model", v) }),
	scalar("weight", func(c *Control) **float64 { return &c.Weight }, func(s *Settings) *float64 { return &s.Weight }, readFloat, 1,
		func(v float64) *Error {
			if !(v > 0 && v <= MaxWeight) {
				return badRequest("weight: must be in (0, %d], got %g", MaxWeight, v)
			}
			return nil
		}),
	{
		name:    "conditions",
		present: func(c *Control) bool { return c.Conditions != nil },
		decodeControl: func(r reader, c *Control) (err *Error) {
			c.Conditions, err = readConditions(r)
			return err
		},
		decodeSettings: func(r reader, s *Settings) (err *Error) {
			s.Conditions, err = readConditions(r)
			if len(s.Conditions) == 0 {
				s.Conditions = nil
			}
			return err
		},
		check: func(c *Control) *Error { return checkConditions(c.Conditions) },
		apply: func(s *Settings, c *Control) {
			s.Conditions = nil
			if len(c.Conditions) > 0 {
				s.Conditions = slices.Clone(c.Conditions)
			}
		},
		merge:    func(dst, src *Control) { dst.Conditions = src.Conditions },
		reflects: func(s *Settings, c *Control) bool { return slices.Equal(s.Conditions, c.Conditions) },
		reset:    func(c *Control) { c.Conditions = []Condition{} },
	},
	{
		name:    "params",
		present: func(c *Control) bool { return c.Params != nil },
		decodeControl: func(r reader, c *Control) (err *Error) {
			c.Params, err = readParams(r, "params")
			if err == nil && c.Params == nil {
				c.Params = map[string]float64{} // present and empty: clears them
			}
			return err
		},
		decodeSettings: func(r reader, s *Settings) (err *Error) {
			s.Params, err = readParams(r, "params")
			return err
		},
		check: func(c *Control) *Error {
			if len(c.Params) > MaxConditions {
				return badRequest("params: %d entries, at most %d", len(c.Params), MaxConditions)
			}
			for k, v := range c.Params {
				if err := checkName("params key", k); err != nil {
					return err
				}
				if math.IsNaN(v) || math.IsInf(v, 0) {
					return badRequest("params.%s: must be finite", k)
				}
			}
			return nil
		},
		apply: func(s *Settings, c *Control) {
			s.Params = nil
			if len(c.Params) > 0 {
				s.Params = maps.Clone(c.Params)
			}
		},
		merge:    func(dst, src *Control) { dst.Params = src.Params },
		reflects: func(s *Settings, c *Control) bool { return maps.Equal(s.Params, c.Params) },
		reset:    func(c *Control) { c.Params = map[string]float64{} },
	},
	scalar("infeasible", func(c *Control) **string { return &c.Infeasible }, func(s *Settings) *string { return &s.Infeasible }, readStr, "",
		func(v string) *Error {
			if v != "" && v != InfeasibleLate && v != InfeasibleShed {
				return badRequest("infeasible: %q is not late or shed", v)
			}
			return nil
		}),
	scalar("queue_limit", func(c *Control) **int { return &c.QueueLimit }, func(s *Settings) *int { return &s.QueueLimit }, readInt, 0,
		func(v int) *Error {
			if v < 0 {
				return badRequest("queue_limit: must be ≥ 0, got %d", v)
			}
			return nil
		}),
	scalar("rate_limit", func(c *Control) **float64 { return &c.RateLimit }, func(s *Settings) *float64 { return &s.RateLimit }, readFloat, 0,
		func(v float64) *Error {
			if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
				return badRequest("rate_limit: must be a finite number ≥ 0")
			}
			return nil
		}),
}

// settingByName finds a setting by its wire name.
var settingByName = func() map[string]*settingField {
	m := make(map[string]*settingField, len(settingFields))
	for i := range settingFields {
		m[settingFields[i].name] = &settingFields[i]
	}
	return m
}()

// SettingNames returns the wire names of the tenant settings, in order
// (the fields of a control message).
func SettingNames() []string {
	names := make([]string, len(settingFields))
	for i, f := range settingFields {
		names[i] = f.name
	}
	return names
}

// Merge sets in c every field present in src (src's values win).
func (c *Control) Merge(src *Control) {
	for _, f := range settingFields {
		if f.present(src) {
			f.merge(c, src)
		}
	}
}

// Reflects reports whether s holds every setting present in c: whether a
// state message shows the control applied.
func (s Settings) Reflects(c *Control) bool {
	for _, f := range settingFields {
		if f.present(c) && !f.reflects(&s, c) {
			return false
		}
	}
	return true
}

// ResetControl returns the control that sets every setting to the value
// of a tenant that set nothing: no default bound, the agent's policy,
// model, infeasible and queue limit, weight 1, no conditions, parameters
// or rate limit.
func ResetControl() *Control {
	c := &Control{}
	for _, f := range settingFields {
		f.reset(c)
	}
	return c
}

// equal reports whether two bounds set the same fields to the same values.
func (b Bound) equal(o Bound) bool {
	eqf := func(x, y *float64) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return eqf(b.LatencyMS, o.LatencyMS) && eqf(b.Accuracy, o.Accuracy) && eqf(b.EnergyMJ, o.EnergyMJ) &&
		eqf(b.Confidence, o.Confidence) && (b.Exit == nil) == (o.Exit == nil) && (b.Exit == nil || *b.Exit == *o.Exit)
}
