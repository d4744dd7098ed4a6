package broker

import (
	"bufio"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/delen-edge/delen/internal/wal"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
)

// inflightLog keeps the messages in flight to persistent sessions (the
// agent's requests: camera frames of 150–600 KB, each acknowledged
// milliseconds after it is stored) in a log of segment files of its own,
// instead of Badger. In Badger a frame went either into the LSM tree,
// where every flush and compaction copied it again, or into the value log,
// which Badger reclaims only from the discard counts that compactions
// gather: with small pointers in the tree the memtable seldom filled, no
// compaction ran, and the value log grew by every frame ever received
// (a gigabyte a minute at 15 frames/s, never reclaimed).
//
// Here a message is one append, its acknowledgement one small tombstone
// append, and a segment file is deleted as soon as it and every older one
// hold no message still in flight: the frames that are acknowledged within
// a segment's lifetime (most) are deleted before the kernel writes them
// back, so they cost no disk I/O at all. A message that stays unacknowledged
// (a session away for long) is copied forward into the newest segment
// once the old one is mostly garbage, so it does not hold the log's disk
// space. Appends go through write(2), not a memory map: no msync stalls.
//
// Records survive a kill -9 of the process (they are in the page cache
// once write returns), not a power cut (nothing is fsynced, as with the
// Badger store before). A record torn by a crash mid-write fails its
// checksum and is dropped at the next open, with the rest of its segment.
//
// With a flush delay (the embedded broker's), records gather in memory
// and go to the file in one write at the next flush: when a connection
// whose acknowledgements wait for them (ackHoldConn) is about to read
// again, or after the delay. Without one, each is written at once.
//
// Its methods are safe for concurrent use.
type inflightLog struct {
	dir     string
	segSize int64
	log     *slog.Logger

	mu   sync.Mutex
	segs []*inflightSeg // oldest first; the last one is appended to
	live map[string]inflightRef
	buf  []byte

	// delay, when set, lets records wait in pend up to that long for a
	// flush; armed tells that the timer that bounds the wait is running.
	delay time.Duration
	pend  []byte // records of the active segment not yet written
	timer *time.Timer
	armed bool
}

// maxPend bounds the records gathered for one write; a record larger
// than this goes to the file at once.
const maxPend = 1 << 20

// inflightSeg is one segment file and what of it is still in flight.
type inflightSeg struct {
	id      uint64
	f       *os.File
	size    int64 // bytes appended, the ones waiting in the log's pend included
	flushed int64 // bytes written to f
	n       int   // live messages
	live    int64 // their bytes
}

// inflightRef is where a live message's record is.
type inflightRef struct {
	seg *inflightSeg
	off int64
	n   int64
}

// Record layout: internal/wal's framing (an 8-byte header with the
// body's length and CRC-32C), then as the body the kind, the key's length
// (uint16), the key and, for a message, its body: the length of the
// message's JSON without its payload (uint32), that JSON, the payload.
const (
	recPut          = 1
	recDel          = 2
	inflightSegSize = 8 << 20
	// compactFraction: an old segment whose live bytes fall below
	// 1/compactFraction of its size has them copied forward.
	compactFraction = 4
)

// openInflightLog opens (creating) the log in dir and replays its
// segments; new messages go to a new segment.
func openInflightLog(dir string, segSize int64, log *slog.Logger) (*inflightLog, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("inflight log: %w", err)
	}
	l := &inflightLog{dir: dir, segSize: segSize, log: log, live: map[string]inflightRef{}}
	names, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil {
		return nil, fmt.Errorf("inflight log: %w", err)
	}
	slices.Sort(names) // zero-padded hexadecimal ids: oldest first
	var next uint64 = 1
	for _, name := range names {
		var id uint64
		if _, err := fmt.Sscanf(filepath.Base(name), "%016x.log", &id); err != nil {
			continue
		}
		seg, err := l.replay(name, id)
		if err != nil {
			l.close()
			return nil, err
		}
		l.segs = append(l.segs, seg)
		next = id + 1
	}
	if err := l.roll(next); err != nil {
		l.close()
		return nil, err
	}
	l.reclaim()
	return l, nil
}

// replay reads segment name's records into the live set; a damaged
// record ends the segment there (the file is truncated to what was read).
func (l *inflightLog) replay(name string, id uint64) (*inflightSeg, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("inflight log: open %s: %w", name, err)
	}
	seg := &inflightSeg{id: id, f: f}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("inflight log: %w", err)
	}
	r := bufio.NewReaderSize(f, 1<<16)
	var rec []byte
	for {
		var err error
		rec, err = readRecord(r, rec[:0], fi.Size()-seg.size)
		if err == io.EOF {
			break
		}
		if err != nil {
			end, _ := f.Seek(0, io.SeekEnd)
			l.log.Warn("broker: in-flight log damaged: dropping its tail", "file", name, "offset", seg.size, "dropped_bytes", end-seg.size, "error", err)
			if err := f.Truncate(seg.size); err != nil {
				f.Close()
				return nil, fmt.Errorf("inflight log: truncate %s: %w", name, err)
			}
			break
		}
		kind, key, _, _ := splitRecord(rec)
		n := wal.Header + int64(len(rec))
		l.forget(key)
		if kind == recPut {
			l.remember(key, inflightRef{seg: seg, off: seg.size, n: n})
		}
		seg.size += n
	}
	seg.flushed = seg.size
	return seg, nil
}

// readRecord reads one record of at most left bytes (header included)
// from r into buf and returns its body; io.EOF at a clean end, an error
// wrapping wal.ErrDamaged otherwise.
func readRecord(r io.Reader, buf []byte, left int64) ([]byte, error) {
	body, err := wal.ReadRecord(r, buf, left)
	if err == nil {
		_, _, _, err = splitRecord(body)
	}
	return body, err
}

// splitRecord parses a record's body (checked by readRecord or built by
// appendRecord).
func splitRecord(p []byte) (kind byte, key string, body []byte, err error) {
	if len(p) < 3 {
		return 0, "", nil, fmt.Errorf("%w: body of %d bytes", wal.ErrDamaged, len(p))
	}
	kind = p[0]
	kl := int(binary.LittleEndian.Uint16(p[1:3]))
	if 3+kl > len(p) || (kind != recPut && kind != recDel) {
		return 0, "", nil, fmt.Errorf("%w: kind %d, key of %d bytes in %d", wal.ErrDamaged, kind, kl, len(p))
	}
	return kind, string(p[3 : 3+kl]), p[3+kl:], nil
}

// appendRecord appends a record of kind for key with body to buf.
func appendRecord(buf []byte, kind byte, key string, body ...[]byte) []byte {
	head := append(binary.LittleEndian.AppendUint16([]byte{kind}, uint16(len(key))), key...)
	return wal.AppendRecord(buf, append([][]byte{head}, body...)...)
}

// encodeMessage is a message's record body.
func encodeMessage(m *storage.Message) ([]byte, []byte, error) {
	payload := m.Payload
	m.Payload = nil
	meta, err := json.Marshal(m)
	m.Payload = payload
	if err != nil {
		return nil, nil, err
	}
	return binary.LittleEndian.AppendUint32(make([]byte, 0, 4+len(meta)), uint32(len(meta))), append(meta, payload...), nil
}

// decodeMessage parses a record body.
func decodeMessage(body []byte) (storage.Message, error) {
	var m storage.Message
	if len(body) < 4 {
		return m, fmt.Errorf("%w: body of %d bytes", wal.ErrDamaged, len(body))
	}
	n := binary.LittleEndian.Uint32(body)
	if uint64(n) > uint64(len(body)-4) {
		return m, fmt.Errorf("%w: metadata of %d bytes in %d", wal.ErrDamaged, n, len(body)-4)
	}
	if err := json.Unmarshal(body[4:4+n], &m); err != nil {
		return m, fmt.Errorf("%w: %v", wal.ErrDamaged, err)
	}
	m.Payload = slices.Clone(body[4+n:])
	return m, nil
}

// roll starts segment id and appends to it from now on.
func (l *inflightLog) roll(id uint64) error {
	name := filepath.Join(l.dir, fmt.Sprintf("%016x.log", id))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("inflight log: create %s: %w", name, err)
	}
	l.segs = append(l.segs, &inflightSeg{id: id, f: f})
	return nil
}

// active is the segment appended to. l.mu is held.
func (l *inflightLog) active() *inflightSeg { return l.segs[len(l.segs)-1] }

// write appends rec to the active segment (rolling to a new one when it
// is full) and returns where it went: in the file, or in pend until the
// next flush. l.mu is held.
func (l *inflightLog) write(rec []byte) (inflightRef, error) {
	if a := l.active(); a.size > 0 && a.size+int64(len(rec)) > l.segSize {
		if err := l.flushLocked(); err != nil {
			return inflightRef{}, err
		}
		if err := l.roll(a.id + 1); err != nil {
			return inflightRef{}, err
		}
	}
	a := l.active()
	ref := inflightRef{seg: a, off: a.size, n: int64(len(rec))}
	if l.delay > 0 && len(l.pend)+len(rec) <= maxPend {
		l.pend = append(l.pend, rec...)
		a.size += ref.n
		if !l.armed {
			l.armed = true
			if l.timer == nil {
				l.timer = time.AfterFunc(l.delay, l.flushLogged)
			} else {
				l.timer.Reset(l.delay)
			}
		}
		return ref, nil
	}
	if err := l.flushLocked(); err != nil {
		return inflightRef{}, err
	}
	if _, err := a.f.WriteAt(rec, a.size); err != nil {
		return inflightRef{}, fmt.Errorf("inflight log: append to %s: %w", a.f.Name(), err)
	}
	a.size += ref.n
	a.flushed = a.size
	return ref, nil
}

// flush writes the records gathered in pend to the file, in one write.
func (l *inflightLog) flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flushLocked()
}

// flushLogged is flush for the timer, which has no caller to tell.
func (l *inflightLog) flushLogged() {
	if err := l.flush(); err != nil {
		l.log.Error("broker: in-flight log: write", "error", err)
	}
}

// flushLocked writes pend. If the write fails, its records are dropped as
// a failed append's would be: the messages they stored are no longer kept
// for a restart (their tombstones neither), and the next record goes
// where they would have. l.mu is held.
func (l *inflightLog) flushLocked() error {
	l.armed = false
	if len(l.pend) == 0 || len(l.segs) == 0 {
		return nil
	}
	a := l.active()
	_, err := a.f.WriteAt(l.pend, a.flushed)
	if err != nil {
		err = fmt.Errorf("inflight log: append %d bytes to %s: %w", len(l.pend), a.f.Name(), err)
		for k, ref := range l.live {
			if ref.seg == a && ref.off >= a.flushed {
				l.forget(k)
			}
		}
		a.size = a.flushed
	} else {
		a.flushed += int64(len(l.pend))
	}
	if cap(l.pend) > maxPend {
		l.pend = nil
	} else {
		l.pend = l.pend[:0]
	}
	return err
}

// remember and forget keep the live set and the segments' counts. l.mu is
// held (or the log not yet shared).
func (l *inflightLog) remember(key string, ref inflightRef) {
	l.live[key] = ref
	ref.seg.n++
	ref.seg.live += ref.n
}

func (l *inflightLog) forget(key string) bool {
	ref, ok := l.live[key]
	if !ok {
		return false
	}
	delete(l.live, key)
	ref.seg.n--
	ref.seg.live -= ref.n
	return true
}

// put stores m under m.ID, replacing what the key held.
func (l *inflightLog) put(m *storage.Message) error {
	lenMeta, rest, err := encodeMessage(m)
	if err != nil {
		return fmt.Errorf("inflight log: encode %s: %w", m.ID, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = appendRecord(l.buf[:0], recPut, m.ID, lenMeta, rest)
	ref, err := l.write(l.buf)
	if cap(l.buf) > 1<<20 {
		l.buf = nil // do not keep a huge message's buffer
	}
	if err != nil {
		return err
	}
	l.forget(m.ID)
	l.remember(m.ID, ref)
	l.reclaim()
	return nil
}

// del removes key; a tombstone keeps a restart from finding it.
func (l *inflightLog) del(key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.forget(key) {
		return nil
	}
	l.buf = appendRecord(l.buf[:0], recDel, key)
	_, err := l.write(l.buf)
	l.reclaim()
	return err
}

// dropClient removes every message in flight to client.
func (l *inflightLog) dropClient(client string) error {
	prefix := storage.InflightKey + "_" + client + ":"
	l.mu.Lock()
	var keys []string
	for k := range l.live {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	l.mu.Unlock()
	var errs []error
	for _, k := range keys {
		errs = append(errs, l.del(k))
	}
	return errors.Join(errs...)
}

// reclaim deletes the oldest segments while they hold nothing in flight,
// and copies the last few messages of a mostly acknowledged oldest segment
// forward so that it can go too. l.mu is held.
func (l *inflightLog) reclaim() {
	for len(l.segs) > 1 {
		old := l.segs[0]
		if old.n > 0 {
			// Only once two newer segments are full, so that a message
			// about to be acknowledged is not copied for nothing.
			if len(l.segs) < 3 || old.live*compactFraction > old.size || !l.moveForward(old) {
				return
			}
		}
		l.segs = l.segs[1:]
		old.f.Close()
		if err := os.Remove(old.f.Name()); err != nil {
			l.log.Warn("broker: in-flight log: remove segment", "file", old.f.Name(), "error", err)
		}
	}
}

// moveForward appends old's live records to the active segment; false
// if one could not be moved (old is then kept). l.mu is held.
func (l *inflightLog) moveForward(old *inflightSeg) bool {
	for k, ref := range l.live {
		if ref.seg != old {
			continue
		}
		rec := make([]byte, ref.n)
		if _, err := old.f.ReadAt(rec, ref.off); err != nil {
			l.log.Warn("broker: in-flight log: read for compaction", "file", old.f.Name(), "error", err)
			return false
		}
		nref, err := l.write(rec)
		if err != nil {
			l.log.Warn("broker: in-flight log: compaction", "error", err)
			return false
		}
		l.forget(k)
		l.remember(k, nref)
	}
	return true
}

// messages returns every message in flight, oldest record first.
func (l *inflightLog) messages() ([]storage.Message, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.flushLocked(); err != nil {
		return nil, err
	}
	refs := make([]inflightRef, 0, len(l.live))
	for _, r := range l.live {
		refs = append(refs, r)
	}
	slices.SortFunc(refs, func(a, b inflightRef) int {
		if c := cmp.Compare(a.seg.id, b.seg.id); c != 0 {
			return c
		}
		return cmp.Compare(a.off, b.off)
	})
	out := make([]storage.Message, 0, len(refs))
	var rec []byte
	for _, r := range refs {
		rec = slices.Grow(rec[:0], int(r.n))[:r.n]
		if _, err := r.seg.f.ReadAt(rec, r.off); err != nil {
			return out, fmt.Errorf("inflight log: read %s: %w", r.seg.f.Name(), err)
		}
		_, _, body, err := splitRecord(rec[wal.Header:])
		if err == nil {
			var m storage.Message
			if m, err = decodeMessage(body); err == nil {
				out = append(out, m)
				continue
			}
		}
		return out, fmt.Errorf("inflight log: %s at %d: %w", r.seg.f.Name(), r.off, err)
	}
	return out, nil
}

// close closes the segment files.
func (l *inflightLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	errs := []error{l.flushLocked()}
	if l.timer != nil {
		l.timer.Stop()
	}
	for _, s := range l.segs {
		errs = append(errs, s.f.Close())
	}
	l.segs = nil
	return errors.Join(errs...)
}
