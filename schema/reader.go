package schema

import (
	"encoding/binary"
	"math"
	"unicode/utf8"
)

// reader is a pull parser over one payload, implemented for msgpack (by hand,
// so that every length is checked against the bytes left before anything is
// allocated) and for JSON (over encoding/json's tokenizer). The typed
// decoders in codec.go are written once against it.
//
// Every method returns a bad_request *Error; after an error the reader is in
// an undefined position and must be abandoned.
type reader interface {
	// isNil consumes a nil (JSON null) if one is next and reports whether it
	// did.
	isNil() (bool, *Error)
	// mapStart starts reading a map; mapNext then yields its keys one by one
	// (the caller reads or skips each value) until ok is false.
	mapStart(path string) (iter, *Error)
	mapNext(it *iter) (key string, ok bool, err *Error)
	// arrayStart starts reading an array; arrayNext reports whether another
	// element follows (the caller reads it). it.n is the length when known
	// (msgpack), else -1.
	arrayStart(path string) (iter, *Error)
	arrayNext(it *iter) (bool, *Error)
	str(path string) (string, *Error)
	num(path string) (number, *Error)
	boolean(path string) (bool, *Error)
	// blob reads bytes: msgpack bin or str; JSON a base64 string.
	blob(path string) ([]byte, *Error)
	// floats reads an array of numbers (at most MaxElements).
	floats(path string) ([]float64, *Error)
	// meta reads a value for meta (see the package doc for the types),
	// refusing one of more than MaxMetaBytes encoded bytes before building
	// it, or nested deeper than MaxMetaDepth (the value itself is level 1).
	meta(path string) (any, *Error)
	skip() *Error
	// end checks that nothing but whitespace follows the top-level value.
	end() *Error
}

type iter struct {
	n    int
	path string
}

type numKind uint8

const (
	numInt numKind = iota
	numUint
	numFloat64
	numFloat32
)

// number is a decoded number: an int64, a uint64 above math.MaxInt64, or a
// float.
type number struct {
	kind numKind
	i    int64
	u    uint64
	f    float64
}

func (n number) float() float64 {
	switch n.kind {
	case numInt:
		return float64(n.i)
	case numUint:
		return float64(n.u)
	}
	return n.f
}

// int returns the number as an integer in [lo, hi]: integral floats are
// accepted (JavaScript clients have no integers).
func (n number) int(path string, lo, hi int64) (int64, *Error) {
	var v int64
	switch n.kind {
	case numInt:
		v = n.i
	case numUint:
		return 0, badRequest("%s: %d is out of range", path, n.u)
	default:
		if n.f != math.Trunc(n.f) || math.IsInf(n.f, 0) {
			return 0, badRequest("%s: must be an integer, got %g", path, n.f)
		}
		if n.f < -(1<<63) || n.f >= 1<<63 {
			return 0, badRequest("%s: %g is out of range", path, n.f)
		}
		v = int64(n.f)
	}
	if v < lo || v > hi {
		return 0, badRequest("%s: %d is out of range", path, v)
	}
	return v, nil
}

func typeError(path, want, got string) *Error {
	if path == "" {
		return badRequest("payload: expected %s, got %s", want, got)
	}
	return badRequest("%s: expected %s, got %s", path, want, got)
}

func metaDepth(path string) *Error {
	return badRequest("%s: nested deeper than %d levels", path, MaxMetaDepth)
}

// ---------------------------------------------------------------- msgpack

type mpReader struct {
	b   []byte
	off int
}

func newMsgpackReader(b []byte) *mpReader { return &mpReader{b: b} }

func (r *mpReader) truncated() *Error {
	return badRequest("malformed msgpack: unexpected end of data at byte %d", r.off)
}

func (r *mpReader) left() int { return len(r.b) - r.off }

func (r *mpReader) peek() (byte, *Error) {
	if r.off >= len(r.b) {
		return 0, r.truncated()
	}
	return r.b[r.off], nil
}

func (r *mpReader) take(n int) ([]byte, *Error) {
	if n < 0 || n > r.left() {
		return nil, r.truncated()
	}
	s := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return s, nil
}

func (r *mpReader) byte1() (byte, *Error) {
	c, err := r.peek()
	if err == nil {
		r.off++
	}
	return c, err
}

// uintN reads a big-endian unsigned integer of size bytes (1, 2, 4 or 8).
func (r *mpReader) uintN(size int) (uint64, *Error) {
	s, err := r.take(size)
	if err != nil {
		return 0, err
	}
	switch size {
	case 1:
		return uint64(s[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(s)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(s)), nil
	}
	return binary.BigEndian.Uint64(s), nil
}

// length reads a length of size bytes (1, 2 or 4) as an int.
func (r *mpReader) length(size int) (int, *Error) {
	n, err := r.uintN(size)
	return int(n), err // at most 1<<32-1: fits an int on 64-bit targets
}

func mpKind(c byte) string {
	switch {
	case c <= 0x7f || c >= 0xe0 || (c >= 0xcc && c <= 0xd3):
		return "an integer"
	case c <= 0x8f || c == 0xde || c == 0xdf:
		return "a map"
	case c <= 0x9f || c == 0xdc || c == 0xdd:
		return "an array"
	case c <= 0xbf || (c >= 0xd9 && c <= 0xdb):
		return "a string"
	case c == 0xc0:
		return "nil"
	case c == 0xc2 || c == 0xc3:
		return "a bool"
	case c >= 0xc4 && c <= 0xc6:
		return "binary"
	case c == 0xca || c == 0xcb:
		return "a float"
	case c == 0xc1:
		return "the reserved byte 0xc1"
	}
	return "an extension"
}

// strLen reads a str header; ok is false (nothing consumed) if the next
// value is not a str.
func (r *mpReader) strLen() (n int, ok bool, err *Error) {
	c, err := r.peek()
	if err != nil {
		return 0, false, err
	}
	switch {
	case c >= 0xa0 && c <= 0xbf:
		r.off++
		return int(c & 0x1f), true, nil
	case c >= 0xd9 && c <= 0xdb:
		r.off++
		n, err := r.length(1 << (c - 0xd9))
		return n, true, err
	}
	return 0, false, nil
}

func (r *mpReader) binLen() (n int, ok bool, err *Error) {
	c, err := r.peek()
	if err != nil {
		return 0, false, err
	}
	if c >= 0xc4 && c <= 0xc6 {
		r.off++
		n, err := r.length(1 << (c - 0xc4))
		return n, true, err
	}
	return 0, false, nil
}

func (r *mpReader) isNil() (bool, *Error) {
	c, err := r.peek()
	if err != nil {
		return false, err
	}
	if c == 0xc0 {
		r.off++
		return true, nil
	}
	return false, nil
}

func (r *mpReader) mapStart(path string) (iter, *Error) {
	c, err := r.peek()
	if err != nil {
		return iter{}, err
	}
	var n int
	switch {
	case c >= 0x80 && c <= 0x8f:
		r.off++
		n = int(c & 0x0f)
	case c == 0xde || c == 0xdf:
		r.off++
		if n, err = r.length(2 << (c - 0xde)); err != nil {
			return iter{}, err
		}
	default:
		return iter{}, typeError(path, "a map", mpKind(c))
	}
	if n > r.left()/2 { // every entry takes at least two bytes
		return iter{}, r.truncated()
	}
	return iter{n: n, path: path}, nil
}

func (r *mpReader) mapNext(it *iter) (string, bool, *Error) {
	for it.n > 0 {
		it.n--
		n, ok, err := r.strLen()
		if err != nil {
			return "", false, err
		}
		if !ok { // a non-string key: not a field of ours; skip key and value
			if err := r.skip(); err != nil {
				return "", false, err
			}
			if err := r.skip(); err != nil {
				return "", false, err
			}
			continue
		}
		s, err := r.take(n)
		if err != nil {
			return "", false, err
		}
		if !utf8.Valid(s) {
			return "", false, badRequest("%s: invalid UTF-8 in a key", orPayload(it.path))
		}
		return string(s), true, nil
	}
	return "", false, nil
}

func orPayload(path string) string {
	if path == "" {
		return "payload"
	}
	return path
}

func (r *mpReader) arrayStart(path string) (iter, *Error) {
	c, err := r.peek()
	if err != nil {
		return iter{}, err
	}
	var n int
	switch {
	case c >= 0x90 && c <= 0x9f:
		r.off++
		n = int(c & 0x0f)
	case c == 0xdc || c == 0xdd:
		r.off++
		if n, err = r.length(2 << (c - 0xdc)); err != nil {
			return iter{}, err
		}
	default:
		return iter{}, typeError(path, "an array", mpKind(c))
	}
	if n > r.left() { // every element takes at least one byte
		return iter{}, r.truncated()
	}
	return iter{n: n, path: path}, nil
}

func (r *mpReader) arrayNext(it *iter) (bool, *Error) {
	if it.n <= 0 {
		return false, nil
	}
	it.n--
	return true, nil
}

func (r *mpReader) str(path string) (string, *Error) {
	n, ok, err := r.strLen()
	if err != nil {
		return "", err
	}
	if !ok {
		return "", typeError(path, "a string", mpKind(r.b[r.off]))
	}
	s, err := r.take(n)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(s) {
		return "", badRequest("%s: invalid UTF-8", path)
	}
	return string(s), nil
}

func (r *mpReader) num(path string) (number, *Error) {
	c, err := r.peek()
	if err != nil {
		return number{}, err
	}
	switch {
	case c <= 0x7f:
		r.off++
		return number{kind: numInt, i: int64(c)}, nil
	case c >= 0xe0:
		r.off++
		return number{kind: numInt, i: int64(int8(c))}, nil
	case c >= 0xcc && c <= 0xcf: // uint 8..64
		r.off++
		u, err := r.uintN(1 << (c - 0xcc))
		if err != nil {
			return number{}, err
		}
		if u > math.MaxInt64 {
			return number{kind: numUint, u: u}, nil
		}
		return number{kind: numInt, i: int64(u)}, nil
	case c >= 0xd0 && c <= 0xd3: // int 8..64
		r.off++
		size := 1 << (c - 0xd0)
		u, err := r.uintN(size)
		if err != nil {
			return number{}, err
		}
		var v int64
		switch size {
		case 1:
			v = int64(int8(u))
		case 2:
			v = int64(int16(u))
		case 4:
			v = int64(int32(u))
		default:
			v = int64(u)
		}
		return number{kind: numInt, i: v}, nil
	case c == 0xca:
		r.off++
		u, err := r.uintN(4)
		if err != nil {
			return number{}, err
		}
		return number{kind: numFloat32, f: float64(math.Float32frombits(uint32(u)))}, nil
	case c == 0xcb:
		r.off++
		u, err := r.uintN(8)
		if err != nil {
			return number{}, err
		}
		return number{kind: numFloat64, f: math.Float64frombits(u)}, nil
	}
	return number{}, typeError(path, "a number", mpKind(c))
}

func (r *mpReader) boolean(path string) (bool, *Error) {
	c, err := r.peek()
	if err != nil {
		return false, err
	}
	if c == 0xc2 || c == 0xc3 {
		r.off++
		return c == 0xc3, nil
	}
	return false, typeError(path, "a bool", mpKind(c))
}

func (r *mpReader) blob(path string) ([]byte, *Error) {
	n, ok, err := r.binLen()
	if err != nil {
		return nil, err
	}
	if !ok {
		// Encoders without a bin type (msgpack "raw") send bytes as str.
		if n, ok, err = r.strLen(); err != nil {
			return nil, err
		}
		if !ok {
			return nil, typeError(path, "binary data", mpKind(r.b[r.off]))
		}
	}
	s, err := r.take(n)
	if err != nil {
		return nil, err
	}
	return append([]byte{}, s...), nil
}

func (r *mpReader) value(path string, depth int) (any, *Error) {
	c, err := r.peek()
	if err != nil {
		return nil, err
	}
	switch {
	case c == 0xc0:
		r.off++
		return nil, nil
	case c == 0xc2 || c == 0xc3:
		return r.boolean(path)
	case c <= 0x7f || c >= 0xe0 || (c >= 0xca && c <= 0xd3):
		n, err := r.num(path)
		if err != nil {
			return nil, err
		}
		switch n.kind {
		case numInt:
			return n.i, nil
		case numUint:
			return n.u, nil
		}
		if math.IsNaN(n.f) || math.IsInf(n.f, 0) {
			return nil, badRequest("%s: NaN and Inf are not allowed", path)
		}
		if n.kind == numFloat32 {
			return float32(n.f), nil
		}
		return n.f, nil
	case (c >= 0xa0 && c <= 0xbf) || (c >= 0xd9 && c <= 0xdb):
		return r.str(path)
	case c >= 0xc4 && c <= 0xc6:
		return r.blob(path)
	case (c >= 0x90 && c <= 0x9f) || c == 0xdc || c == 0xdd:
		if depth > MaxMetaDepth {
			return nil, metaDepth(path)
		}
		it, err := r.arrayStart(path)
		if err != nil {
			return nil, err
		}
		a := make([]any, 0, it.n)
		for it.n > 0 {
			it.n--
			v, err := r.value(path, depth+1)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		return a, nil
	case (c >= 0x80 && c <= 0x8f) || c == 0xde || c == 0xdf:
		if depth > MaxMetaDepth {
			return nil, metaDepth(path)
		}
		it, err := r.mapStart(path)
		if err != nil {
			return nil, err
		}
		m := make(map[string]any, min(it.n, 16))
		for it.n > 0 {
			it.n--
			kc, err := r.peek()
			if err != nil {
				return nil, err
			}
			if !(kc >= 0xa0 && kc <= 0xbf) && !(kc >= 0xd9 && kc <= 0xdb) {
				return nil, badRequest("%s: map keys must be strings", path)
			}
			k, err := r.str(path)
			if err != nil {
				return nil, err
			}
			v, err := r.value(path, depth+1)
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, nil
	}
	if c == 0xc1 {
		return nil, badRequest("malformed msgpack: reserved byte 0xc1 at byte %d", r.off)
	}
	return nil, badRequest("%s: msgpack extension types are not supported", path)
}

// skip skips one value without recursion or allocation: pending counts the
// values still to skip.
func (r *mpReader) skip() *Error {
	pending := 1
	for pending > 0 {
		pending--
		c, err := r.byte1()
		if err != nil {
			return err
		}
		var skipBytes, items int
		switch {
		case c <= 0x7f || c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		case c <= 0x8f:
			items = 2 * int(c&0x0f)
		case c <= 0x9f:
			items = int(c & 0x0f)
		case c <= 0xbf:
			skipBytes = int(c & 0x1f)
		case c == 0xc1:
			return badRequest("malformed msgpack: reserved byte 0xc1 at byte %d", r.off-1)
		case c >= 0xc4 && c <= 0xc6: // bin
			skipBytes, err = r.length(1 << (c - 0xc4))
		case c >= 0xc7 && c <= 0xc9: // ext: length, type, data
			skipBytes, err = r.length(1 << (c - 0xc7))
			skipBytes++
		case c == 0xca:
			skipBytes = 4
		case c == 0xcb:
			skipBytes = 8
		case c >= 0xcc && c <= 0xcf:
			skipBytes = 1 << (c - 0xcc)
		case c >= 0xd0 && c <= 0xd3:
			skipBytes = 1 << (c - 0xd0)
		case c >= 0xd4 && c <= 0xd8: // fixext: type + 1..16 bytes
			skipBytes = 1 + 1<<(c-0xd4)
		case c >= 0xd9 && c <= 0xdb: // str
			skipBytes, err = r.length(1 << (c - 0xd9))
		case c == 0xdc || c == 0xdd:
			items, err = r.length(2 << (c - 0xdc))
		case c == 0xde || c == 0xdf:
			items, err = r.length(2 << (c - 0xde))
			items *= 2
		}
		if err != nil {
			return err
		}
		if _, err := r.take(skipBytes); err != nil {
			return err
		}
		pending += items
		if pending > r.left() { // every pending value takes at least one byte
			return r.truncated()
		}
	}
	return nil
}

func (r *mpReader) floats(path string) ([]float64, *Error) {
	it, err := r.arrayStart(path)
	if err != nil {
		return nil, err
	}
	if it.n > MaxElements {
		return nil, badRequest("%s: more than %d values", path, MaxElements)
	}
	vals := make([]float64, it.n)
	for i := range vals {
		n, err := r.num(path)
		if err != nil {
			return nil, err
		}
		vals[i] = n.float()
	}
	return vals, nil
}

func (r *mpReader) meta(path string) (any, *Error) {
	start := r.off
	if err := r.skip(); err != nil {
		return nil, err
	}
	if size := r.off - start; size > MaxMetaBytes {
		return nil, metaSize(path, size)
	}
	r.off = start
	return r.value(path, 1)
}

func metaSize(path string, size int) *Error {
	return badRequest("%s: %d bytes, at most %d allowed", path, size, MaxMetaBytes)
}

func (r *mpReader) end() *Error {
	if r.off != len(r.b) {
		return badRequest("malformed msgpack: %d bytes of trailing data after the payload", len(r.b)-r.off)
	}
	return nil
}
