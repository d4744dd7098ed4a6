package agent

import (
	"sync"
	"time"

	"github.com/delen-edge/delen/agent/store"
)

// maxSpilled bounds the dedupe records kept in memory; past it the oldest
// are dropped.
const maxSpilled = 16384

// spillDedupe keeps in memory the dedupe records the store refused (a full
// data folder), so a request redelivered while the agent runs, after a
// broker restart or a lost connection, still gets the same bytes instead of
// a second inference. It cannot survive a crash, as the store's records do.
type spillDedupe struct {
	mu    sync.Mutex
	recs  map[string]spilled
	order []string // keys in insertion order, for eviction
}

type spilled struct {
	d       store.Dedupe
	expires time.Time
}

// put keeps d under key until expires.
func (s *spillDedupe) put(key string, d store.Dedupe, expires time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.recs == nil {
		s.recs = map[string]spilled{}
	}
	if _, ok := s.recs[key]; !ok {
		s.order = append(s.order, key)
	}
	s.recs[key] = spilled{d: d, expires: expires}
	for len(s.order) > maxSpilled {
		delete(s.recs, s.order[0])
		s.order[0] = ""
		s.order = s.order[1:]
	}
}

// get returns the record under key unless it expired before now.
func (s *spillDedupe) get(key string, now time.Time) (*store.Dedupe, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.recs[key]
	if !ok || now.After(r.expires) {
		return nil, false
	}
	return &r.d, true
}
