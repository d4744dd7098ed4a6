package agent

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/delen-edge/delen/models"
	"github.com/delen-edge/delen/models/profile"
)

// servedModel is a loaded model with its current profile.
type servedModel struct {
	name    string
	m       *models.Model
	profile atomic.Pointer[profile.Profile]
	live    *liveProfile
	acc     liveAccuracy
	// stageSeconds are its children of delen_stage_seconds.
	stageSeconds stageMetrics
	// inputs holds converted input samples (*[]float32 of the model's
	// sample size) for reuse: a request's sample is copied into its
	// stage state at its first stage and is not needed after.
	inputs sync.Pool

	// Requests hold a reference while they are in flight; a replaced or
	// removed model is closed when the last one lets go.
	mu      sync.Mutex
	refs    int
	retired bool
}

// acquire takes a reference; false once the model is retired.
func (sm *servedModel) acquire() bool {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	if sm.retired {
		return false
	}
	sm.refs++
	return true
}

// release lets a reference go, closing a retired model with the last one.
func (sm *servedModel) release() {
	sm.mu.Lock()
	sm.refs--
	done := sm.retired && sm.refs == 0
	sm.mu.Unlock()
	if done {
		sm.m.Close()
	}
}

// retire takes the model out of service: new requests no longer see it,
// and it closes once the requests in flight on it have finished.
func (sm *servedModel) retire() {
	sm.mu.Lock()
	sm.retired = true
	done := sm.refs == 0
	sm.mu.Unlock()
	if done {
		sm.m.Close()
	}
}

// modelSet is the models in service, by name. A request takes a
// reference to its model (get) for as long as it is in flight; a model
// replaced or removed is retired and closes when its last reference goes.
type modelSet struct {
	mu     sync.RWMutex
	byName map[string]*servedModel
}

func newModelSet() *modelSet { return &modelSet{byName: map[string]*servedModel{}} }

// get returns the model called name with a reference taken (the caller
// releases it), or nil.
func (ms *modelSet) get(name string) *servedModel {
	for {
		ms.mu.RLock()
		sm := ms.byName[name]
		ms.mu.RUnlock()
		if sm == nil || sm.acquire() {
			return sm
		}
		// Retired between the lookup and the reference: look again.
	}
}

// has reports whether a model called name is in service.
func (ms *modelSet) has(name string) bool {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	return ms.byName[name] != nil
}

// version is the manifest version of the model called name in service.
func (ms *modelSet) version(name string) (string, bool) {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	if sm := ms.byName[name]; sm != nil {
		return sm.m.Manifest.Version, true
	}
	return "", false
}

// all returns the models in service now.
func (ms *modelSet) all() []*servedModel {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	out := make([]*servedModel, 0, len(ms.byName))
	for _, sm := range ms.byName {
		out = append(out, sm)
	}
	return out
}

// put puts sm in service as name and returns the model it replaced, which
// it retired, if any.
func (ms *modelSet) put(name string, sm *servedModel) (old *servedModel) {
	ms.mu.Lock()
	old = ms.byName[name]
	ms.byName[name] = sm
	ms.mu.Unlock()
	if old != nil {
		old.retire()
	}
	return old
}

// removeUnless retires and removes every model whose name keep refuses,
// and returns their names.
func (ms *modelSet) removeUnless(keep func(name string) bool) (removed []string) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	for name, sm := range ms.byName {
		if !keep(name) {
			delete(ms.byName, name)
			sm.retire()
			removed = append(removed, name)
		}
	}
	return removed
}

// closeAll retires every model.
func (ms *modelSet) closeAll() {
	ms.removeUnless(func(string) bool { return false })
}

// longStageMS is a stage's CPU time (ms) long enough that the agent should
// not have its intake and network wait behind it on a shared P.
const longStageMS = 2.0

// A latency bound under tightLatencyMS leaves no room for the tail that
// one P shared by the broker's reader and the agent adds (the
// multi-tenant scenario's 1-2 ms camera met 0.95-0.98 of its deadlines on
// one P against 0.98-0.99 on two); while such requests came within
// tightHold, the agent keeps its Ps.
const (
	tightLatencyMS = 10.0
	tightHold      = 10 * time.Second
)

// MinProcs is the fewest Ps (GOMAXPROCS) the agent serves well on now, for
// a procs.Tuner: one while every served model's stages are short
// (mnist-ee's take microseconds) and no tight latency bound is being
// served, else one more than its workers. A stage counts as long when it
// takes milliseconds of CPU (p99 of its profile: the wall time grows with
// the machine's load and says nothing of the stage) or has no profile yet:
// with fewer Ps, a request or a PUBACK that arrives while every P is inside
// ONNX Runtime waits for Go's monitor thread, up to 10 ms.
func (a *Agent) MinProcs() int {
	if time.Since(time.Unix(0, a.tightSeen.Load())) < tightHold {
		return a.cfg.Workers + 1
	}
	for _, sm := range a.models.all() {
		p := sm.profile.Load()
		if p == nil {
			return a.cfg.Workers + 1 // not measured yet: assume long
		}
		for _, st := range p.Stages {
			if st.CPUMS.P99 >= longStageMS {
				return a.cfg.Workers + 1
			}
		}
	}
	return 1
}
