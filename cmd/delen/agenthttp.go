package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/delen-edge/delen/agent/store"
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

// errNoStore is fromStoreOrAgent's error when there is neither a store in
// the data folder nor an agent answering.
var errNoStore = errors.New("no store")

// fromStoreOrAgent reads what the agent holds: with read from the store in
// g's data folder, or with ask through the running agent when the agent has
// that store open (Badger lets one process at a time open it). When --data
// was given, that folder decides: its store first, the agent only when the
// store is in use. Without --data the running agent (whose data folder may
// be another) is asked first, and the local store read when no agent
// answers.
func fromStoreOrAgent(g *globals, ask func() error, read func(*store.Store) error) error {
	local := func() error {
		if _, err := os.Stat(g.storeDir()); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%w in %s", errNoStore, g.storeDir())
		}
		st, err := store.Open(g.storeDir(), store.Options{Logger: g.log})
		if err != nil {
			return err
		}
		defer st.Close()
		return read(st)
	}
	if g.userSet("data") {
		err := local()
		if errors.Is(err, store.ErrInUse) {
			return ask()
		}
		return err
	}
	err := ask()
	if errors.Is(err, errNoAgent) {
		if lerr := local(); lerr != nil {
			return fmt.Errorf("%v, and %w", err, lerr)
		}
		return nil
	}
	return err
}
