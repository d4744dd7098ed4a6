package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/delen-edge/delen/agent"
	"github.com/delen-edge/delen/agent/store"
	"github.com/delen-edge/delen/agent/tenants"
	"github.com/delen-edge/delen/broker"
	"github.com/delen-edge/delen/internal/procs"
	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/imagein"
	"github.com/delen-edge/delen/models/profile"
	"github.com/delen-edge/delen/policies"
	"github.com/delen-edge/delen/schema"
	"github.com/spf13/cobra"
)

// serveFlags are `delen serve`'s options.
type serveFlags struct {
	brokerURL  string
	listen     string
	httpAddr   string
	pprof      bool
	tuneProcs  bool
	shareGroup string
	agentID    string
	prefix     string
	model      string
	workers    int
	queueLimit int
	maxTenants int
	histMax    int
	dedupeTTL  time.Duration
	maxPayload int
	maxPixels  int
	infeasible string
	// sentAtFuture and sentAtMaxAge bound a plausible sent_at.
	sentAtFuture, sentAtMaxAge time.Duration
	policy                     string
	provider                   string
	conditions                 string
	meter                      meterFlags

	// pprofRemote allows --pprof on an --http beyond the loopback.
	pprofRemote bool
	// maxWeight is the highest weight a tenant may give itself.
	maxWeight float64

	// Tenant isolation (--tenants) and the agent's broker account.
	tenantsFile   string
	agentUser     string
	agentPassword string
	// The embedded broker's TLS listener.
	tlsCert, tlsKey, tlsListen, tlsClientCA string
	// TLS towards an external broker (--broker ssl://...).
	tlsCA, tlsClientCert, tlsClientKey string
}

func newServeCmd(g *globals) *cobra.Command {
	f := &serveFlags{}
	c := &cobra.Command{
		Use:   "serve",
		Short: "run the agent (with an embedded MQTT broker unless --broker is given) and its HTTP endpoints",
		Long: `Runs the agent: with an embedded MQTT broker on --listen unless --broker names
another, and /healthz, /readyz, /metrics and /history on --http.

Every flag also reads its variable, DELEN_ and the flag's name in upper case
with '_' for '-' (DELEN_QUEUE_LIMIT for --queue-limit), and is a key of the
--config file (see delen.yaml), except --agent-password, which stays out of
files. A flag on the command line beats its variable, which beats the file.`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{cmdAllEnv: "true"},
		RunE:        func(cmd *cobra.Command, args []string) error { return serve(cmd.Context(), g, f) },
	}
	fs := c.Flags()
	fs.String("config", "", "configuration `file` (YAML; or DELEN_CONFIG): keys are these flags' names, plus tenant-defaults (see delen.yaml)")
	fs.StringVar(&f.brokerURL, "broker", "", "external broker `url` (tcp://host:port, ssl://host:8883); default: an embedded broker on --listen")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:1883", "`address` of the embedded broker")
	fs.StringVar(&f.httpAddr, "http", "127.0.0.1:8080", "`address` of /healthz, /readyz, /metrics, /history (empty: off)")
	fs.BoolVar(&f.pprof, "pprof", false, "also serve Go's profiler (heap, goroutines, CPU) under /debug/pprof/ on --http; for diagnosis (refused on an --http beyond the loopback without --pprof-remote)")
	fs.BoolVar(&f.pprofRemote, "pprof-remote", false, "allow --pprof on an --http address beyond the loopback")
	fs.BoolVar(&f.tuneProcs, "tune-procs", true, "size Go's scheduler (GOMAXPROCS) to the CPU the agent uses, between 1 (one more than --workers while a model's stages take milliseconds) and the CPUs it may use: idle Ps cost CPU on every request (off, or with GOMAXPROCS set: Go's own setting)")
	fs.StringVar(&f.shareGroup, "share-group", "", "subscribe through $share/GROUP/... so several agents split the load")
	fs.StringVar(&f.agentID, "agent-id", "", "agent id (MQTT client id, status topic); default delen-<hostname>")
	fs.StringVar(&f.prefix, "prefix", "delen", "topic prefix")
	fs.StringVar(&f.model, "model", "mnist-ee", "default model")
	fs.IntVar(&f.workers, "workers", 0, "stage workers (default: one per CPU)")
	fs.IntVar(&f.queueLimit, "queue-limit", 0, "requests per tenant admitted and not yet answered before the next is answered overloaded (0: no cap; requests wait at the broker; a tenant's control may lower it, not raise it)")
	fs.Float64Var(&f.maxWeight, "max-weight", 10, "highest scheduling weight a tenant's control may set (a tenant's weight in tenant-defaults is its own ceiling)")
	fs.IntVar(&f.histMax, "history-max-records", 100_000, "newest history records kept per tenant (older ones deleted every 10 s; -1: keep all for 7 days)")
	fs.DurationVar(&f.dedupeTTL, "dedupe-ttl", 10*time.Minute, "how long a served request's result is kept to answer a redelivery or retransmission of its id with the same bytes (docs/reliability.md)")
	fs.IntVar(&f.maxTenants, "max-tenants", 1024, "tenants the agent keeps state and metrics for; requests of further tenants are answered overloaded")
	fs.IntVar(&f.maxPayload, "max-payload", 4<<20, "largest request in bytes; larger ones are answered too_large")
	fs.IntVar(&f.maxPixels, "max-pixels", imagein.DefaultMaxPixels, "largest encoded image (JPEG, PNG) input in pixels, checked in its header before decoding; larger ones are answered too_large")
	choiceVar(fs, &f.infeasible, "infeasible", schema.InfeasibleLate, "when not even exit 1 can meet a bound: late (serve exit 1) or shed", schema.InfeasibleLate, schema.InfeasibleShed)
	fs.DurationVar(&f.sentAtFuture, "sent-at-future", agent.DefaultSentAtFuture, "a request's sent_at at most this far ahead of the agent's clock is plausible: its latency deadline counts from sent_at (else from arrival)")
	fs.DurationVar(&f.sentAtMaxAge, "sent-at-max-age", agent.DefaultSentAtMaxAge, "a request's sent_at at most this old is plausible: its latency deadline counts from sent_at (else from arrival)")
	choiceVar(fs, &f.provider, "provider", models.ProviderCPU, "ONNX Runtime execution provider (falls back to cpu with a log line when missing)", models.ProviderCPU, models.ProviderCUDA, models.ProviderTensorRT)
	fs.StringVar(&f.policy, "policy", "", "default policy of tenants that set none (default bound)")
	fs.StringVar(&f.conditions, "conditions", "", "JSON `file` of exit conditions (the reference's format) for tenants that set none")
	f.meter.add(c)
	fs.StringVar(&f.tenantsFile, "tenants", "", "tenants `file` (YAML or JSON: the agent's and each tenant's user with bcrypt hashes from delen passwd); the embedded broker then refuses anonymous clients and confines each tenant to its own topics")
	fs.StringVar(&f.agentUser, "agent-user", "", "the agent's MQTT username (default: the tenants file's, else "+broker.DefaultAgentUser+" when a password is given)")
	fs.StringVar(&f.agentPassword, "agent-password", "", "the agent's MQTT password, in plain text (DELEN_AGENT_PASSWORD keeps it out of the process list); required with --tenants")
	secret(fs, "agent-password")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "certificate `file` (PEM) of the embedded broker's TLS listener; with --tls-key enables it")
	fs.StringVar(&f.tlsKey, "tls-key", "", "private key `file` (PEM) of --tls-cert")
	fs.StringVar(&f.tlsListen, "tls-listen", broker.DefaultTLSAddr, "`address` of the embedded broker's TLS listener")
	fs.StringVar(&f.tlsClientCA, "tls-client-ca", "", "CA bundle `file` (PEM): the embedded broker's TLS listener then requires client certificates signed by it")
	fs.StringVar(&f.tlsCA, "tls-ca", "", "CA bundle `file` (PEM) that an external ssl:// broker's certificate must chain to (default: the system roots)")
	fs.StringVar(&f.tlsClientCert, "tls-client-cert", "", "client certificate `file` (PEM) the agent shows an external ssl:// broker")
	fs.StringVar(&f.tlsClientKey, "tls-client-key", "", "private key `file` (PEM) of --tls-client-cert")
	return c
}

// security reads the tenants file and the TLS flags: the embedded broker's
// Authenticator (nil without --tenants), the agent's credentials, and its
// TLS configuration towards an external broker (nil unless one is set).
func (f *serveFlags) security(topics schema.Topics) (auth *broker.Authenticator, user, password string, tlsCfg *tls.Config, err error) {
	user, password = f.agentUser, f.agentPassword
	if f.tenantsFile != "" {
		if f.brokerURL != "" {
			return nil, "", "", nil, errors.New("--tenants sets up the embedded broker's accounts; with --broker, create the accounts in that broker (see deploy/mosquitto) and give the agent's with --agent-user and --agent-password")
		}
		tf, err := tenants.Load(f.tenantsFile)
		if err != nil {
			return nil, "", "", nil, err
		}
		if user != "" && user != tf.Agent.Username {
			return nil, "", "", nil, fmt.Errorf("--agent-user %q differs from the tenants file's agent user %q", user, tf.Agent.Username)
		}
		if err := tf.CheckAgentPassword(password); err != nil {
			return nil, "", "", nil, fmt.Errorf("tenants file %s: %w", f.tenantsFile, err)
		}
		user, auth = tf.Agent.Username, tf.Authenticator(topics)
	} else if user == "" && password != "" {
		user = broker.DefaultAgentUser
	}
	if (f.tlsCert != "" || f.tlsKey != "" || f.tlsClientCA != "") && f.brokerURL != "" {
		return nil, "", "", nil, errors.New("--tls-cert, --tls-key and --tls-client-ca set up the embedded broker's TLS listener; they do not apply with --broker")
	}
	if f.tlsCA != "" || f.tlsClientCert != "" || f.tlsClientKey != "" {
		if !isTLSURL(f.brokerURL) {
			return nil, "", "", nil, errors.New("--tls-ca, --tls-client-cert and --tls-client-key are for an external broker over TLS: --broker ssl://host:8883")
		}
		if tlsCfg, err = broker.ClientTLSConfig(f.tlsCA, f.tlsClientCert, f.tlsClientKey); err != nil {
			return nil, "", "", nil, err
		}
	}
	return auth, user, password, tlsCfg, nil
}

// isTLSURL reports whether a broker URL speaks MQTT over TLS.
func isTLSURL(u string) bool {
	scheme, _, ok := strings.Cut(u, "://")
	return ok && (scheme == "ssl" || scheme == "tls" || scheme == "mqtts" || scheme == "wss")
}

func serve(ctx context.Context, g *globals, f *serveFlags) error {
	log := g.log
	var tenantDefaults map[string]schema.Settings
	if g.config != nil {
		tenantDefaults = g.config.tenants
		log.Info("configuration file", "path", g.config.path, "keys", g.config.applied, "tenant_defaults", len(tenantDefaults))
	}
	topics := schema.Topics{Prefix: f.prefix}
	auth, agentUser, agentPassword, agentTLS, err := f.security(topics)
	if err != nil {
		return err
	}
	if f.pprof {
		if err := checkPprofAddr(f.httpAddr, f.pprofRemote); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(g.data, 0o755); err != nil {
		return err
	}
	st, err := store.OpenWritableOrMemory(g.storeDir(), store.Options{Logger: log})
	readOnly := errors.Is(err, store.ErrReadOnly) || errors.Is(err, store.ErrNoSpace)
	switch {
	case readOnly:
		log.Error("data folder not writable: serving without persistence (delen_store_persistent 0)", "err", err)
	case err != nil:
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Error("close store", "err", err)
		}
	}()
	brokerURL := f.brokerURL
	var brokerDial func(context.Context) (net.Conn, error)
	var emb *broker.Embedded
	if brokerURL == "" {
		ecfg := broker.EmbeddedConfig{Addr: f.listen, DataDir: filepath.Join(g.data, "broker"), Logger: g.quietLogger().With("component", "broker"),
			Auth: auth, TLSCertFile: f.tlsCert, TLSKeyFile: f.tlsKey, TLSAddr: f.tlsListen, TLSClientCAFile: f.tlsClientCA}
		if readOnly {
			ecfg.DataDir = "" // sessions and queued requests live in memory until exit
		}
		var err error
		if emb, err = broker.NewEmbedded(ecfg); err != nil {
			return err
		}
		if err := emb.Start(ctx); err != nil {
			return fmt.Errorf("embedded broker: %w", err)
		}
		defer emb.Close()
		// The agent attaches to its embedded broker in-process, with no
		// MQTT packets between them (clients still connect over TCP); it
		// dials in-process, MQTT without a socket, for a share group.
		brokerURL, brokerDial = emb.Addr(), emb.Dial
		log.Info("embedded broker listening", "addr", brokerURL)
		if tlsAddr := emb.TLSAddr(); tlsAddr != "" {
			log.Info("embedded broker listening over TLS", "addr", tlsAddr, "client_certificates", f.tlsClientCA != "")
		}
		if auth != nil {
			log.Info("tenant isolation on: anonymous clients refused, each tenant confined to its own topics",
				"tenants", len(auth.Users)-1, "agent_user", agentUser)
		}
	}
	meter, err := f.meter.open(g)
	if err != nil {
		return err
	}
	var conditions []schema.Condition
	if f.conditions != "" {
		if conditions, err = policies.LoadConditions(f.conditions); err != nil {
			return err
		}
	}
	a, err := agent.New(ctx, agent.Config{
		DefaultPolicy: f.policy, DefaultConditions: conditions, Provider: f.provider, TenantDefaults: tenantDefaults,
		AgentID: f.agentID, BrokerURL: brokerURL, BrokerDial: brokerDial, Embedded: emb, ShareGroup: f.shareGroup,
		Username: agentUser, Password: agentPassword, TLS: agentTLS,
		Topics: topics, Zoo: g.openZoo(), DefaultModel: f.model,
		Store: st, Meter: meter, Workers: f.workers, QueueLimit: f.queueLimit, MaxWeight: f.maxWeight, MaxTenants: f.maxTenants, HistoryMaxRecords: f.histMax, DedupeTTL: f.dedupeTTL,
		MaxPayload: f.maxPayload, Infeasible: f.infeasible, SentAtFuture: f.sentAtFuture, SentAtMaxAge: f.sentAtMaxAge, Logger: log,
		MaxPixels: f.maxPixels,
	})
	if err != nil {
		return err
	}
	httpAddr := ""
	if f.httpAddr != "" {
		ln, err := net.Listen("tcp", f.httpAddr)
		if err != nil {
			return fmt.Errorf("http: %w", err)
		}
		httpAddr = ln.Addr().String()
		srv := &http.Server{Handler: httpHandler(a, st, f.pprof, historyAccess{auth, agentUser}), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("http listening", "addr", "http://"+ln.Addr().String(), "paths", "/healthz /readyz /metrics /history /profile")
	}
	// SIGHUP reloads the model zoo (the agent also notices changed model
	// folders on its own at every status interval).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				added, replaced, removed, _ := a.Reload(ctx)
				log.Info("models reloaded (SIGHUP)", "added", added, "replaced", replaced, "removed", removed)
			}
		}
	}()
	switch {
	case !f.tuneProcs:
	case os.Getenv("GOMAXPROCS") != "":
		log.Info("GOMAXPROCS is set: the agent keeps it (--tune-procs does nothing)", "gomaxprocs", runtime.GOMAXPROCS(0))
	default:
		go (&procs.Tuner{Floor: a.MinProcs, Log: log}).Run(ctx)
	}
	if g.onReady != nil {
		go func() {
			if a.WaitReady(ctx) == nil {
				g.onReady(brokerURL, httpAddr)
			}
		}()
	}
	return a.Run(ctx)
}

// httpHandler serves the agent's HTTP endpoints, and the profiler's with
// withPprof; /history behind history's access check.
func httpHandler(a *agent.Agent, st *store.Store, withPprof bool, history historyAccess) http.Handler {
	mux := http.NewServeMux()
	if withPprof {
		addPprof(mux)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !a.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", a.Metrics().Handler())
	mux.HandleFunc("GET /profile", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		p, err := st.Profile(q.Get("model"), q.Get("version"), profile.DeviceID())
		switch {
		case errors.Is(err, store.ErrNotFound):
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		v := *p
		v.Validation = nil // per-sample data stays in the store
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	})
	mux.HandleFunc("GET /history", history.wrap(func(w http.ResponseWriter, r *http.Request) {
		since, err := parseSince(r.URL.Query().Get("since"), time.Now())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		recs, err := st.History(r.URL.Query().Get("tenant"), since, limit)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if recs == nil {
			recs = []store.Record{}
		}
		json.NewEncoder(w).Encode(recs)
	}))
	return mux
}

// addPprof serves Go's profiler under /debug/pprof/ on mux.
func addPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}

// parseSince reads a --since value: a duration back from now ("10m",
// "24h"), an RFC 3339 time, or empty (everything).
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, errors.New("since: want a duration such as 10m or an RFC 3339 time")
}
