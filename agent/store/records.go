package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/delen-edge/delen/schema"
	badger "github.com/dgraph-io/badger/v4"
)

// TenantKey is the key of a tenant's settings.
func TenantKey(tenant string) []byte { return []byte("tenant/" + tenant) }

// PutTenant stores a tenant's effective settings.
func (s *Store) PutTenant(tenant string, set schema.Settings) error {
	if err := s.roomToWrite(); err != nil {
		return err
	}
	b, err := json.Marshal(set)
	if err != nil {
		return err
	}
	return s.db.Update(func(txn *badger.Txn) error { return txn.Set(TenantKey(tenant), b) })
}

// Tenants returns every stored tenant's settings.
func (s *Store) Tenants() (map[string]schema.Settings, error) {
	out := map[string]schema.Settings{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("tenant/"), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			name := strings.TrimPrefix(string(it.Item().Key()), "tenant/")
			var set schema.Settings
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &set) }); err != nil {
				return fmt.Errorf("tenant %s: %w", name, err)
			}
			out[name] = set
		}
		return nil
	})
	return out, err
}

// DedupeKey is the key of a request id's stored result.
func DedupeKey(tenant, id string) []byte { return []byte("dedupe/" + tenant + "/" + id) }

// Dedupe is a result already sent for a request id: the exact bytes and
// where they went, so a redelivered request gets the same answer.
type Dedupe struct {
	Topic   string `json:"topic"`
	QoS     byte   `json:"qos"`
	Payload []byte `json:"payload"`
}

// PutDedupe records the result sent for tenant's request id, kept for ttl.
func (s *Store) PutDedupe(tenant, id string, d Dedupe, ttl time.Duration) error {
	return s.PutDedupes([]DedupeEntry{{Tenant: tenant, ID: id, Dedupe: d}}, ttl)
}

// DedupeEntry is one request id's record for PutDedupes.
type DedupeEntry struct {
	Tenant, ID string
	Dedupe     Dedupe
}

// PutDedupes records the results of many requests at once, each kept for
// ttl, with one write to the store's dedupe journal (journal.go); an
// in-memory store sets them in one Badger transaction. When it returns
// nil, every record is found by GetDedupe and survives a crash of the
// process. A ttl ≤ 0 keeps the records for good, and with them every
// later segment of the journal (the agent always passes its DedupeTTL).
func (s *Store) PutDedupes(es []DedupeEntry, ttl time.Duration) error {
	if len(es) == 0 {
		return nil
	}
	if err := s.roomToWrite(); err != nil {
		return err
	}
	var expires uint64
	if ttl > 0 {
		expires = uint64(s.now().Add(ttl).Unix())
	}
	recs := make([]*journalRec, len(es))
	for i := range es {
		e := &es[i]
		recs[i] = &journalRec{key: string(DedupeKey(e.Tenant, e.ID)), val: e.Dedupe.marshal(), expires: expires}
	}
	if s.jnl == nil {
		return setRecords(s.db, recs)
	}
	return s.jnl.put(recs)
}

// setRecords sets q's records in db, in one transaction when it holds
// them (an in-memory store's dedupe records).
func setRecords(db *badger.DB, q []*journalRec) error {
	txn := db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, r := range q {
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

// dedupeBinary marks the binary encoding of a Dedupe; older records are
// JSON (they begin with '{').
const dedupeBinary = 1

// marshal encodes d as dedupeBinary, QoS, topic length (uvarint), topic,
// payload: no base64, no reflection on the hot path.
func (d *Dedupe) marshal() []byte {
	b := make([]byte, 0, 2+binary.MaxVarintLen64+len(d.Topic)+len(d.Payload))
	b = append(b, dedupeBinary, d.QoS)
	b = binary.AppendUvarint(b, uint64(len(d.Topic)))
	b = append(b, d.Topic...)
	return append(b, d.Payload...)
}

// unmarshalDedupe decodes either encoding of a record.
func unmarshalDedupe(v []byte, d *Dedupe) error {
	if len(v) > 0 && v[0] == '{' {
		return json.Unmarshal(v, d)
	}
	if len(v) < 3 || v[0] != dedupeBinary {
		return errors.New("dedupe record: unknown encoding")
	}
	n, k := binary.Uvarint(v[2:])
	if k <= 0 || n > uint64(len(v)-2-k) {
		return errors.New("dedupe record: truncated")
	}
	off := 2 + k
	d.QoS = v[1]
	d.Topic = string(v[off : off+int(n)])
	d.Payload = append([]byte(nil), v[off+int(n):]...)
	return nil
}

// GetDedupe returns the result already sent for tenant's request id, or
// ErrNotFound.
func (s *Store) GetDedupe(tenant, id string) (*Dedupe, error) {
	var d Dedupe
	key := DedupeKey(tenant, id)
	now := uint64(s.now().Unix())
	if s.jnl != nil {
		v, ok, err := s.jnl.get(key, now)
		if err != nil {
			return nil, err
		}
		if ok {
			if err := unmarshalDedupe(v, &d); err != nil {
				return nil, err
			}
			return &d, nil
		}
		if s.oldDedupes.Load() <= now {
			return nil, ErrNotFound // Badger holds none that has not expired
		}
	}
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error { return unmarshalDedupe(v, &d) })
	})
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// Record is one served request in the history.
type Record struct {
	Tenant string         `json:"tenant"`
	ID     string         `json:"id"`
	At     time.Time      `json:"at"` // arrival at the agent
	Result *schema.Result `json:"result"`
	// InputDigest is the first 16 hex digits of the input data's SHA-256.
	InputDigest string `json:"input_digest,omitempty"`
	Label       *int   `json:"label,omitempty"`
	// Correct is whether the class served equals Label (when both exist).
	Correct *bool `json:"correct,omitempty"`
	// LiveAccuracy is the model's live measured accuracy (its window of
	// labelled answers, agent/liveprofile.go) when this was served.
	LiveAccuracy *float64 `json:"live_accuracy,omitempty"`
	// ResultPayload, when set, is Result as it was published (msgpack or
	// JSON, schema.EncodeResult): AppendHistory stores these bytes instead
	// of encoding Result again. History leaves it nil.
	ResultPayload []byte `json:"-"`
}

// HistoryKey is hist/<tenant>/<unix-µs, big-endian>/<id>.
func HistoryKey(tenant string, at time.Time, id string) []byte {
	k := make([]byte, 0, 5+len(tenant)+1+8+1+len(id))
	k = append(k, "hist/"...)
	k = append(k, tenant...)
	k = append(k, '/')
	k = binary.BigEndian.AppendUint64(k, uint64(at.UnixMicro()))
	k = append(k, '/')
	return append(k, id...)
}

// AppendHistory writes records in one batch, each kept for ttl: with one
// write(2) to the history log (historylog.go) on a store on disk, in one
// Badger write batch in an in-memory store. When it returns nil the
// records survive a crash of the process.
func (s *Store) AppendHistory(recs []Record, ttl time.Duration) error {
	if err := s.roomToWrite(); err != nil {
		return err
	}
	if s.hist != nil {
		return s.hist.append(recs, ttl)
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for i := range recs {
		r := &recs[i]
		b, err := r.marshal()
		if err != nil {
			return err
		}
		if err := wb.SetEntry(badger.NewEntry(HistoryKey(r.Tenant, r.At, r.ID), b).WithTTL(ttl)); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// historyBinary marks the binary encoding of a history Record; older
// records are JSON (they begin with '{').
const historyBinary = 1

// The flags byte of a binary history record: which optional fields follow.
const (
	histLabel       = 1 << iota // a varint
	histCorrect                 // Correct is set ...
	histCorrectTrue             // ... and true
	histLive                    // 8 bytes, little-endian float64 bits
)

// marshal encodes r as historyBinary; tenant, id and input digest (each a
// uvarint length and the bytes); the arrival as unix seconds (varint),
// nanoseconds (uvarint) and the zone's offset east of UTC in seconds
// (varint), so it reads back as the same instant printed the same way;
// the flags byte and the optional fields it announces; then the result's
// encoding as published (schema.EncodeResult; msgpack when the record
// carries none), to the end. No reflection on the path of every served
// request: the result's bytes are the ones already published.
func (r *Record) marshal() ([]byte, error) {
	payload := r.ResultPayload
	if payload == nil && r.Result != nil {
		var err error
		if payload, err = schema.EncodeResult(r.Result, schema.MsgPack); err != nil {
			return nil, fmt.Errorf("history record %s/%s: %w", r.Tenant, r.ID, err)
		}
	}
	b := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(r.Tenant)+len(r.ID)+len(r.InputDigest)+
		3*binary.MaxVarintLen64+1+binary.MaxVarintLen64+8+len(payload))
	b = append(b, historyBinary)
	for _, s := range [...]string{r.Tenant, r.ID, r.InputDigest} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	_, offset := r.At.Zone()
	b = binary.AppendVarint(b, r.At.Unix())
	b = binary.AppendUvarint(b, uint64(r.At.Nanosecond()))
	b = binary.AppendVarint(b, int64(offset))
	var flags byte
	if r.Label != nil {
		flags |= histLabel
	}
	if r.Correct != nil {
		flags |= histCorrect
		if *r.Correct {
			flags |= histCorrectTrue
		}
	}
	if r.LiveAccuracy != nil {
		flags |= histLive
	}
	b = append(b, flags)
	if r.Label != nil {
		b = binary.AppendVarint(b, int64(*r.Label))
	}
	if r.LiveAccuracy != nil {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(*r.LiveAccuracy))
	}
	return append(b, payload...), nil
}

// errHistoryTruncated is a binary history record that ends early.
var errHistoryTruncated = errors.New("history record: truncated")

// unmarshalRecord decodes either encoding of a history record. Every
// field of the result reads back as its JSON form did (meta included, as
// a JSON round trip gives it), so `delen history --json` prints old and
// new records alike.
func unmarshalRecord(v []byte, r *Record) error {
	if len(v) > 0 && v[0] == '{' {
		return json.Unmarshal(v, r)
	}
	if len(v) == 0 || v[0] != historyBinary {
		return errors.New("history record: unknown encoding")
	}
	v = v[1:]
	str := func() (string, error) {
		n, k := binary.Uvarint(v)
		if k <= 0 || n > uint64(len(v)-k) {
			return "", errHistoryTruncated
		}
		s := string(v[k : k+int(n)])
		v = v[k+int(n):]
		return s, nil
	}
	varint := func() (int64, error) {
		n, k := binary.Varint(v)
		if k <= 0 {
			return 0, errHistoryTruncated
		}
		v = v[k:]
		return n, nil
	}
	var err error
	if r.Tenant, err = str(); err != nil {
		return err
	}
	if r.ID, err = str(); err != nil {
		return err
	}
	if r.InputDigest, err = str(); err != nil {
		return err
	}
	sec, err := varint()
	if err != nil {
		return err
	}
	nsec, k := binary.Uvarint(v)
	if k <= 0 || nsec >= 1e9 {
		return errors.New("history record: bad arrival time")
	}
	v = v[k:]
	offset, err := varint()
	if err != nil {
		return err
	}
	if offset <= -1<<31 || offset >= 1<<31 {
		return errors.New("history record: bad zone offset")
	}
	r.At = time.Unix(sec, int64(nsec)).In(zoneAt(int(offset)))
	if len(v) == 0 {
		return errHistoryTruncated
	}
	flags := v[0]
	v = v[1:]
	if flags&^(histLabel|histCorrect|histCorrectTrue|histLive) != 0 {
		return errors.New("history record: unknown flags")
	}
	if flags&histLabel != 0 {
		n, err := varint()
		if err != nil {
			return err
		}
		if int64(int(n)) != n {
			return errors.New("history record: label out of range")
		}
		l := int(n)
		r.Label = &l
	}
	if flags&histCorrect != 0 {
		ok := flags&histCorrectTrue != 0
		r.Correct = &ok
	} else if flags&histCorrectTrue != 0 {
		return errors.New("history record: unknown flags")
	}
	if flags&histLive != 0 {
		if len(v) < 8 {
			return errHistoryTruncated
		}
		a := math.Float64frombits(binary.LittleEndian.Uint64(v))
		r.LiveAccuracy = &a
		v = v[8:]
	}
	if len(v) == 0 {
		return nil // a record without a result
	}
	res, _, err := schema.DecodeResult(v, len(v))
	if err != nil {
		return fmt.Errorf("history record: result: %w", err)
	}
	if res.Meta != nil {
		// As the JSON records read back: numbers as float64, binary as
		// base64 strings.
		b, err := json.Marshal(res.Meta)
		if err != nil {
			return fmt.Errorf("history record: meta: %w", err)
		}
		res.Meta = nil
		if err := json.Unmarshal(b, &res.Meta); err != nil {
			return fmt.Errorf("history record: meta: %w", err)
		}
	}
	r.Result = res
	return nil
}

// zoneAt is a location with the arrival's offset: UTC for 0, else a fixed
// zone, so the time prints as it was written (as a JSON record's does).
func zoneAt(offset int) *time.Location {
	if offset == 0 {
		return time.UTC
	}
	return time.FixedZone("", offset)
}

// TrimHistory deletes tenant's oldest history records beyond the newest
// keep, and reports how many it deleted. In the history log it drops
// index entries and saves the tenant's cut (historylog.go); records an
// older version left in Badger count first, as the oldest, and are
// deleted there.
func (s *Store) TrimHistory(tenant string, keep int) (int, error) {
	if keep < 0 {
		keep = 0
	}
	if s.hist == nil {
		return s.trimBadgerHistory(tenant, keep)
	}
	if s.historyInLogOnly() {
		return s.hist.trim(tenant, keep)
	}
	// The log's records are newer than Badger's: Badger keeps what the
	// log's leave of keep, and the log is trimmed only once Badger holds
	// none of tenant's.
	n, err := s.trimBadgerHistory(tenant, max(keep-s.hist.count(tenant), 0))
	if err != nil {
		return n, err
	}
	m, err := s.hist.trim(tenant, keep)
	return n + m, err
}

// TrimHistories is TrimHistory for each of tenants with the same keep; in
// the history log the cuts of all of them are saved at once. It reports
// how many records it deleted in all; on an error the trims of the
// tenants before it hold, and the call may be repeated for all of them.
func (s *Store) TrimHistories(tenants []string, keep int) (int, error) {
	if s.hist != nil && s.historyInLogOnly() {
		return s.hist.trimAll(tenants, max(keep, 0))
	}
	n := 0
	for _, t := range tenants {
		m, err := s.TrimHistory(t, keep)
		n += m
		if err != nil {
			return n, fmt.Errorf("tenant %s: %w", t, err)
		}
	}
	return n, nil
}

// historyInLogOnly reports whether the history log (s.hist, not nil)
// holds all of the history: the records an older version left in Badger
// have expired.
func (s *Store) historyInLogOnly() bool {
	return s.oldHistory.Load() <= uint64(s.hist.opt.now().Unix())
}

// trimBadgerHistory deletes tenant's oldest history records in Badger
// beyond the newest keep. It reads keys only.
func (s *Store) trimBadgerHistory(tenant string, keep int) (int, error) {
	prefix := []byte("hist/" + tenant + "/")
	var old [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		n := 0
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		if n <= keep {
			return nil
		}
		old = make([][]byte, 0, n-keep)
		for it.Rewind(); it.Valid() && len(old) < n-keep; it.Next() {
			old = append(old, it.Item().KeyCopy(nil))
		}
		return nil
	})
	if err != nil || len(old) == 0 {
		return 0, err
	}
	if err := s.roomToWrite(); err != nil {
		return 0, err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, k := range old {
		if err := wb.Delete(k); err != nil {
			return 0, err
		}
	}
	if err := wb.Flush(); err != nil {
		return 0, err
	}
	return len(old), nil
}

// History returns the records of tenant (all tenants when empty) that
// arrived at or after since, oldest first; with limit > 0, the newest limit
// of them. It reads each tenant's records newest first and stops at limit
// or since, so a small limit costs little however long the history is.
func (s *Store) History(tenant string, since time.Time, limit int) ([]Record, error) {
	if s.hist == nil {
		return s.badgerHistory(tenant, since, limit)
	}
	out, err := s.hist.query(tenant, since, limit)
	if err != nil {
		return nil, err
	}
	if !s.historyInLogOnly() {
		old, err := s.badgerHistory(tenant, since, limit)
		if err != nil {
			return nil, err
		}
		out = append(old, out...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// badgerHistory is History of the records in Badger (an in-memory store's,
// or those an older version wrote).
func (s *Store) badgerHistory(tenant string, since time.Time, limit int) ([]Record, error) {
	prefix := []byte("hist/")
	if tenant != "" {
		prefix = []byte("hist/" + tenant + "/")
	}
	var out []Record
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100, Reverse: true})
		defer it.Close()
		// Backwards, Seek finds the last key ≤ its argument: past the
		// prefix's last key (0xff follows no tenant name and starts no
		// timestamp), then before a tenant's first key to skip the rest
		// of it.
		cur, n := "", 0
		for it.Seek(append(append([]byte(nil), prefix...), 0xff)); it.Valid(); {
			key := it.Item().Key()
			t, _, _ := strings.Cut(string(key[len("hist/"):]), "/")
			if t != cur {
				cur, n = t, 0
			}
			var r Record
			if limit <= 0 || n < limit {
				if err := it.Item().Value(func(v []byte) error { return unmarshalRecord(v, &r) }); err != nil {
					return fmt.Errorf("%q: %w", key, err)
				}
			}
			if (limit > 0 && n >= limit) || r.At.Before(since) {
				it.Seek([]byte("hist/" + t + "/")) // the tenant's older records are not wanted
				continue
			}
			out = append(out, r)
			n++
			it.Next()
		}
		return nil
	})
	slices.Reverse(out)
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, err
}
