package broker

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Access is what an ACL rule grants on the topics it covers.
type Access uint8

// Access values; combine them with |.
const (
	// AccessRead allows subscribing to, and receiving from, the topics.
	AccessRead Access = 1 << iota
	// AccessWrite allows publishing to the topics.
	AccessWrite
	// AccessReadWrite allows both.
	AccessReadWrite = AccessRead | AccessWrite
)

// User is one account of an Authenticator.
type User struct {
	// Name is the MQTT username.
	Name string
	// PasswordHash is the stored hash of the password, e.g. a bcrypt hash
	// ("$2a$10$..."), checked with Authenticator.VerifyPassword.
	PasswordHash string
}

// ACLRule grants Access on the topics matched by Topic.
type ACLRule struct {
	// User is the username the rule applies to; "" applies it to every
	// client, anonymous ones included (a pattern rule, as in Mosquitto).
	User string
	// Topic is an MQTT topic filter (+ and # allowed). "%u" is replaced by
	// the client's username and "%c" by its client ID; a rule whose
	// placeholder would take an empty value, or one containing '/', '+' or
	// '#', does not apply (so "delen/%u/#" cannot be widened by a crafted
	// username).
	Topic string
	// Access is what the rule grants.
	Access Access
}

// Authenticator authenticates clients of the embedded broker and checks
// their publishes and subscriptions. Rules only grant: a client may publish
// to a topic, or subscribe to a filter, when some rule that applies to it
// grants that access on everything the topic or filter covers. With no
// rules at all, every accepted client may use every topic.
//
// A client ID belongs to the user that holds its session: a client that
// connects with the ID of a session (connected, or kept for a persistent
// client) of another user is refused. Otherwise a tenant could take over
// the agent's session, with the other tenants' requests queued or in
// flight in it, or knock the agent off. (An anonymous session may be taken
// over: it holds nothing that anonymous clients could not read, and so a
// broker that turns authentication on keeps the sessions made before.)
//
// What a refusal looks like is mochi's doing: a refused subscription gets
// a failure code in its SUBACK (Client.Subscribe returns an error); a
// refused QoS 0 publish is dropped silently; a refused QoS 1/2 publish from
// an MQTT 3.1.1 client (such as Client) closes that client's connection.
type Authenticator struct {
	// AllowAnonymous accepts clients that send no username.
	AllowAnonymous bool
	// Users are the accounts; a client that sends a username must match one.
	Users []User
	// ACL is the list of rules; empty means no topic restrictions.
	ACL []ACLRule
	// VerifyPassword checks a password against a User's PasswordHash and
	// returns nil when it matches. It is required when Users is not empty;
	// pass bcrypt.CompareHashAndPassword (golang.org/x/crypto/bcrypt) for
	// bcrypt hashes, the format Mosquitto's password files use too.
	VerifyPassword func(hash, password []byte) error
}

func (a *Authenticator) validate() error {
	if len(a.Users) > 0 && a.VerifyPassword == nil {
		return errors.New("broker: Authenticator with users needs VerifyPassword (e.g. bcrypt.CompareHashAndPassword)")
	}
	seen := map[string]bool{}
	for _, u := range a.Users {
		if u.Name == "" {
			return errors.New("broker: Authenticator user without a name")
		}
		if seen[u.Name] {
			return fmt.Errorf("broker: Authenticator user %q listed twice", u.Name)
		}
		seen[u.Name] = true
	}
	for _, r := range a.ACL {
		if err := ValidateFilter(r.Topic); err != nil {
			return fmt.Errorf("broker: ACL rule for %q: %w", r.User, err)
		}
		if r.Access&^AccessReadWrite != 0 || r.Access == 0 {
			return fmt.Errorf("broker: ACL rule %q: invalid access %d", r.Topic, r.Access)
		}
	}
	return nil
}

// Authenticate reports whether a client may connect with these credentials.
// A client without username is anonymous.
func (a *Authenticator) Authenticate(username string, password []byte) bool {
	if username == "" {
		return a.AllowAnonymous && len(password) == 0
	}
	for _, u := range a.Users {
		if u.Name == username {
			return a.VerifyPassword != nil && a.VerifyPassword([]byte(u.PasswordHash), password) == nil
		}
	}
	return false
}

// Allowed reports whether the client (username "" for anonymous) may
// publish to topic (write true) or subscribe to / receive from the topic or
// filter (write false). A shared subscription "$share/<group>/<filter>" is
// checked as <filter>.
func (a *Authenticator) Allowed(username, clientID, topic string, write bool) bool {
	if len(a.ACL) == 0 {
		return true
	}
	if !write {
		if _, f, ok := splitShared(topic); ok {
			topic = f
		}
	}
	need := AccessRead
	if write {
		need = AccessWrite
	}
	for _, r := range a.ACL {
		if r.Access&need == 0 || (r.User != "" && r.User != username) {
			continue
		}
		filter, ok := expandRule(r.Topic, username, clientID)
		if !ok {
			continue
		}
		if write {
			if MatchTopic(filter, topic) {
				return true
			}
		} else if filterCovers(filter, topic) {
			return true
		}
	}
	return false
}

// expandRule substitutes %u and %c in a rule's topic filter.
func expandRule(rule, username, clientID string) (string, bool) {
	if !strings.Contains(rule, "%") {
		return rule, true
	}
	for _, p := range []struct{ ph, v string }{{"%u", username}, {"%c", clientID}} {
		if !strings.Contains(rule, p.ph) {
			continue
		}
		if p.v == "" || strings.ContainsAny(p.v, "/+#") {
			return "", false
		}
		rule = strings.ReplaceAll(rule, p.ph, p.v)
	}
	return rule, true
}

// authHook plugs an Authenticator into mochi.
type authHook struct {
	mqtt.HookBase
	a *Authenticator
	// sessions are the broker's clients, connected or kept, by client ID.
	sessions *mqtt.Clients
}

func (h *authHook) ID() string { return "delen-auth" }

func (h *authHook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck}, []byte{b})
}

func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	if !h.a.Authenticate(user, pk.Connect.Password) {
		h.Log.Warn("client refused", "client", cl.ID, "username", user, "remote", cl.Net.Remote)
		return false
	}
	if h.sessions != nil {
		if old, ok := h.sessions.Get(cl.ID); ok && len(old.Properties.Username) > 0 && string(old.Properties.Username) != user {
			h.Log.Warn("client refused: its client ID belongs to another user's session", "client", cl.ID,
				"username", user, "session_username", string(old.Properties.Username), "remote", cl.Net.Remote)
			return false
		}
	}
	return true
}

func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	return h.a.Allowed(string(cl.Properties.Username), cl.ID, topic, write)
}
