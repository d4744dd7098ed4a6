package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPprofEndpoints: --pprof serves the index, named profiles and the
// heap profile a soak takes.
func TestPprofEndpoints(t *testing.T) {
	mux := http.NewServeMux()
	addPprof(mux)
	for _, tc := range []struct{ path, want string }{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile:"},
		{"/debug/pprof/heap?debug=1", "heap profile:"},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("GET %s: %d %.120q; want 200 with %q", tc.path, rec.Code, rec.Body.String(), tc.want)
		}
	}
}
