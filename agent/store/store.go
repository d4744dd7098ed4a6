// Package store persists the agent's state: tenant settings and model
// profiles in Badger, the history of served requests in a log of its own
// (historylog.go) and the dedupe table in the dedupe journal (journal.go);
// an in-memory store keeps all of it in Badger. Keys follow
// docs/protocol.md ("Storage"):
//
//	tenant/<tenant>                       settings
//	profile/<model>@<version>/<device>    profile
//	validation/<model>@<version>/<device> its per-sample validation data
//	hist/<tenant>/<unix-µs, big-endian>/<id>
//	dedupe/<tenant>/<id>
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/delen-edge/delen/models/profile"
	badger "github.com/dgraph-io/badger/v4"
)

// ErrNotFound is returned when a key has no value.
var ErrNotFound = errors.New("not found")

// ErrInUse is Open's error when another process has the store open:
// Badger lets one process at a time open a store.
var ErrInUse = errors.New("in use by another process (a running delen serve?)")

// ErrNoSpace is returned by writes when the data folder's file system has
// less free space than minFree: Badger writes its log through memory-mapped
// files, and a write into a mapped page that the file system cannot back
// kills the process (SIGBUS), so the store refuses to write instead.
var ErrNoSpace = errors.New("data folder is full")

// minFree is the free space below which writes are refused: four memtables'
// worth, what Badger may map ahead of writing.
const minFree = 4 * memTableSize

const memTableSize = 8 << 20

// Options tunes the store. The zero value suits a small edge device.
type Options struct {
	// Logger receives Badger's warnings and errors (default: discarded).
	Logger *slog.Logger
	// InMemory keeps everything in memory (tests, or a read-only disk).
	InMemory bool

	journal journalOptions // tests' settings
	history historyOptions
}

// Store is the agent's Badger database. It is safe for concurrent use.
type Store struct {
	db  *badger.DB
	log *slog.Logger
	dir string // "" for an in-memory store
	// jnl holds the dedupe records (nil for an in-memory store, which
	// keeps them in Badger).
	jnl *journal
	// oldDedupes: until this time (Unix seconds; 0 none, MaxUint64 no
	// end) Badger holds dedupe records an older version wrote, and
	// lookups that miss the journal look there too.
	oldDedupes atomic.Uint64
	// hist holds the history records (nil for an in-memory store, which
	// keeps them in Badger).
	hist *historyLog
	// oldHistory: until this time (as oldDedupes) Badger holds history
	// records an older version wrote; queries and trims take them in.
	oldHistory atomic.Uint64
	// valSaved is, per profile key, the validation data last written to
	// (or read from) its validation/ key: PutProfile rewrites it only
	// when a profile carries other data (live refreshes keep the pointer).
	valMu    sync.Mutex
	valSaved map[string]*profile.Validation
	// The free-space check is cached for spaceCheckEvery: statfs on every
	// write would cost a system call per request.
	spaceMu  sync.Mutex
	spaceAt  time.Time
	spaceErr error

	stopGC    chan struct{} // closed by Close
	closeOnce sync.Once
	gcDone    chan struct{} // closed when the collection has stopped
	wbDone    chan struct{} // closed when the writeback has stopped
}

const spaceCheckEvery = 100 * time.Millisecond

// Open opens (creating when needed) the store in dir.
func Open(dir string, opt Options) (*Store, error) {
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	bo := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithMemTableSize(memTableSize).
		WithValueLogFileSize(valueLogFileSize).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithNumMemtables(2).
		WithNumCompactors(2).
		WithNumLevelZeroTables(numLevelZeroTables).
		// With level 0 compacted at one table, the table a close flushes
		// would be compacted as soon as the next process opens the store:
		// a table write through a memory map that, on a data folder that
		// fills meanwhile, kills the process with SIGBUS. The close
		// compacts it instead, while the store still had room to write.
		WithCompactL0OnClose(true)
	if opt.InMemory {
		// No value log in memory: every value stays in the LSM tree (and
		// Badger refuses values over the threshold).
		bo = bo.WithInMemory(true).WithDir("").WithValueDir("")
	} else {
		// Large values (history records, when they lived in Badger; an
		// older version's still do) go to the value log, and the LSM tree
		// keeps keys and pointers: at ~2000 requests/s, compacting the
		// records themselves held hundreds of MiB in table builders.
		bo = bo.WithValueThreshold(valueThreshold)
	}
	db, err := badger.Open(bo)
	if err != nil && strings.Contains(err.Error(), "Cannot acquire directory lock") {
		// Badger formats the lock error with %v: no error to match.
		return nil, fmt.Errorf("open store %s: %w", dir, ErrInUse)
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	st := &Store{db: db, log: log, stopGC: make(chan struct{}), gcDone: make(chan struct{}), wbDone: make(chan struct{})}
	if opt.InMemory {
		close(st.gcDone)
		close(st.wbDone)
	} else {
		st.dir = dir
		// Its index is rebuilt before the store is handed out.
		if st.jnl, err = openJournal(dir, log, opt.journal); err != nil {
			db.Close()
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
		if st.hist, err = openHistoryLog(dir, log, opt.history); err != nil {
			st.jnl.close()
			db.Close()
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
		if err := errors.Join(st.findOldDedupes(), st.findOldHistory()); err != nil {
			st.hist.close()
			st.jnl.close()
			db.Close()
			return nil, fmt.Errorf("open store %s: %w", dir, err)
		}
		st.jnl.start()
		st.hist.start(st.roomToWrite)
		go st.collectValueLog()
		go writeback(dir, st.stopGC, st.wbDone)
	}
	return st, nil
}

// numLevelZeroTables is how many flushed memtables wait in level 0 before
// a compaction (Badger's default is 5). A history record's value-log space
// is counted as garbage (the discard statistics the value-log collection
// goes by) only when a compaction drops the record's deleted version; at
// 2,000 req/s a memtable of history keys and trim tombstones fills in
// ~20 s, so five of them kept trimmed history in the memory-mapped value
// log for over a minute and a half longer. Compacting after every flush
// rewrites a few 2 MiB tables (history keys grow in time order, trims
// delete the oldest). History now lives in the history log; this and
// gcEvery matter for what an older version left in Badger.
const numLevelZeroTables = 1

// valueThreshold is the value size from which Badger keeps values in the
// value log rather than in the LSM tree.
const valueThreshold = 128

// gcEvery is how often the value log is garbage-collected: trimmed and
// expired history is only reclaimed from it by a rewrite, and every byte
// of a value-log file stays in the process's resident memory (the file is
// memory-mapped) until the file goes. A round that finds no file half
// garbage costs a look at Badger's discard statistics.
const gcEvery = 10 * time.Second

// collectValueLog rewrites value-log files that are at least half garbage,
// every gcEvery, until Close.
func (s *Store) collectValueLog() {
	defer close(s.gcDone)
	tick := time.NewTicker(gcEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-tick.C:
		}
		for s.roomToWrite() == nil {
			err := s.db.RunValueLogGC(0.5)
			if err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					s.log.Warn("value log garbage collection", "err", err)
				}
				break
			}
			select {
			case <-s.stopGC:
				return
			default:
			}
		}
	}
}

// roomToWrite reports ErrNoSpace when the data folder's file system is
// nearly full (see ErrNoSpace).
func (s *Store) roomToWrite() error {
	if s.dir == "" {
		return nil
	}
	s.spaceMu.Lock()
	defer s.spaceMu.Unlock()
	if now := time.Now(); now.Sub(s.spaceAt) >= spaceCheckEvery {
		s.spaceAt, s.spaceErr = now, nil
		if free, err := freeBytes(s.dir); err == nil {
			if free < minFree {
				s.spaceErr = fmt.Errorf("%w (%s: %d MiB free, writes need %d MiB)", ErrNoSpace, s.dir, free>>20, minFree>>20)
			}
		}
	}
	return s.spaceErr
}

// findOldDedupes looks for dedupe records that an older version kept in
// Badger, and sets how long lookups look there for them.
func (s *Store) findOldDedupes() error {
	return s.findOld("dedupe/", "dedupe records of an older version found in Badger; looked up until they expire", &s.oldDedupes)
}

// findOldHistory looks for history records that an older version kept in
// Badger, and sets how long queries and trims take them in.
func (s *Store) findOldHistory() error {
	return s.findOld("hist/", "history records of an older version found in Badger; read until they expire or are trimmed", &s.oldHistory)
}

// findOld counts (keys only) Badger's records under prefix, logs msg when
// there are any, and stores in until when the last of them expires (Unix
// seconds; 0 none, MaxUint64 no end).
func (s *Store) findOld(prefix, msg string, until *atomic.Uint64) error {
	var last uint64
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
			if e := it.Item().ExpiresAt(); e == 0 {
				last = math.MaxUint64
			} else {
				last = max(last, e)
			}
		}
		return nil
	})
	if n > 0 {
		s.log.Info("store: "+msg, "records", n, "until", time.Unix(int64(min(last, math.MaxInt32)), 0).UTC())
	}
	until.Store(last)
	return err
}

// Close stops the value-log collection and the dedupe journal's and the
// history log's upkeep, flushes and closes the database. The logs'
// segments stay: dedupe records and history outlive a restart.
func (s *Store) Close() error {
	first := false
	s.closeOnce.Do(func() { close(s.stopGC); first = true })
	<-s.gcDone
	<-s.wbDone
	var jerr, herr error
	if s.jnl != nil && first {
		jerr = s.jnl.close()
	}
	if s.hist != nil && first {
		herr = s.hist.close()
	}
	return errors.Join(jerr, herr, s.db.Close())
}

// Size is the store's size on disk in bytes (LSM tree, value log, the
// dedupe journal and the history log).
func (s *Store) Size() int64 {
	lsm, vlog := s.db.Size()
	if s.jnl != nil {
		vlog += s.jnl.wal.Stats().Bytes
	}
	if s.hist != nil {
		vlog += s.hist.wal.Stats().Bytes
	}
	return lsm + vlog
}

// DedupeRecords is how many dedupe records the journal's index holds
// (those expired included until their segment is deleted, within about
// a minute); 0 for an in-memory store, whose records are in Badger.
func (s *Store) DedupeRecords() int {
	if s.jnl == nil {
		return 0
	}
	return s.jnl.records()
}

// HistoryLogStats is the extent of the history log (historylog.go).
type HistoryLogStats struct {
	// Bytes is the size of its segment files.
	Bytes int64
	// Segments counts its segment files, the one written to included.
	Segments int
	// Records counts the records its index holds: what History can
	// return, plus those expired since the last upkeep round (10 s).
	Records int
}

// HistoryLog reports the history log's files and records: zeros for an
// in-memory store, whose history is in Badger. History an older version
// left in Badger is not counted.
func (s *Store) HistoryLog() HistoryLogStats {
	if s.hist == nil {
		return HistoryLogStats{}
	}
	w := s.hist.wal.Stats()
	return HistoryLogStats{Bytes: w.Bytes, Segments: w.Segments, Records: s.hist.records()}
}

// now is the clock dedupe records expire by: the journal's (tests set it).
func (s *Store) now() time.Time {
	if s.jnl != nil {
		return s.jnl.opt.now()
	}
	return time.Now()
}

// DB exposes the Badger handle for maintenance tools.
func (s *Store) DB() *badger.DB { return s.db }

func profileKey(model, version, device string) []byte {
	return []byte("profile/" + model + "@" + version + "/" + device)
}

// validationKey is where a profile's per-sample validation data lives,
// apart from the rest of it: it is most of a profile's bytes (456 of
// mnist-ee's 461 KB) and does not change when live runs refresh the
// rest, which the agent stores every status interval. Stored inline, that
// was ~2.7 MB a minute written to the store (and mapped from its value
// log) for nothing new.
func validationKey(profileKey []byte) []byte {
	return append([]byte("validation/"), profileKey[len("profile/"):]...)
}

// PutProfile stores p under profile/<model>@<version>/<device>, its
// validation data under validation/<model>@<version>/<device>, written
// only when it is not the data last written or read there.
func (s *Store) PutProfile(p *profile.Profile) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if err := s.roomToWrite(); err != nil {
		return err
	}
	q := *p
	q.Validation = nil
	b, err := json.Marshal(&q)
	if err != nil {
		return err
	}
	key := profileKey(p.Model, p.Version, p.Device)
	// Held through the write, so that what valSaved says is what the
	// last write put there.
	s.valMu.Lock()
	defer s.valMu.Unlock()
	saved, known := s.valSaved[string(key)]
	var vb []byte
	writeVal := !known || saved != p.Validation
	if writeVal && p.Validation != nil {
		if vb, err = json.Marshal(p.Validation); err != nil {
			return err
		}
	}
	err = s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(key, b); err != nil {
			return err
		}
		switch {
		case !writeVal:
			return nil
		case vb != nil:
			return txn.Set(validationKey(key), vb)
		default:
			return txn.Delete(validationKey(key))
		}
	})
	if err == nil && writeVal {
		if s.valSaved == nil {
			s.valSaved = make(map[string]*profile.Validation)
		}
		s.valSaved[string(key)] = p.Validation
	}
	return err
}

// noteValidation records v, just read, as what key's validation/ key
// holds, unless a write has already said.
func (s *Store) noteValidation(key []byte, v *profile.Validation) {
	s.valMu.Lock()
	defer s.valMu.Unlock()
	if s.valSaved == nil {
		s.valSaved = make(map[string]*profile.Validation)
	}
	if _, known := s.valSaved[string(key)]; !known {
		s.valSaved[string(key)] = v
	}
}

// Profile returns the stored profile of model@version on device.
func (s *Store) Profile(model, version, device string) (*profile.Profile, error) {
	var p *profile.Profile
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(profileKey(model, version, device))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("profile %s@%s/%s: %w", model, version, device, ErrNotFound)
		}
		if err != nil {
			return err
		}
		p, err = s.readProfile(txn, it)
		return err
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// readProfile decodes the profile in item, with its validation data from
// its validation/ key when it carries none inline (as an older version
// stored it).
func (s *Store) readProfile(txn *badger.Txn, item *badger.Item) (*profile.Profile, error) {
	var p profile.Profile
	if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &p) }); err != nil {
		return nil, fmt.Errorf("%s: %w", item.Key(), err)
	}
	if p.Validation != nil {
		return &p, nil
	}
	key := item.KeyCopy(nil)
	vi, err := txn.Get(validationKey(key))
	if errors.Is(err, badger.ErrKeyNotFound) {
		s.noteValidation(key, nil)
		return &p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", validationKey(key), err)
	}
	var v profile.Validation
	if err := vi.Value(func(b []byte) error { return json.Unmarshal(b, &v) }); err != nil {
		return nil, fmt.Errorf("%s: %w", validationKey(key), err)
	}
	p.Validation = &v
	s.noteValidation(key, &v)
	return &p, nil
}

// Profiles lists every stored profile (any model, version and device).
func (s *Store) Profiles() ([]*profile.Profile, error) {
	var out []*profile.Profile
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("profile/"), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			p, err := s.readProfile(txn, it.Item())
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// badgerLogger routes Badger's logging into slog; Badger's info chatter
// goes to debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) { b.debug(f, a) }

// Debugf: Badger logs a debug line per write batch; it is formatted only
// when debug logging is on.
func (b badgerLogger) Debugf(f string, a ...any) { b.debug(f, a) }

func (b badgerLogger) debug(f string, a []any) {
	if b.l.Enabled(context.Background(), slog.LevelDebug) {
		b.l.Debug(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
	}
}
