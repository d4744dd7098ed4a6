// Package tenants reads the tenants file of `delen serve --tenants`: the
// accounts of the agent and of each tenant on the embedded broker, with
// bcrypt password hashes. From it the embedded broker refuses anonymous
// clients and confines each tenant to its own topics (broker.TenantACL).
//
// The file is YAML (JSON is YAML too):
//
//	agent:
//	  username: delen-agent         # optional, the default
//	  password_hash: "$2a$10$..."   # `delen passwd`
//	tenants:
//	  - name: cam1                  # the MQTT username, and the tenant
//	    password_hash: "$2a$10$..."
//	  - name: inspect
//	    password_hash: "$2a$10$..."
//
// Only hashes are stored; the agent's plaintext password is given to
// `delen serve` separately (--agent-password or DELEN_AGENT_PASSWORD).
package tenants

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/schema"
	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// File is a tenants file.
type File struct {
	// Agent is the agent's own account.
	Agent Agent `yaml:"agent" json:"agent"`
	// Tenants are the tenants' accounts, one per tenant.
	Tenants []Tenant `yaml:"tenants" json:"tenants"`
}

// Agent is the agent's account on the broker.
type Agent struct {
	// Username is the agent's MQTT username; "" means
	// broker.DefaultAgentUser ("delen-agent").
	Username string `yaml:"username" json:"username"`
	// PasswordHash is the bcrypt hash of the agent's password.
	PasswordHash string `yaml:"password_hash" json:"password_hash"`
}

// Tenant is one tenant's account: its MQTT username is its tenant name.
type Tenant struct {
	// Name is the tenant (schema.ValidTenant) and its MQTT username.
	Name string `yaml:"name" json:"name"`
	// PasswordHash is the bcrypt hash of the tenant's password.
	PasswordHash string `yaml:"password_hash" json:"password_hash"`
}

// Load reads and validates the tenants file at path.
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tenants file: %w", err)
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("tenants file %s: %w", path, err)
	}
	return f, nil
}

// Parse decodes a tenants file (YAML or JSON; unknown keys are errors) and
// validates it.
func Parse(data []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f File
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty")
		}
		return nil, err
	}
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return &f, nil
}

// Validate checks the file and fills in the default agent username. Each
// error names the entry at fault: an agent without a password hash, a hash
// that is not bcrypt, a tenant name that is not valid (schema.ValidTenant),
// a tenant listed twice or named like the agent.
func (f *File) Validate() error {
	if f.Agent.Username == "" {
		f.Agent.Username = broker.DefaultAgentUser
	}
	if u := f.Agent.Username; strings.ContainsAny(u, "/+#:\x00") || strings.TrimSpace(u) != u {
		return fmt.Errorf("agent: username %q: no '/', '+', '#', ':', NUL or surrounding spaces allowed", u)
	}
	if err := checkHash(f.Agent.PasswordHash); err != nil {
		return fmt.Errorf("agent %q: %w", f.Agent.Username, err)
	}
	seen := map[string]int{}
	for i, t := range f.Tenants {
		if t.Name == "" {
			return fmt.Errorf("tenants[%d]: name missing", i)
		}
		if !schema.ValidTenant(t.Name) {
			return fmt.Errorf("tenants[%d] %q: not a valid tenant name (^[a-z0-9][a-z0-9_-]{0,62}$)", i, t.Name)
		}
		if j, dup := seen[t.Name]; dup {
			return fmt.Errorf("tenants[%d] %q: listed twice (also tenants[%d])", i, t.Name, j)
		}
		if t.Name == f.Agent.Username {
			return fmt.Errorf("tenants[%d] %q: named like the agent's user", i, t.Name)
		}
		seen[t.Name] = i
		if err := checkHash(t.PasswordHash); err != nil {
			return fmt.Errorf("tenants[%d] %q: %w", i, t.Name, err)
		}
	}
	return nil
}

// checkHash accepts a bcrypt hash.
func checkHash(h string) error {
	if h == "" {
		return errors.New("password_hash missing (make one with `delen passwd`)")
	}
	if _, err := bcrypt.Cost([]byte(h)); err != nil {
		return fmt.Errorf("password_hash is not a bcrypt hash (make one with `delen passwd`): %w", err)
	}
	return nil
}

// Authenticator returns the embedded broker's Authenticator for the file
// on the topics of t: no anonymous clients, the agent and the tenants as
// users with bcrypt passwords, and broker.TenantACL.
func (f *File) Authenticator(t schema.Topics) *broker.Authenticator {
	users := []broker.User{{Name: f.Agent.Username, PasswordHash: f.Agent.PasswordHash}}
	for _, tn := range f.Tenants {
		users = append(users, broker.User{Name: tn.Name, PasswordHash: tn.PasswordHash})
	}
	return &broker.Authenticator{
		Users:          users,
		ACL:            broker.TenantACL(t, f.Agent.Username),
		VerifyPassword: bcrypt.CompareHashAndPassword,
	}
}

// CheckAgentPassword reports whether password is the agent's, so that a
// wrong --agent-password fails at start instead of as refused connections.
func (f *File) CheckAgentPassword(password string) error {
	if password == "" {
		return errors.New("the agent's password is missing (--agent-password or DELEN_AGENT_PASSWORD)")
	}
	if err := bcrypt.CompareHashAndPassword([]byte(f.Agent.PasswordHash), []byte(password)); err != nil {
		return errors.New("the agent's password does not match the agent's password_hash in the tenants file")
	}
	return nil
}

// Hash returns the bcrypt hash of password at cost (0 means
// bcrypt.DefaultCost), for the tenants file.
func Hash(password string, cost int) (string, error) {
	if password == "" {
		return "", errors.New("empty password")
	}
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}
