package broker_test

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/schema"
)

func TestTenantACL(t *testing.T) {
	for _, prefix := range []string{"", "site1/delen"} {
		topics := schema.Topics{Prefix: prefix}
		p := prefix
		if p == "" {
			p = "delen"
		}
		a := &broker.Authenticator{ACL: broker.TenantACL(topics, "edge")}
		for _, c := range []struct {
			user, client, topic string
			write, want         bool
		}{
			// A tenant: its own requests and control, its own tree to read.
			{"cam1", "c", p + "/cam1/requests", true, true},
			{"cam1", "c", p + "/cam1/control", true, true},
			{"cam1", "c", p + "/cam1/results", true, false},
			{"cam1", "c", p + "/cam1/state", true, false},
			{"cam1", "c", p + "/cam1/replies/7", true, false},
			{"cam1", "c", p + "/cam1/results", false, true},
			{"cam1", "c", p + "/cam1/state", false, true},
			{"cam1", "c", p + "/cam1/replies/7", false, true},
			{"cam1", "c", p + "/cam1/#", false, true},
			{"cam1", "c", p + "/_agents/edge-1/status", false, true},
			{"cam1", "c", p + "/_agents/+/status", false, true},
			// ... and nothing of another tenant's, nor filters covering it.
			{"cam1", "c", p + "/cam2/requests", true, false},
			{"cam1", "c", p + "/cam2/control", true, false},
			{"cam1", "c", p + "/cam2/results", false, false},
			{"cam1", "c", p + "/+/results", false, false},
			{"cam1", "c", p + "/#", false, false},
			{"cam1", "c", "#", false, false},
			{"cam1", "c", "$share/g/" + p + "/cam2/results", false, false},
			{"cam1", "c", p + "/+/requests", false, false},
			{"cam1", "edge-1", p + "/_agents/edge-1/status", true, false}, // no spoofed agent status
			// The agent.
			{"edge", "edge-1", p + "/+/requests", false, true},
			{"edge", "edge-1", "$share/agents/" + p + "/+/requests", false, true},
			{"edge", "edge-1", p + "/+/control", false, true},
			{"edge", "edge-1", p + "/cam2/results", true, true},
			{"edge", "edge-1", p + "/cam2/state", true, true},
			{"edge", "edge-1", p + "/cam2/replies/x/y", true, true},
			{"edge", "edge-1", p + "/_agents/edge-1/status", true, true},
			{"edge", "edge-1", p + "/+/results", false, false},
			{"edge", "edge-1", "other/topic", true, false},
			// Anonymous clients get nothing.
			{"", "c", p + "/_agents/+/status", false, true}, // the one pattern without %u
			{"", "c", p + "/cam1/requests", true, false},
		} {
			if got := a.Allowed(c.user, c.client, c.topic, c.write); got != c.want {
				t.Errorf("prefix %q: Allowed(%q, %q, %q, write %t) = %t; want %t", prefix, c.user, c.client, c.topic, c.write, got, c.want)
			}
		}
	}
}

// TestDeployACLMatchesTenantACL keeps deploy/mosquitto/acl in step with
// TenantACL: the same rules, as Mosquitto spells them.
func TestDeployACLMatchesTenantACL(t *testing.T) {
	f, err := os.Open("../deploy/mosquitto/acl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []string
	user := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch fields[0] {
		case "user":
			user = fields[1]
		case "topic", "pattern":
			if len(fields) != 3 {
				t.Fatalf("acl line %q: want <kind> <access> <topic>", sc.Text())
			}
			who := user
			if fields[0] == "pattern" {
				who = "*"
			}
			got = append(got, who+" "+fields[1]+" "+fields[2])
		default:
			t.Fatalf("acl line %q: unknown keyword", sc.Text())
		}
	}
	var want []string
	for _, r := range broker.TenantACL(schema.Topics{}, broker.DefaultAgentUser) {
		if strings.Contains(r.Topic, "%c") {
			continue // covered by the agent's delen/+/# in the file
		}
		who := r.User
		if who == "" {
			who = "*"
		}
		access := map[broker.Access]string{broker.AccessRead: "read", broker.AccessWrite: "write", broker.AccessReadWrite: "readwrite"}[r.Access]
		want = append(want, who+" "+access+" "+r.Topic)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("deploy/mosquitto/acl grants\n  %s\nbroker.TenantACL grants\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}
