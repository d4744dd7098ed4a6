package schema

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

// wireNames returns the json names of a struct type's fields.
func wireNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}

// TestSettingFieldsCoverTheTypes: settingFields, Control and Settings name
// the same settings in the same order, so a setting added to the types
// without its entry (or the other way round) fails here.
func TestSettingFieldsCoverTheTypes(t *testing.T) {
	want := SettingNames()
	for _, typ := range []reflect.Type{reflect.TypeFor[Control](), reflect.TypeFor[Settings]()} {
		if got := wireNames(typ); !slices.Equal(got, want) {
			t.Errorf("%s fields %v, settingFields %v", typ.Name(), got, want)
		}
	}
}

// fullControl sets every setting to a value other than its reset value.
func fullControl() *Control {
	return &Control{Bound: &Bound{LatencyMS: ptr(30.0), Exit: ptr(2)}, Policy: ptr("deadline"), Model: ptr("mnist-ee"),
		Weight: ptr(2.5), Conditions: []Condition{{Metric: MetricConfidence, Op: OpGreaterEq, Threshold: 0.9}},
		Params: map[string]float64{"joules": 5}, Infeasible: ptr(InfeasibleShed), QueueLimit: ptr(8), RateLimit: ptr(20.0)}
}

func TestSettingsMergeReflectsReset(t *testing.T) {
	full := fullControl()
	// Every field is present: IsEmpty is false with any one of them.
	for _, f := range settingFields {
		one := &Control{}
		f.merge(one, full)
		if one.IsEmpty() || !f.present(one) {
			t.Errorf("%s: a control with only it is empty", f.name)
		}
		if err := one.Validate(); err != nil {
			t.Errorf("%s: %v", f.name, err)
		}
	}
	set := Settings{Weight: 1}.Apply(full)
	if !set.Reflects(full) {
		t.Fatalf("settings %+v do not reflect the control applied to them", set)
	}
	// Merge: the later control's fields win, the others stay.
	m := &Control{}
	m.Merge(full)
	m.Merge(&Control{Weight: ptr(3.0)})
	if *m.Weight != 3 || *m.Policy != "deadline" || !set.Reflects(&Control{Policy: m.Policy}) {
		t.Errorf("merged %+v", m)
	}
	if set.Reflects(m) {
		t.Error("settings with weight 2.5 reflect a control with weight 3")
	}
	// Reset: back to a tenant that set nothing.
	reset := ResetControl()
	for _, f := range settingFields {
		if !f.present(reset) {
			t.Errorf("ResetControl leaves %s absent", f.name)
		}
	}
	if got := set.Apply(reset); !reflect.DeepEqual(got, Settings{Weight: 1}) {
		t.Errorf("after ResetControl: %+v, want the defaults", got)
	}
	// Both decoders read what the encoders write, every field.
	for _, enc := range []Encoding{MsgPack, JSON} {
		b, err := EncodeControl(full, enc)
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := DecodeControl(b, 0)
		if err != nil || !reflect.DeepEqual(c, full) {
			t.Errorf("%v control round trip: %+v, %v", enc, c, err)
		}
		b, err = EncodeSettings(&set, enc)
		if err != nil {
			t.Fatal(err)
		}
		s, _, err := DecodeSettings(b, 0)
		if err != nil || !reflect.DeepEqual(*s, set) {
			t.Errorf("%v settings round trip: %+v, %v", enc, s, err)
		}
	}
}
