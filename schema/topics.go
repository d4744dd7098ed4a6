package schema

import "strings"

// DefaultPrefix is the topic prefix used by the zero Topics.
const DefaultPrefix = "delen"

// Topic kinds, the last level of a tenant topic (and KindStatus for agent
// status topics).
const (
	KindRequests = "requests"
	KindResults  = "results"
	KindControl  = "control"
	KindState    = "state"
	KindStatus   = "status"
)

// AgentsLevel is the level under the prefix that holds agent status topics:
// <prefix>/_agents/<agent-id>/status. It is not a valid tenant name.
const AgentsLevel = "_agents"

// Topics names the MQTT topics under a prefix (docs/protocol.md, "Topics"). The zero
// value uses DefaultPrefix. A prefix may have several levels ("site1/delen")
// but no wildcards and no leading or trailing '/'.
type Topics struct {
	Prefix string
}

func (t Topics) prefix() string {
	if t.Prefix == "" {
		return DefaultPrefix
	}
	return t.Prefix
}

// Requests is <prefix>/<tenant>/requests: the tenant publishes requests here.
func (t Topics) Requests(tenant string) string { return t.tenant(tenant, KindRequests) }

// Results is <prefix>/<tenant>/results: the agent publishes results here.
func (t Topics) Results(tenant string) string { return t.tenant(tenant, KindResults) }

// Control is <prefix>/<tenant>/control: the tenant publishes (retained)
// control messages here.
func (t Topics) Control(tenant string) string { return t.tenant(tenant, KindControl) }

// State is <prefix>/<tenant>/state: the agent publishes the tenant's
// effective settings here (retained).
func (t Topics) State(tenant string) string { return t.tenant(tenant, KindState) }

// AgentStatus is <prefix>/_agents/<agent-id>/status.
func (t Topics) AgentStatus(agentID string) string {
	return t.prefix() + "/" + AgentsLevel + "/" + agentID + "/" + KindStatus
}

// AgentStatusFilter is <prefix>/_agents/+/status.
func (t Topics) AgentStatusFilter() string { return t.AgentStatus("+") }

// RequestsFilter is <prefix>/+/requests, the agent's request subscription.
func (t Topics) RequestsFilter() string { return t.tenant("+", KindRequests) }

// SharedRequestsFilter is $share/<group>/<prefix>/+/requests, the request
// subscription of an agent in share group group (scale-out).
func (t Topics) SharedRequestsFilter(group string) string {
	return "$share/" + group + "/" + t.RequestsFilter()
}

// ControlFilter is <prefix>/+/control.
func (t Topics) ControlFilter() string { return t.tenant("+", KindControl) }

func (t Topics) tenant(tenant, kind string) string {
	return t.prefix() + "/" + tenant + "/" + kind
}

// Validate checks the prefix: non-empty levels, no wildcards, no NUL, not a
// $-topic.
func (t Topics) Validate() error {
	p := t.prefix()
	if strings.ContainsAny(p, "+#\x00") || strings.HasPrefix(p, "$") {
		return badRequest("topic prefix %q: no wildcards, NUL or leading '$' allowed", p)
	}
	for _, level := range strings.Split(p, "/") {
		if level == "" {
			return badRequest("topic prefix %q: empty level", p)
		}
	}
	return nil
}

// Parse splits a topic under the prefix into the tenant and the kind
// (KindRequests, KindResults, KindControl or KindState). For an agent status
// topic <prefix>/_agents/<agent-id>/status it returns the agent id in place
// of the tenant and KindStatus. Any other shape, or an invalid tenant name,
// is an error (bad_request).
func (t Topics) Parse(topic string) (tenant, kind string, err error) {
	// Cut, not Split: this runs for every request, and Split allocates.
	p := t.prefix()
	rest, ok := strings.CutPrefix(topic, p)
	if ok {
		rest, ok = strings.CutPrefix(rest, "/")
	}
	if !ok {
		return "", "", badRequest("topic %q is not under %q", topic, p+"/")
	}
	first, after, two := strings.Cut(rest, "/")
	second, third, three := strings.Cut(after, "/")
	switch {
	case two && !three: // <tenant>/<kind>
		tenant, kind = first, after
		switch kind {
		case KindRequests, KindResults, KindControl, KindState:
		default:
			return "", "", badRequest("topic %q: unknown kind %q", topic, kind)
		}
		if !ValidTenant(tenant) {
			return "", "", badRequest("topic %q: %q is not a valid tenant name", topic, tenant)
		}
		return tenant, kind, nil
	case three && !strings.Contains(third, "/"): // _agents/<agent-id>/status
		if first == AgentsLevel && third == KindStatus && second != "" &&
			!strings.ContainsAny(second, "+#") {
			return second, KindStatus, nil
		}
	}
	return "", "", badRequest("topic %q: unknown topic shape", topic)
}

// ValidTenant reports whether name is a valid tenant name:
// ^[a-z0-9][a-z0-9_-]{0,62}$.
func ValidTenant(name string) bool {
	if len(name) < 1 || len(name) > 63 {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
