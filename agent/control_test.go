package agent

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
)

// stateSeen is one answer of the control step on a tenant's state topic.
type stateSeen struct {
	tenant  string
	set     schema.Settings
	refused error
}

// The control step on its own, with real Badger: what a tenant sees on its
// state topic and what the agent keeps, for each kind of control message.
func TestControlStep(t *testing.T) {
	cases := []struct {
		name    string
		tenant  string
		control string // JSON
		// want: nothing published (dropped), refused with code, or applied
		dropped   bool
		code      string
		wantSet   func(schema.Settings) bool
		wantStore bool
	}{
		{name: "policy and weight", tenant: "cam", control: `{"policy":"static","weight":2}`,
			wantSet: func(s schema.Settings) bool { return s.Policy == "static" && s.Weight == 2 }, wantStore: true},
		{name: "unknown policy", tenant: "cam", control: `{"policy":"fastest"}`, code: schema.CodeBadRequest},
		{name: "model not served", tenant: "cam", control: `{"model":"resnet"}`, code: schema.CodeUnknownModel},
		{name: "weight above the ceiling", tenant: "capped", control: `{"weight":5}`, code: schema.CodeBadRequest},
		{name: "not a control message", tenant: "cam", control: `{"policy":`, code: schema.CodeBadRequest},
		{name: "a tenant past the limit", tenant: "made-up", control: `{"weight":2}`, dropped: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := store.Open(t.TempDir(), store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			cfg := Config{MaxWeight: 4}
			tt := newTenantTable(2, cfg.ceilings)
			tt.get("cam")
			tt.get("capped")
			var seen []stateSeen
			weights := map[string]float64{}
			k := &control{
				tenants: tt, policies: policies.New(), maxPayload: 1 << 16,
				checkModel: func(ctl *schema.Control, eff schema.Settings) error {
					if ctl.Model != nil && *ctl.Model != "mnist-ee" {
						return schema.Errorf(schema.CodeUnknownModel, "model %q is not served here", *ctl.Model)
					}
					return nil
				},
				store:     st,
				setWeight: func(tenant string, v float64) { weights[tenant] = v },
				publish: func(tenant string, set schema.Settings, _ schema.Encoding, refused error) {
					seen = append(seen, stateSeen{tenant, set, refused})
				},
				log: slog.New(slog.DiscardHandler), metrics: newMetrics(),
			}
			before := tt.get("cam").get()
			k.apply(c.tenant, []byte(c.control))
			stored, err := st.Tenants()
			if err != nil {
				t.Fatal(err)
			}
			_, persisted := stored[c.tenant]
			if persisted != c.wantStore {
				t.Errorf("persisted %v, want %v", persisted, c.wantStore)
			}
			switch {
			case c.dropped:
				if len(seen) != 0 {
					t.Errorf("published %v for a tenant past the limit", seen)
				}
				return
			case len(seen) != 1 || seen[0].tenant != c.tenant:
				t.Fatalf("published %+v, want one state of %s", seen, c.tenant)
			}
			got := seen[0]
			if c.code != "" {
				var e *schema.Error
				if !errors.As(got.refused, &e) || e.Code != c.code {
					t.Fatalf("refused with %v, want code %s", got.refused, c.code)
				}
				if after := tt.get(c.tenant).get(); c.tenant == "cam" && after.Policy != before.Policy {
					t.Errorf("a refused control changed the policy to %q", after.Policy)
				}
				return
			}
			if got.refused != nil || !c.wantSet(got.set) {
				t.Fatalf("state %+v refused %v", got.set, got.refused)
			}
			if !c.wantSet(tt.get(c.tenant).get()) || !c.wantSet(stored[c.tenant]) {
				t.Errorf("the settings in force %+v or stored %+v are not the ones published", tt.get(c.tenant).get(), stored[c.tenant])
			}
			if weights[c.tenant] != got.set.Weight {
				t.Errorf("scheduler weight %v, want %v", weights[c.tenant], got.set.Weight)
			}
		})
	}
}
