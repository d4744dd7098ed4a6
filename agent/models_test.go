package agent

import (
	"testing"
	"time"

	"github.com/delen-edge/delen/models/profile"
)

func TestMinProcs(t *testing.T) {
	stages := func(cpuP99 ...float64) *profile.Profile {
		p := &profile.Profile{}
		for i, c := range cpuP99 {
			p.Stages = append(p.Stages, profile.StageStats{Stage: i, CPUMS: profile.Quantiles{P50: c / 2, P99: c}})
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		profiles []*profile.Profile // nil: a model not profiled yet
		tight    time.Duration      // a tight latency bound admitted this long ago; 0: none
		want     int
	}{
		{"no model", nil, 0, 1},
		{"mnist-ee: stages of microseconds", []*profile.Profile{stages(0.008, 0.006, 0.005)}, 0, 1},
		{"a stage of milliseconds", []*profile.Profile{stages(0.008), stages(0.5, 21.3)}, 0, 3},
		{"just under the line", []*profile.Profile{stages(1.99)}, 0, 1},
		{"a model not profiled yet", []*profile.Profile{stages(0.01), nil}, 0, 3},
		{"a tight bound just served", []*profile.Profile{stages(0.008)}, time.Second, 3},
		{"a tight bound served long ago", []*profile.Profile{stages(0.008)}, 2 * tightHold, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Agent{cfg: Config{Workers: 2}, models: newModelSet()}
			if tc.tight > 0 {
				a.tightSeen.Store(time.Now().Add(-tc.tight).UnixNano())
			}
			for i, p := range tc.profiles {
				sm := &servedModel{name: string(rune('a' + i))}
				if p != nil {
					sm.profile.Store(p)
				}
				a.models.put(sm.name, sm)
			}
			if got := a.MinProcs(); got != tc.want {
				t.Errorf("MinProcs = %d; want %d", got, tc.want)
			}
		})
	}
}
