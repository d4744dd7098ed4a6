package broker

import (
	"strings"

	"github.com/delen-edge/delen/schema"
)

// DefaultAgentUser is the agent's MQTT username when clients authenticate
// (a tenants file that names no agent user, and deploy/mosquitto/acl).
const DefaultAgentUser = "delen-agent"

// TenantACL returns the ACL rules that isolate tenants from one another on
// the topics of t (prefix "delen" unless set), for an Authenticator whose
// users are the tenants, each named like the tenant, and the agent, named
// agentUser. deploy/mosquitto/acl gives Mosquitto the same rules.
//
// Every user, by pattern rules on its own username (%u):
//
//   - write <prefix>/%u/requests and <prefix>/%u/control;
//   - read <prefix>/%u/#: results, state, any reply_to topic (reply_to
//     must lie under <prefix>/<tenant>/), and its own requests and control;
//   - read <prefix>/_agents/+/status, the agents' status.
//
// The agent user, in addition:
//
//   - read <prefix>/+/requests and <prefix>/+/control (also through
//     $share/<group>/..., which is checked as the filter behind it);
//   - write <prefix>/+/#: every tenant's results, state and reply_to
//     topics, and its own status topic <prefix>/_agents/<client id>/status
//     (granted explicitly too, for clarity).
//
// Rules only grant, so a tenant cannot publish to another tenant's topics,
// nor subscribe to them or to filters that would cover them
// (<prefix>/+/results, <prefix>/#). The agent's write rule is wider than
// what it publishes (it covers other agents' status topics too): the agent
// is trusted, tenants are not.
func TenantACL(t schema.Topics, agentUser string) []ACLRule {
	own := t.Requests("%u")                                    // <prefix>/%u/requests
	tree := strings.TrimSuffix(own, schema.KindRequests) + "#" // <prefix>/%u/#
	anyTree := strings.TrimSuffix(t.RequestsFilter(), schema.KindRequests) + "#"
	return []ACLRule{
		{Topic: own, Access: AccessWrite},
		{Topic: t.Control("%u"), Access: AccessWrite},
		{Topic: tree, Access: AccessRead},
		{Topic: t.AgentStatusFilter(), Access: AccessRead},
		{User: agentUser, Topic: t.RequestsFilter(), Access: AccessRead},
		{User: agentUser, Topic: t.ControlFilter(), Access: AccessRead},
		{User: agentUser, Topic: anyTree, Access: AccessWrite},
		{User: agentUser, Topic: t.AgentStatus("%c"), Access: AccessWrite},
	}
}
