package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"syscall"
	"time"

	"github.com/spf13/pflag"
)

// errNoAgent is agentHTTP's error when nothing listens on its address.
var errNoAgent = errors.New("no agent answering")

// errNotFound is agentHTTP's error for a 404.
var errNotFound = errors.New("not found")

// agentHTTP reads what a running agent holds (history, profiles) through
// its HTTP endpoint: Badger lets one process at a time open the store, and
// while the agent runs it is that process.
type agentHTTP struct {
	addr, username, password string
}

// addFlags adds --http, and with auth --username and --password (the
// accounts of the tenants file, for /history), with their variables.
func (a *agentHTTP) addFlags(fs *pflag.FlagSet, auth bool) {
	fs.StringVar(&a.addr, "http", "127.0.0.1:8080", "the running agent's HTTP `address` (or DELEN_HTTP)")
	withEnv(fs, "", "http")
	if auth {
		fs.StringVar(&a.username, "username", "", "user `name` for an agent with a tenants file (or DELEN_MQTT_USER): a tenant sees its own records, the agent's account all")
		fs.StringVar(&a.password, "password", "", "password of --username (or DELEN_MQTT_PASSWORD)")
		withEnv(fs, "DELEN_MQTT_USER", "username")
		withEnv(fs, "DELEN_MQTT_PASSWORD", "password")
	}
}

// get decodes the JSON answer to GET path?q into v. It fails with
// errNoAgent when the connection is refused, errNotFound on a 404, and
// says what to do on a 401.
func (a *agentHTTP) get(path string, q url.Values, v any) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+a.addr+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if a.username != "" || a.password != "" {
		req.SetBasicAuth(a.username, a.password)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("%w at %s", errNoAgent, a.addr)
	}
	if err != nil {
		return fmt.Errorf("agent at %s: %w", a.addr, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return fmt.Errorf("agent at %s: %s: %w", a.addr, path, errNotFound)
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("agent at %s: %s: give the account with --username and --password (or DELEN_MQTT_USER and DELEN_MQTT_PASSWORD)", a.addr, resp.Status)
	default:
		return fmt.Errorf("agent at %s: %s", a.addr, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("agent at %s: %s: %w", a.addr, path, err)
	}
	return nil
}
