package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/agent/tenants"
	"github.com/delen-edge/delen/schema"
	"golang.org/x/crypto/bcrypt"
)

// TestHistoryNeedsCredentials: with a tenants file, GET /history answers
// 401 without valid credentials, a tenant's own records to a tenant (403
// for another's), every record to the agent's account; /metrics, /healthz
// and /readyz stay open; `delen history --username --password` gets in.
func TestHistoryNeedsCredentials(t *testing.T) {
	data := t.TempDir()
	st, err := store.Open(filepath.Join(data, "store"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []store.Record
	for i, tn := range []string{"cam1", "cam2", "cam1"} {
		id := fmt.Sprintf("%s-r%d", tn, i)
		recs = append(recs, store.Record{Tenant: tn, ID: id, At: time.Now().Add(-time.Minute),
			Result: &schema.Result{Tenant: tn, ID: id, Status: schema.StatusOK}})
	}
	if err := st.AppendHistory(recs, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	hash := func(pw string) string {
		h, err := tenants.Hash(pw, bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	file := filepath.Join(t.TempDir(), "tenants.yaml")
	yaml := fmt.Sprintf("agent:\n  password_hash: %q\ntenants:\n  - name: cam1\n    password_hash: %q\n  - name: cam2\n    password_hash: %q\n",
		hash("agent-pw"), hash("cam1-pw"), hash("cam2-pw"))
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startServe(t, data, "--tenants", file, "--agent-password", "agent-pw")

	get := func(path, user, pw string) (int, string, http.Header) {
		req, err := http.NewRequest(http.MethodGet, "http://"+a.http+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	ids := func(body string) string {
		var got []store.Record
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		var s []string
		for _, r := range got {
			s = append(s, r.ID)
		}
		sort.Strings(s)
		return strings.Join(s, ",")
	}
	for _, c := range []struct {
		name, path, user, pw string
		code                 int
		ids                  string // for 200 on /history
	}{
		{"no credentials", "/history", "", "", http.StatusUnauthorized, ""},
		{"wrong password", "/history", "cam1", "cam2-pw", http.StatusUnauthorized, ""},
		{"unknown user", "/history", "cam9", "cam1-pw", http.StatusUnauthorized, ""},
		{"tenant sees its own", "/history", "cam1", "cam1-pw", http.StatusOK, "cam1-r0,cam1-r2"},
		{"tenant asks for its own", "/history?tenant=cam2", "cam2", "cam2-pw", http.StatusOK, "cam2-r1"},
		{"tenant asks for another's", "/history?tenant=cam2", "cam1", "cam1-pw", http.StatusForbidden, ""},
		{"agent sees all", "/history", "delen-agent", "agent-pw", http.StatusOK, "cam1-r0,cam1-r2,cam2-r1"},
		{"agent picks a tenant", "/history?tenant=cam2", "delen-agent", "agent-pw", http.StatusOK, "cam2-r1"},
		{"metrics open", "/metrics", "", "", http.StatusOK, ""},
		{"healthz open", "/healthz", "", "", http.StatusOK, ""},
		{"readyz open", "/readyz", "", "", http.StatusOK, ""},
	} {
		code, body, h := get(c.path, c.user, c.pw)
		if code != c.code {
			t.Errorf("%s: GET %s: %d %s, want %d", c.name, c.path, code, body, c.code)
			continue
		}
		if code == http.StatusUnauthorized && !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: 401 without a Basic challenge: %q", c.name, h.Get("WWW-Authenticate"))
		}
		if code == http.StatusOK && strings.HasPrefix(c.path, "/history") {
			if got := ids(body); got != c.ids {
				t.Errorf("%s: records %s, want %s", c.name, got, c.ids)
			}
		}
	}

	// The CLI sends the credentials.
	if got := ids(run(t, "history", "--json", "--http", a.http, "--username", "cam2", "--password", "cam2-pw")); got != "cam2-r1" {
		t.Errorf("delen history as cam2: %s, want cam2-r1", got)
	}
	if _, err := runErr("history", "--json", "--http", a.http); err == nil || !strings.Contains(err.Error(), "--username") {
		t.Errorf("delen history without credentials: %v, want a hint at --username", err)
	}
}

// TestPprofStaysOnTheLoopback: --pprof on an --http address beyond the
// loopback stops the start unless --pprof-remote allows it.
func TestPprofStaysOnTheLoopback(t *testing.T) {
	for _, c := range []struct {
		addr   string
		remote bool
		ok     bool
	}{
		{"127.0.0.1:8080", false, true},
		{"localhost:8080", false, true},
		{"[::1]:8080", false, true},
		{"127.0.0.2:0", false, true},
		{"0.0.0.0:8080", false, false},
		{":8080", false, false},
		{"192.168.1.5:8080", false, false},
		{"[::]:8080", false, false},
		{"0.0.0.0:8080", true, true},
	} {
		err := checkPprofAddr(c.addr, c.remote)
		if (err == nil) != c.ok {
			t.Errorf("--http %s --pprof-remote=%v: %v, want ok=%v", c.addr, c.remote, err, c.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "--pprof-remote") {
			t.Errorf("--http %s: %v does not say how to allow it", c.addr, err)
		}
	}
	_, err := runErr("serve", "--pprof", "--http", "0.0.0.0:0", "--listen", "127.0.0.1:0", "--data", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--pprof-remote") {
		t.Errorf("serve --pprof --http 0.0.0.0:0: %v, want refused", err)
	}
}
