package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/delen-edge/delen/internal/atomicfile"
	"github.com/delen-edge/delen/internal/wal"
)

// historyLog is where the history records of a store on disk live: a log
// of segment files of their own (internal/wal, written with write(2), read
// with pread(2), never memory-mapped, so the records are page cache and
// not the process's resident memory, as they were in Badger's value log)
// and a compact in-memory index per tenant: each record's arrival, its
// position (segment, offset), expiry and size, 24 bytes, in arrival order.
// At open the log is read through once to rebuild the index.
//
// A trim drops the oldest index entries of a tenant and remembers the
// newest arrival it dropped (the tenant's cut) in a small file beside the
// segments (trims.json, replaced through internal/atomicfile: written to
// a temporary file, fsynced, renamed over it, the folder fsynced): the
// rebuild skips a tenant's records that arrived at or before its cut, and
// those past their expiry, so what a trim or the TTL removed does not come
// back after a restart, and a tenant holds no more records after a reopen
// than before it. No tombstone goes into the log.
//
// Each segment's live bytes are counted. Every maintainEvery, expired
// entries are dropped, a segment without live records is deleted, and the
// live records of segments less than half live are copied forward (into
// segments of their own, so copied, long-lived records do not mix with
// fresh ones) and the segments deleted: a slow tenant's few records do not
// pin the files they share with a fast tenant's trimmed ones. Every
// segment but the active one is thus at least half live after a round:
// the log's files are bounded by twice the live records' bytes, plus the
// active segment and what a round's copying may leave (docs/reliability.md).
type historyLog struct {
	log *slog.Logger
	wal *wal.Log
	dir string // the log's folder
	opt historyOptions

	// wmu orders writes: appends, and a round's copying of live records.
	wmu sync.Mutex
	buf []byte  // framed records of one append
	hdr []byte  // one record's frame header
	off []int64 // offsets of an append's records in buf

	// rmu is held for reading while a query reads records back, and for
	// writing while segments are deleted: a query never reads a segment
	// deleted after it found its records' positions.
	rmu sync.RWMutex

	mu      sync.Mutex
	tenants map[string]*histTenant
	segs    map[uint64]*histSeg
	cuts    map[string]histCut
	dirty   bool // cuts changed since they were last saved

	// tmu orders the saves of the cuts, so that the file never goes back
	// to an older state.
	tmu sync.Mutex

	stop    chan struct{}
	stopped chan struct{}
	started bool
}

// histEntry is a record in a tenant's index.
type histEntry struct {
	at      int64  // arrival (atKey)
	pos     uint64 // segment << 32 | offset
	expires uint32 // Unix seconds; 0 never
	size    uint32 // bytes in the log, framing included
}

// histTenant is a tenant's index, in arrival order (records arriving at the
// same instant in the order written).
type histTenant struct{ ents []histEntry }

// histSeg is what the log knows of one segment.
type histSeg struct {
	size int64 // bytes of records in it
	live int64 // bytes of the records the index holds
}

// histCut is a tenant's trim: its records that arrived at or before At are
// gone; Seg is the newest segment that held one of them, and the cut is
// forgotten once no segment up to Seg is left.
type histCut struct {
	At  int64  `json:"at"`
	Seg uint64 `json:"seg"`
}

const (
	// historyDir is the history log's folder inside the store's.
	historyDir = "history-log"
	// cutsFile is where tenants' trims are kept, inside historyDir.
	cutsFile = "trims.json"
	// historyMaintainEvery is how often expired records are dropped and
	// segments deleted or compacted.
	historyMaintainEvery = 10 * time.Second
	// compactPerRound bounds the bytes a round copies forward, so that
	// appends (which wait for it) are never held long.
	compactPerRound = 32 << 20

	// histFrame is the kind of a history record's body in the log: kind,
	// expiry (uint64 little endian, Unix seconds; 0 never), arrival (int64
	// little endian, atKey), the tenant's length (uvarint), the tenant,
	// then the record as Record.marshal encodes it.
	histFrame = 1
)

// historyOptions are what tests change.
type historyOptions struct {
	segmentSize   int64         // default wal.DefaultSegmentSize
	maintainEvery time.Duration // default historyMaintainEvery; < 0: no background upkeep
	now           func() time.Time
}

// atKey is the arrival as the index orders it: Unix nanoseconds, times
// outside what they can hold at the ends.
func atKey(t time.Time) int64 {
	switch y := t.Year(); {
	case y < 1678:
		return math.MinInt64
	case y > 2261:
		return math.MaxInt64
	}
	return t.UnixNano()
}

// appendHistoryFrame appends a frame header (everything but the record) to
// buf.
func appendHistoryFrame(buf []byte, tenant string, at int64, expires uint64) []byte {
	buf = append(buf, histFrame)
	buf = binary.LittleEndian.AppendUint64(buf, expires)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(at))
	buf = binary.AppendUvarint(buf, uint64(len(tenant)))
	return append(buf, tenant...)
}

// splitHistoryFrame parses a history log body into its tenant, arrival,
// expiry and record, which alias b.
func splitHistoryFrame(b []byte) (tenant []byte, at int64, expires uint64, rec []byte, err error) {
	if len(b) < 1+8+8+1 || b[0] != histFrame {
		return nil, 0, 0, nil, errors.New("history log: unknown record")
	}
	expires = binary.LittleEndian.Uint64(b[1:9])
	at = int64(binary.LittleEndian.Uint64(b[9:17]))
	n, k := binary.Uvarint(b[17:])
	if k <= 0 || n > uint64(len(b)-17-k) {
		return nil, 0, 0, nil, errors.New("history log: truncated tenant")
	}
	off := 17 + k
	return b[off : off+int(n)], at, expires, b[off+int(n):], nil
}

// openHistoryLog opens the history log in the store folder dir and
// rebuilds its index from the records neither expired nor trimmed.
func openHistoryLog(dir string, log *slog.Logger, opt historyOptions) (*historyLog, error) {
	if opt.maintainEvery == 0 {
		opt.maintainEvery = historyMaintainEvery
	}
	if opt.now == nil {
		opt.now = time.Now
	}
	if opt.segmentSize <= 0 {
		opt.segmentSize = wal.DefaultSegmentSize
	}
	if opt.segmentSize >= 1<<32 {
		return nil, errors.New("history log: segments must be under 4 GiB")
	}
	h := &historyLog{log: log, dir: filepath.Join(dir, historyDir), opt: opt,
		tenants: map[string]*histTenant{}, segs: map[uint64]*histSeg{}, cuts: map[string]histCut{},
		stop: make(chan struct{}), stopped: make(chan struct{})}
	if err := os.MkdirAll(h.dir, 0o755); err != nil {
		return nil, fmt.Errorf("history log: %w", err)
	}
	if err := h.loadCuts(); err != nil {
		return nil, err
	}
	now := uint64(opt.now().Unix())
	replayed, unsorted := 0, map[*histTenant]bool{}
	l, err := wal.Open(h.dir, wal.Options{Logger: log, SegmentSize: opt.segmentSize}, func(seg uint64, off int64, body []byte) error {
		size := int64(wal.Header + len(body))
		st := h.seg(seg)
		st.size += size
		tenant, at, expires, _, err := splitHistoryFrame(body)
		if err != nil {
			// The checksum held: a record of a kind this version does not
			// know. Skipped, not fatal.
			log.Warn("history log: record skipped", "err", err)
			return nil
		}
		replayed++
		if expires != 0 && expires <= now {
			return nil
		}
		if c, ok := h.cuts[string(tenant)]; ok && at <= c.At {
			return nil
		}
		t := h.tenants[string(tenant)]
		if t == nil {
			t = &histTenant{}
			h.tenants[string(tenant)] = t
		}
		if n := len(t.ents); n > 0 && t.ents[n-1].at > at {
			unsorted[t] = true
		}
		t.ents = append(t.ents, histEntry{at: at, pos: position(seg, off), expires: clampExpiry(expires), size: uint32(size)})
		st.live += size
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("history log: %w", err)
	}
	h.wal = l
	live := 0
	for _, t := range h.tenants {
		if unsorted[t] {
			slices.SortStableFunc(t.ents, func(a, b histEntry) int { return cmpInt(a.at, b.at) })
		}
		h.dropCopies(t)
		live += len(t.ents)
	}
	h.pruneCuts()
	if replayed > 0 {
		log.Info("history log replayed", "records", replayed, "live", live, "tenants", len(h.tenants), "segments", len(h.segs))
	}
	return h, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// clampExpiry is expires as the index holds it.
func clampExpiry(expires uint64) uint32 { return uint32(min(expires, math.MaxUint32)) }

// dropCopies removes from t's index the second copy of a record that a
// round's compaction had copied forward when the process was killed before
// it deleted the original's segment: such copies are adjacent in arrival
// order, with the same arrival and the same bytes. Used at open.
func (h *historyLog) dropCopies(t *histTenant) {
	var a, b []byte
	out := t.ents[:0]
	for i, e := range t.ents {
		dup := false
		for j := len(out) - 1; j >= 0 && out[j].at == e.at && i > 0; j-- {
			if out[j].size != e.size {
				continue
			}
			var errA, errB error
			sa, oa := unpack(out[j].pos)
			sb, ob := unpack(e.pos)
			a, errA = h.wal.ReadAt(sa, oa, a)
			b, errB = h.wal.ReadAt(sb, ob, b)
			if errA == nil && errB == nil && bytes.Equal(a, b) {
				dup = true
				break
			}
		}
		if dup {
			seg, _ := unpack(e.pos)
			h.segs[seg].live -= int64(e.size)
			continue
		}
		out = append(out, e)
	}
	clear(t.ents[len(out):])
	t.ents = out
}

// seg is segment id's account, created when new. h.mu is held (or h not
// yet shared).
func (h *historyLog) seg(id uint64) *histSeg {
	st := h.segs[id]
	if st == nil {
		st = &histSeg{}
		h.segs[id] = st
	}
	return st
}

// loadCuts reads the tenants' trims. A damaged file is logged and ignored:
// trimmed records may then come back until the next trim.
func (h *historyLog) loadCuts() error {
	b, err := os.ReadFile(filepath.Join(h.dir, cutsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("history log: %w", err)
	}
	if err := json.Unmarshal(b, &h.cuts); err != nil {
		h.log.Warn("history log: trims unreadable; trimmed records may show until the next trim", "err", err)
		h.cuts = map[string]histCut{}
	}
	return nil
}

// pruneCuts forgets the cuts that no segment left can hold a record of,
// and reports whether it forgot any. h.mu is held (or h not yet shared).
func (h *historyLog) pruneCuts() bool {
	ids := h.wal.Segments()
	if len(ids) == 0 {
		return false
	}
	oldest, pruned := ids[0], false
	for t, c := range h.cuts {
		if c.Seg < oldest {
			delete(h.cuts, t)
			h.dirty, pruned = true, true
		}
	}
	return pruned
}

// saveCuts writes the cuts when they changed since the last save,
// crash-safely (atomicfile: a temporary file fsynced and renamed over the
// old one, the folder fsynced), so that a saved trim holds across a power
// cut too. h.tmu is held.
func (h *historyLog) saveCuts() error {
	h.mu.Lock()
	if !h.dirty {
		h.mu.Unlock()
		return nil
	}
	b, err := json.Marshal(h.cuts)
	h.dirty = false
	h.mu.Unlock()
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(h.dir, cutsFile), b, 0o644)
	}
	if err != nil {
		h.mu.Lock()
		h.dirty = true // saved at the next trim or round
		h.mu.Unlock()
		return fmt.Errorf("history log: save trims: %w", err)
	}
	return nil
}

// append writes recs, each kept for ttl (≤ 0: until trimmed), with one
// write, and indexes them; when it returns nil they survive a crash of the
// process.
func (h *historyLog) append(recs []Record, ttl time.Duration) error {
	if len(recs) == 0 {
		return nil
	}
	var expires uint64
	if ttl > 0 {
		expires = uint64(h.opt.now().Add(ttl).Unix())
	}
	h.wmu.Lock()
	defer h.wmu.Unlock()
	buf, offs := h.buf[:0], h.off[:0]
	for i := range recs {
		r := &recs[i]
		b, err := r.marshal()
		if err != nil {
			return err
		}
		h.hdr = appendHistoryFrame(h.hdr[:0], r.Tenant, atKey(r.At), expires)
		offs = append(offs, int64(len(buf)))
		buf = wal.AppendRecord(buf, h.hdr, b)
	}
	seg, base, err := h.wal.Write(buf)
	if cap(buf) <= 4<<20 {
		h.buf = buf // a huge batch's buffer is not kept
	}
	h.off = offs
	if err != nil {
		return fmt.Errorf("history log: %w", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.seg(seg)
	for i := range recs {
		end := int64(len(buf))
		if i+1 < len(offs) {
			end = offs[i+1]
		}
		size := end - offs[i]
		st.size += size
		st.live += size
		t := h.tenants[recs[i].Tenant]
		if t == nil {
			t = &histTenant{}
			h.tenants[recs[i].Tenant] = t
		}
		t.insert(histEntry{at: atKey(recs[i].At), pos: position(seg, base+offs[i]), expires: clampExpiry(expires), size: uint32(size)})
	}
	return nil
}

// insert adds e in arrival order (after the entries arrived at the same
// instant).
func (t *histTenant) insert(e histEntry) {
	n := len(t.ents)
	if n == 0 || t.ents[n-1].at <= e.at {
		t.ents = append(t.ents, e)
		return
	}
	i := sort.Search(n, func(i int) bool { return t.ents[i].at > e.at })
	t.ents = slices.Insert(t.ents, i, e)
}

// count is how many records tenant's index holds.
func (h *historyLog) count(tenant string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t := h.tenants[tenant]; t != nil {
		return len(t.ents)
	}
	return 0
}

// trim drops tenant's oldest records beyond the newest keep and saves the
// tenant's cut; it reports how many it dropped. The records are gone from
// queries even when saving the cut fails (the error says so; the save is
// tried again at the next trim).
func (h *historyLog) trim(tenant string, keep int) (int, error) {
	return h.trimAll([]string{tenant}, keep)
}

// trimAll is trim for each of tenants, with one save of the cuts for all
// of them (a save is two fsyncs: once per round, not once per tenant).
func (h *historyLog) trimAll(tenants []string, keep int) (int, error) {
	keep = max(keep, 0)
	h.tmu.Lock()
	defer h.tmu.Unlock()
	n := 0
	for _, t := range tenants {
		n += h.drop(t, keep)
	}
	return n, h.saveCuts()
}

// drop drops tenant's oldest records beyond the newest keep from the index
// and moves its cut (saveCuts saves it); h.tmu is held.
func (h *historyLog) drop(tenant string, keep int) int {
	h.mu.Lock()
	t := h.tenants[tenant]
	drop := 0
	if t != nil && len(t.ents) > keep {
		drop = len(t.ents) - keep
		c := h.cuts[tenant]
		for _, e := range t.ents[:drop] {
			seg, _ := unpack(e.pos)
			h.segs[seg].live -= int64(e.size)
			c.Seg = max(c.Seg, seg)
		}
		c.At = max(c.At, t.ents[drop-1].at)
		if _, ok := h.cuts[tenant]; !ok || h.cuts[tenant] != c {
			h.cuts[tenant], h.dirty = c, true
		}
		if keep == 0 {
			delete(h.tenants, tenant)
		} else {
			n := copy(t.ents, t.ents[drop:])
			clear(t.ents[n:])
			t.ents = t.ents[:n]
			if cap(t.ents) > 1024 && cap(t.ents) > 4*n {
				t.ents = slices.Clip(slices.Clone(t.ents))
			}
		}
	}
	h.mu.Unlock()
	return drop
}

// query returns the records of tenant (every tenant when empty) that
// arrived at or after since and expire after now, oldest first within a
// tenant; with limit > 0, each tenant's newest limit of them.
func (h *historyLog) query(tenant string, since time.Time, limit int) ([]Record, error) {
	type pick struct {
		pos uint64
		t   string
	}
	from, now := atKey(since), uint32(min(h.opt.now().Unix(), math.MaxUint32))
	h.rmu.RLock()
	defer h.rmu.RUnlock()
	var picks []pick
	h.mu.Lock()
	names := []string{tenant}
	if tenant == "" {
		names = slices.Sorted(maps.Keys(h.tenants))
	}
	for _, name := range names {
		t := h.tenants[name]
		if t == nil {
			continue
		}
		start := len(picks)
		for i := len(t.ents) - 1; i >= 0; i-- {
			e := t.ents[i]
			if e.at < from || (limit > 0 && len(picks)-start >= limit) {
				break
			}
			if e.expires != 0 && e.expires <= now {
				continue
			}
			picks = append(picks, pick{e.pos, name})
		}
		slices.Reverse(picks[start:])
	}
	h.mu.Unlock()
	out := make([]Record, 0, len(picks))
	var buf []byte
	for _, p := range picks {
		seg, off := unpack(p.pos)
		body, err := h.wal.ReadAt(seg, off, buf)
		buf = body[:0]
		if err != nil {
			return out, fmt.Errorf("history log: tenant %s: %w", p.t, err)
		}
		_, _, _, rec, err := splitHistoryFrame(body)
		if err != nil {
			return out, fmt.Errorf("history log: tenant %s at %016x/%d: %w", p.t, seg, off, err)
		}
		var r Record
		if err := unmarshalRecord(rec, &r); err != nil {
			return out, fmt.Errorf("history log: tenant %s at %016x/%d: %w", p.t, seg, off, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// records is how many records the index holds.
func (h *historyLog) records() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, t := range h.tenants {
		n += len(t.ents)
	}
	return n
}

// start runs the upkeep in the background until close.
func (h *historyLog) start(room func() error) {
	if h.opt.maintainEvery < 0 {
		return
	}
	h.started = true
	go func() {
		defer close(h.stopped)
		t := time.NewTicker(h.opt.maintainEvery)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
			h.maintain(room() == nil)
		}
	}()
}

// maintain drops expired entries, copies the live records of segments
// less than half live forward when room is set (the data folder has room),
// deletes the segments that hold no live record and forgets cuts no
// segment needs. It returns the segments it deleted.
func (h *historyLog) maintain(room bool) []uint64 {
	now := uint32(min(h.opt.now().Unix(), math.MaxUint32))
	h.mu.Lock()
	for name, t := range h.tenants {
		i := 0
		for i < len(t.ents) && t.ents[i].expires != 0 && t.ents[i].expires <= now {
			seg, _ := unpack(t.ents[i].pos)
			h.segs[seg].live -= int64(t.ents[i].size)
			i++
		}
		if i == len(t.ents) {
			delete(h.tenants, name)
		} else if i > 0 {
			n := copy(t.ents, t.ents[i:])
			clear(t.ents[n:])
			t.ents = t.ents[:n]
		}
	}
	h.mu.Unlock()
	active := h.wal.Active()
	var dead []uint64
	type sparse struct {
		id         uint64
		live, size int64
	}
	var thin []sparse
	h.mu.Lock()
	for _, id := range h.wal.Segments() {
		st := h.segs[id]
		switch {
		case id == active:
		case st == nil || st.live <= 0:
			dead = append(dead, id)
		case 2*st.live < st.size:
			thin = append(thin, sparse{id, st.live, st.size})
		}
	}
	h.mu.Unlock()
	if room && len(thin) > 0 {
		slices.SortFunc(thin, func(a, b sparse) int { return cmpInt(a.live*b.size, b.live*a.size) }) // the least live first
		var ids []uint64
		budget := int64(0)
		for _, s := range thin {
			if budget > 0 && budget+s.live > compactPerRound {
				break
			}
			budget += s.live
			ids = append(ids, s.id)
		}
		moved, err := h.compact(ids)
		if err != nil {
			h.log.Warn("history log: copy live records forward", "err", err)
		}
		dead = append(dead, moved...)
	}
	if len(dead) > 0 {
		h.rmu.Lock()
		for _, id := range dead {
			if err := h.wal.Drop(id); err != nil {
				h.log.Warn("history log: delete segment", "segment", id, "err", err)
				continue
			}
			h.mu.Lock()
			delete(h.segs, id)
			h.mu.Unlock()
		}
		h.rmu.Unlock()
	}
	h.tmu.Lock()
	h.mu.Lock()
	h.pruneCuts()
	h.mu.Unlock()
	if err := h.saveCuts(); err != nil {
		h.log.Warn("history log: forget trims", "err", err)
	}
	h.tmu.Unlock()
	return dead
}

// compact copies the live records of segments ids to new segments of their
// own and points the index at the copies; it returns the segments whose
// records were all copied (now dead), for the caller to delete.
func (h *historyLog) compact(ids []uint64) ([]uint64, error) {
	type move struct {
		tenant string
		e      histEntry
	}
	in := map[uint64]bool{}
	for _, id := range ids {
		in[id] = true
	}
	h.wmu.Lock()
	defer h.wmu.Unlock()
	var moves []move
	h.mu.Lock()
	for name, t := range h.tenants {
		for _, e := range t.ents {
			if seg, _ := unpack(e.pos); in[seg] {
				moves = append(moves, move{name, e})
			}
		}
	}
	h.mu.Unlock()
	if len(moves) == 0 {
		return ids, nil
	}
	slices.SortFunc(moves, func(a, b move) int { return cmpInt(int64(a.e.pos), int64(b.e.pos)) })
	// The copies go to segments of their own: records that outlived one
	// segment are likely to outlive the next.
	if err := h.wal.Roll(); err != nil {
		return nil, err
	}
	var buf, body []byte
	var offs []int64
	var written []uint64 // segments holding copies
	flush := func(ms []move) error {
		if len(ms) == 0 {
			return nil
		}
		seg, base, err := h.wal.Write(buf)
		if err != nil {
			return err
		}
		if !slices.Contains(written, seg) {
			written = append(written, seg)
		}
		h.mu.Lock()
		st := h.seg(seg)
		for i, m := range ms {
			st.size += int64(m.e.size)
			found := false
			if t := h.tenants[m.tenant]; t != nil {
				k := sort.Search(len(t.ents), func(k int) bool { return t.ents[k].at >= m.e.at })
				for ; k < len(t.ents) && t.ents[k].at == m.e.at; k++ {
					if t.ents[k].pos == m.e.pos {
						old, _ := unpack(m.e.pos)
						h.segs[old].live -= int64(m.e.size)
						t.ents[k].pos = position(seg, base+offs[i])
						st.live += int64(m.e.size)
						found = true
						break
					}
				}
			}
			// Trimmed meanwhile: the copy is dead, and the tenant's cut
			// must outlive its segment.
			if c, ok := h.cuts[m.tenant]; !found && ok && c.At >= m.e.at && c.Seg < seg {
				c.Seg = seg
				h.cuts[m.tenant], h.dirty = c, true
			}
		}
		h.mu.Unlock()
		buf, offs = buf[:0], offs[:0]
		return nil
	}
	start := 0
	for i, m := range moves {
		seg, off := unpack(m.e.pos)
		var err error
		if body, err = h.wal.ReadAt(seg, off, body); err != nil {
			return nil, fmt.Errorf("read %016x at %d: %w", seg, off, err)
		}
		offs = append(offs, int64(len(buf)))
		buf = wal.AppendRecord(buf, body)
		if len(buf) >= 1<<20 || int64(len(buf)) >= h.opt.segmentSize/2 {
			if err := flush(moves[start : i+1]); err != nil {
				return nil, err
			}
			start = i + 1
		}
	}
	if err := flush(moves[start:]); err != nil {
		return nil, err
	}
	// The originals are deleted next: the copies must not be only in the
	// page cache then, or a power cut would lose records that had lived
	// through many (the log otherwise never syncs, and loses at most what
	// the kernel had not written back).
	if err := h.wal.Sync(written...); err != nil {
		return nil, fmt.Errorf("sync the copies: %w", err)
	}
	if err := h.wal.Roll(); err != nil {
		return nil, err
	}
	return ids, nil
}

// close stops the upkeep and closes the log; its segments stay for the
// next open.
func (h *historyLog) close() error {
	if h.started {
		close(h.stop)
		<-h.stopped
	}
	return h.wal.Close()
}
