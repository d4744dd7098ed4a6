package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
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

// AppendHistory writes records in one batch, each kept for ttl.
func (s *Store) AppendHistory(recs []Record, ttl time.Duration) error {
	if err := s.roomToWrite(); err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for i := range recs {
		r := &recs[i]
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		if err := wb.SetEntry(badger.NewEntry(HistoryKey(r.Tenant, r.At, r.ID), b).WithTTL(ttl)); err != nil {
			return err
		}
	}
	return wb.Flush()
}

// TrimHistory deletes tenant's oldest history records beyond the newest
// keep, and reports how many it deleted. It reads keys only.
func (s *Store) TrimHistory(tenant string, keep int) (int, error) {
	if keep < 0 {
		keep = 0
	}
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
				if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
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
