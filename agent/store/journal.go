package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/delen-edge/delen/internal/wal"
)

// journal is where the dedupe records live, and the only place: a log of
// segment files of its own (internal/wal, written with write(2), read with
// pread(2), never memory-mapped) and a compact in-memory index. A group of
// records is made durable with one write; a lookup is a map lookup, and a
// pread of the record when the key is there; a segment file is deleted
// once every record in it has expired. Badger never sees a dedupe record
// (only those an older version put there, read until they expire), nor a
// history record (historylog.go), so its memory-mapped value log and
// tables hold settings and profiles, and what an older version left.
//
// The index maps a 64-bit hash of the key (hash/maphash, seeded per
// process, so a tenant cannot choose ids that collide) to the record's
// position, segment << 32 | offset: 8 bytes of key and 8 of value, where a
// map of keys and values took a few hundred bytes a record. Two live keys
// with one hash are told apart by the key stored in the record: the
// second is kept in a small map of its own (over), looked at first.
//
// A record is durable when put returns: it survives a kill -9 of the
// process, as Badger's own records do with SyncWrites off; a power cut
// can lose what the kernel had not yet written back (docs/reliability.md).
// At open the log is read through once to rebuild the index.
type journal struct {
	log  *slog.Logger
	wal  *wal.Log
	opt  journalOptions
	seed maphash.Seed

	// wmu orders writers: a group is written and indexed before the next,
	// so the index points at a key's newest record.
	wmu  sync.Mutex
	buf  []byte  // framed records of one put
	body []byte  // one record's body
	offs []int64 // offsets of a put's records in buf
	rbuf []byte  // a record read back while indexing (under wmu)

	mu   sync.Mutex
	idx  map[uint64]uint64 // hash of key → position of its newest record
	over map[string]uint64 // key → position, for keys whose hash another live key holds
	segs []journalSeg      // segments holding records, oldest first

	stop    chan struct{}
	stopped chan struct{}
	started bool
}

// journalSeg is what the journal knows of one segment: when its last
// record expires, and when its first was written.
type journalSeg struct {
	id      uint64
	expires uint64 // the latest expiry of its records (Unix seconds)
	forever bool   // a record in it never expires
	first   time.Time
}

// journalRec is one record: its key, value and expiry.
type journalRec struct {
	key     string
	val     []byte
	expires uint64 // Unix seconds, as Badger's ExpiresAt; 0 never
}

const (
	// journalDir is the journal's folder inside the store's.
	journalDir = "dedupe-journal"
	// dropEvery is how often segments whose records have all expired are
	// deleted.
	dropEvery = time.Second
	// rollEvery: an active segment whose first record is this old is
	// closed, so that a quiet agent's records go soon after they expire
	// rather than when 8 MiB have gathered behind them.
	rollEvery = time.Minute
	// dropChunk is how many index entries a drop removes per hold of
	// j.mu, so that lookups never wait long behind it.
	dropChunk = 1024

	// journalDedupe is the kind of a dedupe record's body: kind, expiry
	// (uint64 little endian, Unix seconds), the key's length (uvarint),
	// the key, the value.
	journalDedupe = 1
)

// journalOptions are what tests change.
type journalOptions struct {
	segmentSize int64         // default wal.DefaultSegmentSize
	dropEvery   time.Duration // default dropEvery
	rollEvery   time.Duration // default rollEvery
	onDrop      func(segs int)
	// now is the clock expiry is judged by (default time.Now).
	now func() time.Time
	// hash replaces the seeded hash of keys (tests make keys collide).
	hash func(key []byte) uint64
}

// sum is key's hash in the index.
func (j *journal) sum(key []byte) uint64 {
	if j.opt.hash != nil {
		return j.opt.hash(key)
	}
	return maphash.Bytes(j.seed, key)
}

// sumString is sum for a key held as a string.
func (j *journal) sumString(key string) uint64 {
	if j.opt.hash != nil {
		return j.opt.hash([]byte(key))
	}
	return maphash.String(j.seed, key)
}

// position packs a record's segment and offset.
func position(seg uint64, off int64) uint64 { return seg<<32 | uint64(off) }

// unpack splits a position.
func unpack(pos uint64) (seg uint64, off int64) { return pos >> 32, int64(pos & (1<<32 - 1)) }

// openJournal opens the journal in the store folder dir and rebuilds its
// index from the records that have not expired. Expired segments are
// deleted in the background once start is called.
func openJournal(dir string, log *slog.Logger, opt journalOptions) (*journal, error) {
	if opt.dropEvery <= 0 {
		opt.dropEvery = dropEvery
	}
	if opt.rollEvery <= 0 {
		opt.rollEvery = rollEvery
	}
	if opt.now == nil {
		opt.now = time.Now
	}
	if opt.segmentSize <= 0 {
		opt.segmentSize = wal.DefaultSegmentSize
	}
	if opt.segmentSize >= 1<<32 {
		return nil, errors.New("dedupe journal: segments must be under 4 GiB")
	}
	j := &journal{log: log, opt: opt, seed: maphash.MakeSeed(), idx: map[uint64]uint64{}, over: map[string]uint64{},
		stop: make(chan struct{}), stopped: make(chan struct{})}
	now := uint64(opt.now().Unix())
	replayed, live := 0, 0
	// Hashes met twice during the replay: resolved once the log is open
	// and its records can be read back.
	var again map[uint64][]uint64
	l, err := wal.Open(filepath.Join(dir, journalDir), wal.Options{Logger: log, SegmentSize: opt.segmentSize}, func(seg uint64, off int64, body []byte) error {
		key, expires, _, err := splitJournalRecord(body)
		if err != nil {
			// The checksum held: a record of a kind this version does not
			// know. Skipped, not fatal.
			log.Warn("dedupe journal: record skipped", "err", err)
			return nil
		}
		replayed++
		j.noteSegment(seg, expires, opt.now())
		if expires != 0 && expires <= now {
			return nil
		}
		live++
		h := j.sum(key)
		pos := position(seg, off)
		if old, ok := j.idx[h]; ok {
			if again == nil {
				again = map[uint64][]uint64{}
			}
			if len(again[h]) == 0 {
				again[h] = append(again[h], old)
			}
			again[h] = append(again[h], pos)
		}
		j.idx[h] = pos
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dedupe journal: %w", err)
	}
	j.wal = l
	for h, ps := range again {
		j.resolve(h, ps, now)
	}
	if replayed > 0 {
		log.Info("dedupe journal replayed", "records", replayed, "unexpired", live, "segments", len(j.segs))
	}
	return j, nil
}

// resolve indexes the records at ps (oldest first), whose keys share hash
// h: each key's newest record, the last written one in idx and the others
// in over. Used at open, before the journal is shared.
func (j *journal) resolve(h uint64, ps []uint64, now uint64) {
	type rec struct {
		key string
		pos uint64
	}
	var newest []rec // a key's newest position, in order of last write
	for _, pos := range ps {
		key, expires, err := j.readKey(pos)
		if err != nil || (expires != 0 && expires <= now) {
			continue
		}
		for i := range newest {
			if newest[i].key == key {
				newest = append(newest[:i], newest[i+1:]...)
				break
			}
		}
		newest = append(newest, rec{key, pos})
	}
	delete(j.idx, h)
	for i, r := range newest {
		if i == len(newest)-1 {
			j.idx[h] = r.pos
		} else {
			j.over[r.key] = r.pos
		}
	}
}

// noteSegment records that segment seg holds a record expiring at expires
// (0: never), the first one written at first when seg is new. j.mu is
// held (or j not yet shared).
func (j *journal) noteSegment(seg, expires uint64, first time.Time) {
	if n := len(j.segs); n == 0 || j.segs[n-1].id != seg {
		j.segs = append(j.segs, journalSeg{id: seg, first: first})
	}
	s := &j.segs[len(j.segs)-1]
	if expires == 0 {
		s.forever = true
	}
	s.expires = max(s.expires, expires)
}

// start deletes expired segments in the background until close.
func (j *journal) start() {
	j.started = true
	go j.run()
}

// encodeJournalRecord appends r's body to buf.
func encodeJournalRecord(buf []byte, r *journalRec) []byte {
	buf = append(buf, journalDedupe)
	buf = binary.LittleEndian.AppendUint64(buf, r.expires)
	buf = binary.AppendUvarint(buf, uint64(len(r.key)))
	buf = append(buf, r.key...)
	return append(buf, r.val...)
}

// splitJournalRecord parses a record's body into its key, expiry and
// value, which alias b.
func splitJournalRecord(b []byte) (key []byte, expires uint64, val []byte, err error) {
	if len(b) < 1+8+1 || b[0] != journalDedupe {
		return nil, 0, nil, errors.New("dedupe journal: unknown record")
	}
	expires = binary.LittleEndian.Uint64(b[1:9])
	n, k := binary.Uvarint(b[9:])
	if k <= 0 || n == 0 || n > uint64(len(b)-9-k) {
		return nil, 0, nil, errors.New("dedupe journal: truncated key")
	}
	off := 9 + k
	return b[off : off+int(n)], expires, b[off+int(n):], nil
}

// decodeJournalRecord parses a record's body; the key and value are
// copied.
func decodeJournalRecord(b []byte) (*journalRec, error) {
	key, expires, val, err := splitJournalRecord(b)
	if err != nil {
		return nil, err
	}
	return &journalRec{key: string(key), expires: expires, val: append([]byte(nil), val...)}, nil
}

// readKey reads back the key and expiry of the record at pos. j.wmu is
// held, or j is not yet shared.
func (j *journal) readKey(pos uint64) (string, uint64, error) {
	seg, off := unpack(pos)
	body, err := j.wal.ReadAt(seg, off, j.rbuf)
	j.rbuf = body[:0]
	if err != nil {
		return "", 0, err
	}
	key, expires, _, err := splitJournalRecord(body)
	return string(key), expires, err
}

// put writes recs to the journal with one write and makes them visible to
// get; when it returns nil they survive a crash of the process.
func (j *journal) put(recs []*journalRec) error {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	buf, offs := j.buf[:0], j.offs[:0]
	for _, r := range recs {
		j.body = encodeJournalRecord(j.body[:0], r)
		offs = append(offs, int64(len(buf)))
		buf = wal.AppendRecord(buf, j.body)
	}
	seg, base, err := j.wal.Write(buf)
	if cap(buf) <= 1<<20 {
		j.buf = buf // a huge group's buffer is not kept
	}
	j.offs = offs
	if err != nil {
		return fmt.Errorf("dedupe journal: %w", err)
	}
	now := j.opt.now()
	j.mu.Lock()
	var check []int // records whose hash the index holds already
	for i, r := range recs {
		j.noteSegment(seg, r.expires, now)
		pos := position(seg, base+offs[i])
		if _, ok := j.over[r.key]; ok {
			j.over[r.key] = pos
			continue
		}
		h := j.sumString(r.key)
		if _, ok := j.idx[h]; ok {
			check = append(check, i)
			continue
		}
		j.idx[h] = pos
	}
	j.mu.Unlock()
	// The same key again, or (rarely) another key with the same hash: the
	// record the index holds tells which.
	for _, i := range check {
		r := recs[i]
		h := j.sumString(r.key)
		pos := position(seg, base+offs[i])
		j.mu.Lock()
		old, ok := j.idx[h]
		j.mu.Unlock()
		var key string
		var expires uint64
		if ok {
			key, expires, err = j.readKey(old)
		}
		j.mu.Lock()
		if !ok || err != nil || key == r.key || (expires != 0 && expires <= uint64(now.Unix())) {
			j.idx[h] = pos // a segment dropped meanwhile: its records had expired
		} else {
			j.over[r.key] = pos
		}
		j.mu.Unlock()
	}
	return nil
}

// get returns the value of key's newest record, if it has not expired by
// now (Unix seconds).
func (j *journal) get(key []byte, now uint64) ([]byte, bool, error) {
	h := j.sum(key)
	j.mu.Lock()
	pos, ok := j.over[string(key)]
	if !ok {
		pos, ok = j.idx[h]
	}
	j.mu.Unlock()
	if !ok {
		return nil, false, nil
	}
	seg, off := unpack(pos)
	body, err := j.wal.ReadAt(seg, off, nil)
	if errors.Is(err, wal.ErrNoSegment) {
		return nil, false, nil // dropped meanwhile: it had expired
	}
	if err != nil {
		return nil, false, fmt.Errorf("dedupe journal: %w", err)
	}
	k, expires, val, err := splitJournalRecord(body)
	if err != nil {
		return nil, false, fmt.Errorf("dedupe journal: %w", err)
	}
	if string(k) != string(key) || (expires != 0 && expires <= now) {
		return nil, false, nil // another key with the same hash, or expired
	}
	return val, true, nil
}

// records is how many records the index holds (expired ones included
// until their segment is deleted).
func (j *journal) records() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.idx) + len(j.over)
}

// run deletes expired segments every dropEvery until close.
func (j *journal) run() {
	defer close(j.stopped)
	t := time.NewTicker(j.opt.dropEvery)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
		}
		j.maintain()
	}
}

// maintain closes an active segment older than rollEvery and deletes the
// oldest segments whose records have all expired, their index entries
// first.
func (j *journal) maintain() {
	now := j.opt.now()
	// Under wmu: no record is written to the active segment between the
	// decision and the roll.
	j.wmu.Lock()
	active := j.wal.Active()
	j.mu.Lock()
	n := len(j.segs)
	roll := n > 0 && j.segs[n-1].id == active && now.Sub(j.segs[n-1].first) >= j.opt.rollEvery
	j.mu.Unlock()
	if roll {
		if err := j.wal.Roll(); err != nil {
			j.log.Warn("dedupe journal: roll", "err", err)
		}
	}
	j.wmu.Unlock()
	// Segments below the active one take no more records: what segs says
	// of them is final.
	active = j.wal.Active()
	var gone []uint64
	j.mu.Lock()
	for _, s := range j.segs {
		if s.id >= active || s.forever || s.expires > uint64(now.Unix()) {
			break
		}
		gone = append(gone, s.id)
	}
	j.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	for _, id := range gone {
		if err := j.unindex(id); err != nil {
			// Deleted all the same: an entry left pointing into it finds no
			// segment (a miss, as its record had expired), and a new record
			// with its hash takes its place.
			j.log.Warn("dedupe journal: read an expired segment before deleting it", "segment", id, "err", err)
		}
		j.mu.Lock()
		j.segs = j.segs[1:]
		j.mu.Unlock()
		if err := j.wal.DropBefore(id + 1); err != nil {
			j.log.Warn("dedupe journal: delete expired segments", "err", err)
		}
	}
	if j.opt.onDrop != nil {
		j.opt.onDrop(len(gone))
	}
}

// unindex removes from the index the entries that point into segment id,
// reading the segment back for their keys.
func (j *journal) unindex(id uint64) error {
	type entry struct {
		h   uint64
		pos uint64
		key string // only when over holds keys
	}
	batch := make([]entry, 0, dropChunk)
	flush := func() {
		j.mu.Lock()
		for _, e := range batch {
			if j.idx[e.h] == e.pos {
				delete(j.idx, e.h)
			}
			if e.key != "" && j.over[e.key] == e.pos {
				delete(j.over, e.key)
			}
		}
		j.mu.Unlock()
		batch = batch[:0]
	}
	j.mu.Lock()
	withOver := len(j.over) > 0
	j.mu.Unlock()
	err := j.wal.Scan(id, func(off int64, body []byte) error {
		key, _, _, err := splitJournalRecord(body)
		if err != nil {
			return nil
		}
		e := entry{h: j.sum(key), pos: position(id, off)}
		if withOver {
			e.key = string(key)
		}
		if batch = append(batch, e); len(batch) == dropChunk {
			flush()
		}
		return nil
	})
	flush()
	return err
}

// close stops the background work and closes the log; its segments stay
// for the next open.
func (j *journal) close() error {
	if j.started {
		close(j.stop)
		<-j.stopped
	}
	return j.wal.Close()
}
