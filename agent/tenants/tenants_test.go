package tenants_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/delen-edge/delen/agent/tenants"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/schema"
	"golang.org/x/crypto/bcrypt"
)

// hash is a bcrypt hash at the lowest cost, to keep tests fast.
func hash(t *testing.T, pw string) string {
	t.Helper()
	h, err := tenants.Hash(pw, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLoadYAMLAndJSON(t *testing.T) {
	ha, h1 := hash(t, "agent-pw"), hash(t, "cam1-pw")
	dir := t.TempDir()
	yml := filepath.Join(dir, "tenants.yaml")
	if err := os.WriteFile(yml, []byte("# accounts\nagent:\n  password_hash: '"+ha+"'\ntenants:\n  - name: cam1\n    password_hash: '"+h1+"'\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	js := filepath.Join(dir, "tenants.json")
	if err := os.WriteFile(js, []byte(`{"agent": {"username": "edge-1", "password_hash": "`+ha+`"}, "tenants": [{"name": "cam1", "password_hash": "`+h1+`"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for file, user := range map[string]string{yml: broker.DefaultAgentUser, js: "edge-1"} {
		f, err := tenants.Load(file)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if f.Agent.Username != user || len(f.Tenants) != 1 || f.Tenants[0].Name != "cam1" {
			t.Fatalf("%s: %+v", file, f)
		}
		if err := f.CheckAgentPassword("agent-pw"); err != nil {
			t.Errorf("%s: right agent password refused: %v", file, err)
		}
		if err := f.CheckAgentPassword("cam1-pw"); err == nil {
			t.Errorf("%s: wrong agent password accepted", file)
		}
		if err := f.CheckAgentPassword(""); err == nil || !strings.Contains(err.Error(), "--agent-password") {
			t.Errorf("%s: empty agent password: %v", file, err)
		}
		a := f.Authenticator(schema.Topics{})
		if a.AllowAnonymous || a.Authenticate("", nil) {
			t.Errorf("%s: anonymous clients accepted", file)
		}
		if !a.Authenticate(user, []byte("agent-pw")) || !a.Authenticate("cam1", []byte("cam1-pw")) ||
			a.Authenticate("cam1", []byte("agent-pw")) || a.Authenticate("cam2", []byte("cam1-pw")) {
			t.Errorf("%s: Authenticate accepts or refuses the wrong credentials", file)
		}
		if !a.Allowed("cam1", "c", "delen/cam1/requests", true) || a.Allowed("cam1", "c", "delen/cam2/requests", true) ||
			!a.Allowed(user, "c", "$share/g/delen/+/requests", false) {
			t.Errorf("%s: ACL not the tenant ACL", file)
		}
	}
}

func TestValidationNamesTheEntry(t *testing.T) {
	ha := hash(t, "x")
	for _, c := range []struct{ doc, want string }{
		{"", "empty"},
		{"tenants: []\n", `agent "delen-agent": password_hash missing`},
		{"agent: {password_hash: 'plain'}\n", `agent "delen-agent": password_hash is not a bcrypt hash`},
		{"agent: {username: 'a/b', password_hash: '" + ha + "'}\n", `username "a/b"`},
		{"agent: {password_hash: '" + ha + "'}\ntenants: [{name: cam1, password_hash: '" + ha + "'}, {name: Cam2, password_hash: '" + ha + "'}]\n", `tenants[1] "Cam2": not a valid tenant name`},
		{"agent: {password_hash: '" + ha + "'}\ntenants: [{name: _agents, password_hash: '" + ha + "'}]\n", `tenants[0] "_agents": not a valid tenant name`},
		{"agent: {password_hash: '" + ha + "'}\ntenants: [{name: cam1, password_hash: '" + ha + "'}, {name: cam1, password_hash: '" + ha + "'}]\n", `tenants[1] "cam1": listed twice (also tenants[0])`},
		{"agent: {password_hash: '" + ha + "'}\ntenants: [{name: cam1}]\n", `tenants[0] "cam1": password_hash missing`},
		{"agent: {password_hash: '" + ha + "'}\ntenants: [{password_hash: '" + ha + "'}]\n", `tenants[0]: name missing`},
		{"agent: {password_hash: '" + ha + "'}\ntenants: [{name: delen-agent, password_hash: '" + ha + "'}]\n", `named like the agent`},
		{"agent: {password_hash: '" + ha + "'}\ntenants: [{name: cam1, password: x}]\n", `field password not found`},
		{"agent: {password_hash: '" + ha + "'}\ntenants: [{name: cam1, password_hash: '$7$101$abc$def'}]\n", `tenants[0] "cam1": password_hash is not a bcrypt hash`},
	} {
		_, err := tenants.Parse([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v; want an error containing %q", c.doc, err, c.want)
		}
	}
	if _, err := tenants.Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

func TestHash(t *testing.T) {
	h, err := tenants.Hash("s3cret", 0)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := bcrypt.Cost([]byte(h)); err != nil || c != bcrypt.DefaultCost {
		t.Fatalf("cost %d, %v", c, err)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret")) != nil {
		t.Fatal("hash does not verify")
	}
	if _, err := tenants.Hash("", 0); err == nil {
		t.Fatal("empty password hashed")
	}
}
