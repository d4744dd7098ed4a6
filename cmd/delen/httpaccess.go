package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/delen-edge/delen/broker"
)

// historyAccess guards GET /history when the agent runs with a tenants
// file: the history holds every tenant's ids, results and meta, while MQTT
// confines each tenant to its own topics. A request needs HTTP basic
// credentials of the tenants file's accounts: a tenant's see its own
// records only, the agent's see all; anything else is 401. Without a
// tenants file (auth nil) /history is open, as the rest of --http.
type historyAccess struct {
	auth      *broker.Authenticator
	agentUser string
}

// wrap returns next behind the access check. A tenant's request is
// answered for its own tenant whatever it asks (an explicit other tenant
// is 403).
func (h historyAccess) wrap(next http.HandlerFunc) http.HandlerFunc {
	if h.auth == nil {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		user, password, ok := r.BasicAuth()
		if !ok || !h.auth.Authenticate(user, []byte(password)) {
			w.Header().Set("WWW-Authenticate", `Basic realm="delen history", charset="UTF-8"`)
			http.Error(w, "/history needs the credentials of a tenant or of the agent (HTTP basic auth; delen history --username --password)", http.StatusUnauthorized)
			return
		}
		if user != h.agentUser {
			q := r.URL.Query()
			if t := q.Get("tenant"); t != "" && t != user {
				http.Error(w, fmt.Sprintf("tenant %s may read only its own history", user), http.StatusForbidden)
				return
			}
			q.Set("tenant", user)
			r2 := *r
			u := *r.URL
			u.RawQuery = q.Encode()
			r2.URL = &u
			r = &r2
		}
		next(w, r)
	}
}

// checkPprofAddr refuses --pprof on an --http address beyond the loopback
// unless remote is set: the profiler shows the command line, heap and
// goroutines to whoever reaches it.
func checkPprofAddr(addr string, remote bool) error {
	if remote || addr == "" || isLoopback(addr) {
		return nil
	}
	return errors.New("--pprof serves Go's profiler (command line, heap, goroutines) to anyone who reaches --http " + addr +
		": bind --http to a loopback address (127.0.0.1:8080), or add --pprof-remote to serve it there anyway")
}

// isLoopback reports whether a listen address binds the loopback only.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
