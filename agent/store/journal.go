package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/delen-edge/delen/internal/wal"
	badger "github.com/dgraph-io/badger/v4"
)

// journal makes a group of dedupe records durable with one write(2) to a
// log of its own (internal/wal) instead of a synchronous Badger commit on
// the result's path, and applies them to Badger in the background, many
// at a time. Until a record is in Badger, lookups find it in the journal's
// index; segment files are deleted once everything they hold is applied,
// and at open the log is replayed into Badger before the store is handed
// out (so before the agent takes a request).
//
// A record is durable when put returns: it survives a kill -9 of the
// process, as Badger's own records do with SyncWrites off; a power cut
// can lose what the kernel had not yet written back (docs/reliability.md).
type journal struct {
	db  *badger.DB
	log *slog.Logger
	wal *wal.Log
	// room is the store's free-space check, consulted before each apply.
	room func() error
	opt  journalOptions

	// wmu orders writers: a group is written and indexed before the next
	// (and before apply may roll the log and drop segments).
	wmu  sync.Mutex
	buf  []byte // framed records of one put
	body []byte // one record's body

	mu      sync.Mutex
	pending map[string]*journalRec // key → its newest record not yet in Badger
	queue   []*journalRec          // records not yet in Badger, in write order
	bytes   int                    // their keys' and values' size
	seq     uint64
	failing bool // the last apply failed (logged once per streak)

	started bool
	kick    chan struct{} // a token when the queue went from empty to not
	full    chan struct{} // a token when the queue reached applyBatch
	stop    chan struct{}
	stopped chan struct{}
}

// journalRec is one record: its Badger key, value and expiry.
type journalRec struct {
	key     string
	val     []byte
	expires uint64 // Unix seconds, as Badger's ExpiresAt; 0 never
	seq     uint64
	seg     uint64 // the wal segment holding it
}

const (
	// journalDir is the journal's folder inside the store's.
	journalDir = "dedupe-journal"
	// applyEvery is how long a record waits in the journal before it is
	// applied to Badger with the others that gathered meanwhile, unless
	// applyBatch of them are waiting first.
	applyEvery = 100 * time.Millisecond
	applyBatch = 2048
	// maxJournalBytes bounds what waits in memory for Badger: past it
	// (Badger failing), put refuses and the caller keeps its records as it
	// does when the store refuses them.
	maxJournalBytes = 32 << 20
	// rollAt: once everything is applied, an active segment of this size
	// is closed and deleted, so that a restart replays little.
	rollAt = 1 << 20

	// journalDedupe is the kind of a dedupe record's body: kind, expiry
	// (uint64 little endian, Unix seconds), the key's length (uvarint),
	// the key, the value.
	journalDedupe = 1
)

// journalOptions are what tests change.
type journalOptions struct {
	applyEvery  time.Duration // default applyEvery
	segmentSize int64         // default wal.DefaultSegmentSize
	onApply     func(n int)   // called after n records were applied
}

// ErrJournalBehind is put's error when more than maxJournalBytes of
// records wait for Badger.
var ErrJournalBehind = errors.New("dedupe journal: too many records waiting for the store")

// openJournal opens the journal in the store folder dir and replays it
// into db; a record that cannot be applied now stays in the journal's
// index and is applied later. Records are applied in the background once
// start is called.
func openJournal(dir string, db *badger.DB, log *slog.Logger, room func() error, opt journalOptions) (*journal, error) {
	if opt.applyEvery <= 0 {
		opt.applyEvery = applyEvery
	}
	j := &journal{db: db, log: log, room: room, opt: opt, pending: map[string]*journalRec{},
		kick: make(chan struct{}, 1), full: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	now := uint64(time.Now().Unix())
	replayed := 0
	l, err := wal.Open(filepath.Join(dir, journalDir), wal.Options{Logger: log, SegmentSize: opt.segmentSize}, func(seg uint64, body []byte) error {
		r, err := decodeJournalRecord(body)
		if err != nil {
			// The checksum held: a record of a kind this version does not
			// know. Skipped, not fatal.
			log.Warn("dedupe journal: record skipped", "err", err)
			return nil
		}
		replayed++
		if r.expires != 0 && r.expires <= now {
			return nil
		}
		r.seg = seg
		j.enqueue(r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dedupe journal: %w", err)
	}
	j.wal = l
	if replayed > 0 {
		log.Info("dedupe journal replayed", "records", replayed, "unexpired", len(j.queue))
	}
	j.apply()
	return j, nil
}

// start applies records in the background until close.
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

// decodeJournalRecord parses a record's body; the value is copied.
func decodeJournalRecord(b []byte) (*journalRec, error) {
	if len(b) < 1+8+1 || b[0] != journalDedupe {
		return nil, errors.New("dedupe journal: unknown record")
	}
	r := &journalRec{expires: binary.LittleEndian.Uint64(b[1:9])}
	n, k := binary.Uvarint(b[9:])
	if k <= 0 || n == 0 || n > uint64(len(b)-9-k) {
		return nil, errors.New("dedupe journal: truncated key")
	}
	off := 9 + k
	r.key = string(b[off : off+int(n)])
	r.val = append([]byte(nil), b[off+int(n):]...)
	return r, nil
}

// enqueue makes r the newest record of its key. j.mu is held (or j not
// yet shared).
func (j *journal) enqueue(r *journalRec) {
	j.seq++
	r.seq = j.seq
	j.pending[r.key] = r
	j.queue = append(j.queue, r)
	j.bytes += len(r.key) + len(r.val)
}

// put writes recs to the journal with one write and makes them visible to
// get; when it returns nil they survive a crash of the process.
func (j *journal) put(recs []*journalRec) error {
	j.wmu.Lock()
	defer j.wmu.Unlock()
	j.mu.Lock()
	behind := j.bytes > maxJournalBytes
	j.mu.Unlock()
	if behind {
		return ErrJournalBehind
	}
	buf := j.buf[:0]
	for _, r := range recs {
		j.body = encodeJournalRecord(j.body[:0], r)
		buf = wal.AppendRecord(buf, j.body)
	}
	seg, err := j.wal.Write(buf)
	if cap(buf) <= 1<<20 {
		j.buf = buf // a huge group's buffer is not kept
	}
	if err != nil {
		return fmt.Errorf("dedupe journal: %w", err)
	}
	j.mu.Lock()
	was := len(j.queue)
	for _, r := range recs {
		r.seg = seg
		j.enqueue(r)
	}
	n := len(j.queue)
	j.mu.Unlock()
	if was == 0 {
		signal(j.kick)
	}
	if n >= applyBatch {
		signal(j.full)
	}
	return nil
}

// signal leaves a token in c unless one is there.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// get returns the value of key's record not yet in Badger, if there is
// one that has not expired by now (Unix seconds).
func (j *journal) get(key []byte, now uint64) ([]byte, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r, ok := j.pending[string(key)]
	if !ok || (r.expires != 0 && r.expires <= now) {
		return nil, false
	}
	return r.val, true
}

// run applies what gathers, every applyEvery or applyBatch records, until
// close.
func (j *journal) run() {
	defer close(j.stopped)
	t := time.NewTimer(j.opt.applyEvery)
	t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-j.kick:
		case <-j.full:
		}
		t.Reset(j.opt.applyEvery)
		select {
		case <-j.stop:
			t.Stop()
			return
		case <-t.C:
		case <-j.full:
			t.Stop()
		}
		if !j.apply() {
			// Try again later; put refuses once too much waits.
			signal(j.kick)
		}
	}
}

// apply writes the queued records to Badger in one transaction (more when
// one cannot hold them), drops them from the index, and deletes the
// segments that hold nothing left to apply. It reports false when Badger
// refused the records; they stay queued.
func (j *journal) apply() bool {
	j.mu.Lock()
	q := j.queue
	j.queue = nil
	j.mu.Unlock()
	var err error
	if len(q) > 0 {
		if err = j.room(); err == nil {
			err = setRecords(j.db, q)
		}
	}
	drop, ok := j.applied(q, err)
	if !ok {
		return false
	}
	// Outside the locks: deleting a file the kernel still caches takes
	// a while, and later records only go to segments from drop on.
	j.dropBefore(drop)
	if j.opt.onApply != nil && len(q) > 0 {
		j.opt.onApply(len(q))
	}
	return true
}

// applied settles an apply of q that ended with err: on success q leaves
// the index, and it returns the segment below which nothing is left to
// apply; on failure q is queued again, ahead of what came meanwhile.
func (j *journal) applied(q []*journalRec, err error) (drop uint64, ok bool) {
	j.wmu.Lock() // no group between its write and its index (see put)
	defer j.wmu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if err != nil {
		j.queue = append(q, j.queue...)
		if !j.failing {
			j.log.Warn("dedupe journal: records not applied to the store yet; lookups still find them, and they are kept until applied",
				"records", len(j.queue), "err", err)
		}
		j.failing = true
		return 0, false
	}
	if j.failing {
		j.log.Info("dedupe journal: records applied to the store again")
		j.failing = false
	}
	for _, r := range q {
		j.bytes -= len(r.key) + len(r.val)
		if j.pending[r.key] == r {
			delete(j.pending, r.key)
		}
	}
	if len(j.queue) > 0 {
		return j.queue[0].seg, true
	}
	if j.wal.Stats().Bytes >= rollAt {
		if err := j.wal.Roll(); err != nil {
			j.log.Warn("dedupe journal: roll", "err", err)
		}
	}
	return j.wal.Active(), true
}

// waiting is how many records wait for Badger.
func (j *journal) waiting() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.pending)
}

// dropBefore deletes the segments below id.
func (j *journal) dropBefore(id uint64) {
	if err := j.wal.DropBefore(id); err != nil {
		j.log.Warn("dedupe journal: delete applied segments", "err", err)
	}
}

// setRecords sets q's records in db, in one transaction when it holds
// them; those expired by now are left out.
func setRecords(db *badger.DB, q []*journalRec) error {
	now := uint64(time.Now().Unix())
	txn := db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, r := range q {
		if r.expires != 0 && r.expires <= now {
			continue
		}
		e := badger.NewEntry([]byte(r.key), r.val)
		e.ExpiresAt = r.expires
		err := txn.SetEntry(e)
		if errors.Is(err, badger.ErrTxnTooBig) {
			// More than one transaction holds: commit what it has.
			if err = txn.Commit(); err != nil {
				return err
			}
			txn = db.NewTransaction(true)
			err = txn.SetEntry(e)
		}
		if err != nil {
			return err
		}
	}
	return txn.Commit()
}

// close applies what is left and closes the log: with everything applied
// its segments are deleted, else they are replayed at the next open.
func (j *journal) close() error {
	if j.started {
		close(j.stop)
		<-j.stopped
	}
	var err error
	if j.apply() {
		j.wmu.Lock()
		j.mu.Lock()
		if len(j.queue) == 0 {
			if err = j.wal.Roll(); err == nil {
				err = j.wal.DropBefore(j.wal.Active())
			}
		}
		j.mu.Unlock()
		j.wmu.Unlock()
	}
	return errors.Join(err, j.wal.Close())
}
