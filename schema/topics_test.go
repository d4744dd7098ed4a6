package schema

import (
	"strings"
	"testing"
)

func TestTopicNames(t *testing.T) {
	var d Topics
	p := Topics{Prefix: "site1/delen"}
	tests := []struct{ got, want string }{
		{d.Requests("cam1"), "delen/cam1/requests"},
		{d.Results("cam1"), "delen/cam1/results"},
		{d.Control("cam1"), "delen/cam1/control"},
		{d.State("cam1"), "delen/cam1/state"},
		{d.AgentStatus("jetson-7"), "delen/_agents/jetson-7/status"},
		{d.AgentStatusFilter(), "delen/_agents/+/status"},
		{d.RequestsFilter(), "delen/+/requests"},
		{d.SharedRequestsFilter("g1"), "$share/g1/delen/+/requests"},
		{d.ControlFilter(), "delen/+/control"},
		{p.Requests("cam1"), "site1/delen/cam1/requests"},
		{p.SharedRequestsFilter("g"), "$share/g/site1/delen/+/requests"},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestTopicsParse(t *testing.T) {
	var d Topics
	ok := []struct{ topic, tenant, kind string }{
		{"delen/cam1/requests", "cam1", KindRequests},
		{"delen/cam1/results", "cam1", KindResults},
		{"delen/node-red_2/control", "node-red_2", KindControl},
		{"delen/0/state", "0", KindState},
		{"delen/_agents/jetson-7/status", "jetson-7", KindStatus},
	}
	for _, tc := range ok {
		tenant, kind, err := d.Parse(tc.topic)
		if err != nil || tenant != tc.tenant || kind != tc.kind {
			t.Errorf("Parse(%q) = %q, %q, %v", tc.topic, tenant, kind, err)
		}
	}
	bad := []string{
		"", "delen", "delen/", "delen/cam1", "delen/cam1/", "delen/cam1/other", "delen/cam1/requests/x",
		"other/cam1/requests", "delenx/cam1/requests", "delen//requests", "delen/Cam1/requests",
		"delen/_x/requests", "delen/-a/requests", "delen/+/requests", "delen/a b/requests",
		"delen/" + strings.Repeat("a", 64) + "/requests", "delen/_agents//status", "delen/_agents/a/stats",
		"$share/g/delen/cam1/requests",
	}
	for _, topic := range bad {
		if tenant, kind, err := d.Parse(topic); err == nil {
			t.Errorf("Parse(%q) = %q, %q; want an error", topic, tenant, kind)
		} else if CodeOf(err) != CodeBadRequest {
			t.Errorf("Parse(%q): %v", topic, err)
		}
	}
	p := Topics{Prefix: "site1/delen"}
	if tenant, kind, err := p.Parse("site1/delen/cam1/requests"); err != nil || tenant != "cam1" || kind != KindRequests {
		t.Errorf("prefixed Parse: %q %q %v", tenant, kind, err)
	}
	if _, _, err := p.Parse("delen/cam1/requests"); err == nil {
		t.Error("Parse accepts a topic outside the prefix")
	}
}

func TestValidTenant(t *testing.T) {
	for _, name := range []string{"a", "0", "cam1", "node-red", "a_b-c", strings.Repeat("z", 63)} {
		if !ValidTenant(name) {
			t.Errorf("ValidTenant(%q) = false", name)
		}
	}
	for _, name := range []string{"", "A", "_a", "-a", "a.b", "a/b", "a+", "é", strings.Repeat("z", 64), "a b"} {
		if ValidTenant(name) {
			t.Errorf("ValidTenant(%q) = true", name)
		}
	}
}

func TestTopicsValidate(t *testing.T) {
	for _, p := range []string{"", "delen", "site1/delen"} {
		if err := (Topics{Prefix: p}).Validate(); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"a/+", "#", "$SYS", "a//b", "/a", "a/"} {
		if err := (Topics{Prefix: p}).Validate(); err == nil {
			t.Errorf("%q accepted", p)
		}
	}
}

// parseBySplit is Parse as it was written first (strings.Split), the
// reference FuzzTopicsParse holds the allocation-free one to.
func parseBySplit(t Topics, topic string) (tenant, kind string, ok bool) {
	rest, found := strings.CutPrefix(topic, t.prefix()+"/")
	if !found {
		return "", "", false
	}
	levels := strings.Split(rest, "/")
	switch len(levels) {
	case 2:
		switch levels[1] {
		case KindRequests, KindResults, KindControl, KindState:
			return levels[0], levels[1], ValidTenant(levels[0])
		}
	case 3:
		if levels[0] == AgentsLevel && levels[2] == KindStatus && levels[1] != "" && !strings.ContainsAny(levels[1], "+#") {
			return levels[1], KindStatus, true
		}
	}
	return "", "", false
}

// FuzzTopicsParse: Parse accepts exactly the topics the Split-based
// reference accepts, with the same tenant and kind, under the default
// prefix and a prefix of two levels.
func FuzzTopicsParse(f *testing.F) {
	for _, s := range []string{"delen/cam1/requests", "delen/_agents/a/status", "delen//requests", "delen/a/b/c",
		"site1/delen/cam1/control", "delenx/a/results", "delen/_agents//status", "delen/_agents/a/status/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		for _, tp := range []Topics{{}, {Prefix: "site1/delen"}} {
			tenant, kind, err := tp.Parse(topic)
			wt, wk, ok := parseBySplit(tp, topic)
			if (err == nil) != ok || err == nil && (tenant != wt || kind != wk) {
				t.Fatalf("Parse(%q) under %q = %q, %q, %v; the reference: %q, %q, %v", topic, tp.Prefix, tenant, kind, err, wt, wk, ok)
			}
			if err != nil && CodeOf(err) != CodeBadRequest {
				t.Fatalf("Parse(%q): %v, want bad_request", topic, err)
			}
		}
	})
}
