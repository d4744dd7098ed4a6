package agent

import (
	"testing"

	"github.com/delen-edge/delen/schema"
)

// The tenant table keeps state for at most max tenants (stored ones
// included) and labels the metrics of names beyond it overflowLabel.
func TestTenantTable(t *testing.T) {
	tt := newTenantTable(2, func(string) Ceilings { return Ceilings{} })
	stored := tt.load("stored", schema.Settings{Policy: "static"})
	if stored.get().Weight != 1 {
		t.Errorf("stored tenant without a weight got %v, want 1", stored.get().Weight)
	}
	cam := tt.get("cam")
	cases := []struct {
		name      string
		wantState bool
		wantLabel string
	}{
		{"stored", true, "stored"},
		{"cam", true, "cam"},
		{"made-up-1", false, overflowLabel},
		{"made-up-2", false, overflowLabel},
	}
	for _, c := range cases {
		got := tt.get(c.name)
		if (got != nil) != c.wantState {
			t.Errorf("get(%q) = %v, want state: %v", c.name, got, c.wantState)
		}
		if l := tt.label(c.name); l != c.wantLabel {
			t.Errorf("label(%q) = %q, want %q", c.name, l, c.wantLabel)
		}
	}
	if tt.get("cam") != cam {
		t.Error("get returned a new state for a known tenant")
	}
	if stored.label != "stored" || cam.label != "cam" {
		t.Errorf("labels fixed at creation: %q, %q", stored.label, cam.label)
	}
	n := 0
	tt.each(func(string, *tenant) { n++ })
	if n != 2 {
		t.Errorf("each saw %d tenants, want 2", n)
	}
}
