// Package wal is an append-only log of checksummed records in numbered
// segment files, after the embedded broker's in-flight log
// (broker/inflight.go, which frames its records with AppendRecord and
// ReadRecord and keeps segments of its own, since it needs each record's
// offset and per-segment live counts): one write(2) for any number of records, no memory
// map and no fsync, a CRC-32C per record, a torn tail dropped at open, and
// whole segment files deleted once their owner has no further use for them.
//
// Records survive a kill -9 of the process (they are in the page cache
// once write returns), not a power cut: nothing is fsynced. A record torn
// by a crash mid-write fails its checksum (or its length) at the next open
// and is dropped with the rest of its segment.
//
// What a record means, and when a segment may go, is the owner's business:
// Open hands every record back in order, and DropBefore (the oldest
// segments) or Drop (any one but the active) deletes segments.
package wal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/delen-edge/delen/internal/atomicfile"
)

// Record layout: an 8-byte header (the length of the body, uint32 little
// endian, and the CRC-32C of the body), then the body.
const (
	// Header is the bytes a record adds to its body.
	Header = 8
	// MaxBody bounds a record's body: a damaged length is caught by it.
	MaxBody = 1 << 30
	// DefaultSegmentSize is the size past which a new segment is started.
	DefaultSegmentSize = 8 << 20
	ext                = ".wal"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrDamaged marks a record that cannot be read back: torn, or not a
// record at all.
var ErrDamaged = errors.New("damaged record")

// AppendRecord frames the concatenation of parts as one record's body and
// appends it to buf (parts spare the caller a copy of a large body into
// one slice first); Write takes any number of records at once. A body is
// never empty: zeros (a file extended by a crash) must not read as
// records.
func AppendRecord(buf []byte, parts ...[]byte) []byte {
	start := len(buf)
	buf = append(buf, make([]byte, Header)...)
	for _, p := range parts {
		buf = append(buf, p...)
	}
	body := buf[start+Header:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(body, crcTable))
	return buf
}

// ReadRecord reads one record of at most left bytes (header included)
// from r into buf[:0] and returns its body; io.EOF at a clean end, an
// error wrapping ErrDamaged otherwise.
func ReadRecord(r io.Reader, buf []byte, left int64) ([]byte, error) {
	var h [Header]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.EOF {
			return buf[:0], io.EOF
		}
		return buf[:0], fmt.Errorf("%w: short header", ErrDamaged)
	}
	n := binary.LittleEndian.Uint32(h[0:4])
	if n == 0 || n > MaxBody || int64(n) > left-Header {
		return buf[:0], fmt.Errorf("%w: length %d with %d bytes left", ErrDamaged, n, left-Header)
	}
	buf = slices.Grow(buf[:0], int(n))[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return buf[:0], fmt.Errorf("%w: short body", ErrDamaged)
	}
	if crc32.Checksum(buf, crcTable) != binary.LittleEndian.Uint32(h[4:8]) {
		return buf[:0], fmt.Errorf("%w: checksum", ErrDamaged)
	}
	return buf, nil
}

// Options tunes a Log.
type Options struct {
	// SegmentSize is the size past which Write starts a new segment
	// (default DefaultSegmentSize). One Write never spans two segments.
	SegmentSize int64
	// Logger receives the warning about a damaged tail (default: none).
	Logger *slog.Logger
}

// Log is an open log. Its methods are safe for concurrent use.
type Log struct {
	dir     string
	segSize int64
	log     *slog.Logger

	mu   sync.Mutex
	segs []*segment // oldest first; the last one is written to
}

type segment struct {
	id   uint64
	f    *os.File
	size int64
}

// Open opens (creating) the log in dir, hands every record of its
// segments to replay, oldest first, with the id of the segment holding it
// and its offset there (the body is only valid during the call; the
// position is what ReadAt takes), and starts a new segment for
// what is written from now on. A damaged record ends its segment there:
// the file is truncated to the records before it, with a warning. An
// error from replay stops the open and is returned.
func Open(dir string, opt Options, replay func(seg uint64, off int64, body []byte) error) (*Log, error) {
	if opt.SegmentSize <= 0 {
		opt.SegmentSize = DefaultSegmentSize
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	l := &Log{dir: dir, segSize: opt.SegmentSize, log: opt.Logger}
	names, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	slices.Sort(names) // zero-padded hexadecimal ids: oldest first
	var next uint64 = 1
	for _, name := range names {
		var id uint64
		if _, err := fmt.Sscanf(filepath.Base(name), "%016x"+ext, &id); err != nil {
			continue
		}
		seg, err := l.replay(name, id, replay)
		if err != nil {
			l.Close()
			return nil, err
		}
		l.segs = append(l.segs, seg)
		next = id + 1
	}
	if err := l.roll(next); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// replay reads segment name's records; a damaged one ends the segment.
func (l *Log) replay(name string, id uint64, fn func(uint64, int64, []byte) error) (*segment, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("wal: open %s: %w", name, err)
	}
	seg := &segment{id: id, f: f}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("wal: %w", err)
	}
	r := bufio.NewReaderSize(f, 1<<16)
	var body []byte
	for {
		body, err = ReadRecord(r, body, fi.Size()-seg.size)
		if err == io.EOF {
			break
		}
		if err != nil {
			l.log.Warn("wal: damaged record: dropping the rest of the segment", "file", name,
				"offset", seg.size, "dropped_bytes", fi.Size()-seg.size, "error", err)
			if err := f.Truncate(seg.size); err != nil {
				f.Close()
				return nil, fmt.Errorf("wal: truncate %s: %w", name, err)
			}
			break
		}
		if fn != nil {
			if err := fn(id, seg.size, body); err != nil {
				f.Close()
				return nil, fmt.Errorf("wal: %s at %d: %w", name, seg.size, err)
			}
		}
		seg.size += Header + int64(len(body))
	}
	return seg, nil
}

// roll starts segment id and writes to it from now on. l.mu is held (or
// l not yet shared).
func (l *Log) roll(id uint64) error {
	name := filepath.Join(l.dir, fmt.Sprintf("%016x"+ext, id))
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("wal: create %s: %w", name, err)
	}
	l.segs = append(l.segs, &segment{id: id, f: f})
	return nil
}

// Write appends recs, one or more records built by AppendRecord, with one
// write(2) to the active segment (first starting a new one when recs would
// take it past the segment size), and returns the id of the segment that
// holds them and the offset of recs' first byte there. On an error nothing
// of recs is kept.
func (l *Log) Write(recs []byte) (seg uint64, off int64, err error) {
	if len(recs) == 0 {
		return 0, 0, errors.New("wal: nothing to write")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.segs) == 0 {
		return 0, 0, errors.New("wal: closed")
	}
	if a := l.active(); a.size > 0 && a.size+int64(len(recs)) > l.segSize {
		if err := l.roll(a.id + 1); err != nil {
			return 0, 0, err
		}
	}
	a := l.active()
	if _, err := a.f.WriteAt(recs, a.size); err != nil {
		// A short write (a full disk) would leave a torn record that the
		// next open drops anyway; cut it now so later writes follow whole
		// records.
		_ = a.f.Truncate(a.size)
		return 0, 0, fmt.Errorf("wal: append to %s: %w", a.f.Name(), err)
	}
	off = a.size
	a.size += int64(len(recs))
	return a.id, off, nil
}

// ErrNoSegment is ReadAt's and Scan's error for a segment that is not (or
// no longer) in the log.
var ErrNoSegment = errors.New("wal: no such segment")

// file is segment id's file and size, for a read outside l.mu: a read of
// a segment dropped meanwhile fails (the file is closed), it never reads
// another file.
func (l *Log) file(id uint64) (*os.File, int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.segs {
		if s.id == id {
			return s.f, s.size, nil
		}
	}
	return nil, 0, fmt.Errorf("%w: %016x", ErrNoSegment, id)
}

// ReadAt reads the record at offset off of segment seg (a position Write
// or Open's replay gave) into buf[:0] and returns its body: two pread(2)s,
// no lock held while reading. A segment dropped before or during the read
// gives an error wrapping ErrNoSegment.
func (l *Log) ReadAt(seg uint64, off int64, buf []byte) ([]byte, error) {
	f, size, err := l.file(seg)
	if err != nil {
		return buf[:0], err
	}
	var h [Header]byte
	if off < 0 || off > size-Header {
		return buf[:0], fmt.Errorf("%w: offset %d in %d bytes", ErrDamaged, off, size)
	}
	if _, err := f.ReadAt(h[:], off); err != nil {
		return buf[:0], l.readErr(seg, err)
	}
	n := binary.LittleEndian.Uint32(h[0:4])
	if n == 0 || n > MaxBody || int64(n) > size-off-Header {
		return buf[:0], fmt.Errorf("%w: length %d at %d in %d bytes", ErrDamaged, n, off, size)
	}
	buf = slices.Grow(buf[:0], int(n))[:n]
	if _, err := f.ReadAt(buf, off+Header); err != nil {
		return buf[:0], l.readErr(seg, err)
	}
	if crc32.Checksum(buf, crcTable) != binary.LittleEndian.Uint32(h[4:8]) {
		return buf[:0], fmt.Errorf("%w: checksum at %d", ErrDamaged, off)
	}
	return buf, nil
}

// readErr is a read's error; a file closed meanwhile was dropped.
func (l *Log) readErr(seg uint64, err error) error {
	if errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("%w: %016x dropped", ErrNoSegment, seg)
	}
	return fmt.Errorf("wal: read %016x: %w", seg, err)
}

// Scan hands each record of segment seg, in order, to fn with its offset
// (the body is only valid during the call). It reads what was written
// before it was called.
func (l *Log) Scan(seg uint64, fn func(off int64, body []byte) error) error {
	f, size, err := l.file(seg)
	if err != nil {
		return err
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<16)
	var body []byte
	for off := int64(0); off < size; off += Header + int64(len(body)) {
		if body, err = ReadRecord(r, body, size-off); err != nil {
			return fmt.Errorf("wal: scan %016x at %d: %w", seg, off, err)
		}
		if err := fn(off, body); err != nil {
			return err
		}
	}
	return nil
}

// active is the segment written to. l.mu is held.
func (l *Log) active() *segment { return l.segs[len(l.segs)-1] }

// Active is the id of the segment written to now.
func (l *Log) Active() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.segs) == 0 {
		return 0
	}
	return l.active().id
}

// Roll starts a new segment when the active one holds anything, so that
// DropBefore can delete what it holds.
func (l *Log) Roll() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.segs) == 0 {
		return errors.New("wal: closed")
	}
	if a := l.active(); a.size > 0 {
		return l.roll(a.id + 1)
	}
	return nil
}

// DropBefore deletes the segments whose id is below id, never the active
// one.
func (l *Log) DropBefore(id uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for len(l.segs) > 1 && l.segs[0].id < id {
		old := l.segs[0]
		l.segs = l.segs[1:]
		old.f.Close()
		if err := os.Remove(old.f.Name()); err != nil {
			errs = append(errs, fmt.Errorf("wal: remove segment: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Drop deletes segment id, which need not be the oldest (an owner that
// copies a segment's live records forward deletes it out of order); the
// active segment is never deleted. A read of it under way or later fails
// with ErrNoSegment. Dropping a segment not in the log does nothing.
func (l *Log) Drop(id uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, s := range l.segs {
		if s.id != id {
			continue
		}
		if i == len(l.segs)-1 {
			return fmt.Errorf("wal: segment %016x is the active one", id)
		}
		l.segs = slices.Delete(l.segs, i, i+1)
		s.f.Close()
		if err := os.Remove(s.f.Name()); err != nil {
			return fmt.Errorf("wal: remove segment: %w", err)
		}
		return nil
	}
	return nil
}

// Sync flushes segments ids to stable storage (fsync) and then the log's
// folder, so that the segments and their names survive a power cut. The
// log never syncs on its own: an owner that copies records forward calls
// it before it deletes the originals. Ids not in the log are skipped.
func (l *Log) Sync(ids ...uint64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.segs) == 0 {
		return errors.New("wal: closed")
	}
	for _, s := range l.segs {
		if slices.Contains(ids, s.id) {
			if err := s.f.Sync(); err != nil {
				return fmt.Errorf("wal: sync %s: %w", s.f.Name(), err)
			}
		}
	}
	if err := atomicfile.SyncDir(l.dir); err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	return nil
}

// Segments lists the ids of the log's segments, oldest first (the active
// one last).
func (l *Log) Segments() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]uint64, len(l.segs))
	for i, s := range l.segs {
		ids[i] = s.id
	}
	return ids
}

// Stats is a log's extent.
type Stats struct {
	Segments int   // segment files
	Bytes    int64 // their size
}

// Stats reports the log's segment files and their size.
func (l *Log) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := Stats{Segments: len(l.segs)}
	for _, seg := range l.segs {
		s.Bytes += seg.size
	}
	return s
}

// Close closes the segment files, deleting the active one when it is
// empty (no file is left behind by a log that holds nothing).
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for i, s := range l.segs {
		errs = append(errs, s.f.Close())
		if i == len(l.segs)-1 && s.size == 0 {
			errs = append(errs, os.Remove(s.f.Name()))
		}
	}
	l.segs = nil
	return errors.Join(errs...)
}
