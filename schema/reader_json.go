package schema

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math"
	"strconv"
	"unicode/utf8"
)

// maxJSONDepth bounds the nesting of the parts of a JSON payload walked token
// by token (everything but skipped values, which encoding/json's scanner
// bounds itself).
const maxJSONDepth = 64

// jsonReader walks a JSON payload with encoding/json's tokenizer. It never
// holds a token back: to look ahead it reads the raw bytes after the
// decoder's input offset. Values it does not need token by token (skipped
// fields, number arrays, meta) it takes whole with Decode, which scans far
// faster than Token.
type jsonReader struct {
	p     []byte
	dec   *json.Decoder
	depth int
}

func newJSONReader(p []byte) *jsonReader {
	dec := json.NewDecoder(bytes.NewReader(p))
	dec.UseNumber()
	return &jsonReader{p: p, dec: dec}
}

func jsonSyntax(err error) *Error {
	var se *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: unexpected end of payload")
	case errors.As(err, &se):
		return badRequest("malformed JSON: %v (at byte %d)", se, se.Offset)
	}
	return badRequest("malformed JSON: %v", err)
}

// next returns the next token and the offset where its raw text (with any
// preceding separator) starts.
func (r *jsonReader) next() (json.Token, int, *Error) {
	start := int(r.dec.InputOffset())
	tok, err := r.dec.Token()
	if err != nil {
		return nil, start, jsonSyntax(err)
	}
	if d, ok := tok.(json.Delim); ok {
		switch d {
		case '{', '[':
			r.depth++
			if r.depth > maxJSONDepth {
				return nil, start, badRequest("malformed JSON: nested deeper than %d levels", maxJSONDepth)
			}
		default:
			r.depth--
		}
	}
	return tok, start, nil
}

// peekByte returns the first byte of the next value or closing delimiter,
// skipping whitespace and separators, or 0 at the end of the payload.
func (r *jsonReader) peekByte() byte {
	for i := int(r.dec.InputOffset()); i >= 0 && i < len(r.p); i++ {
		switch c := r.p[i]; c {
		case ' ', '\t', '\r', '\n', ':', ',':
		default:
			return c
		}
	}
	return 0
}

// validRaw reports whether p[start:InputOffset] (the raw text of the token
// just read) is valid UTF-8; encoding/json would silently replace invalid
// bytes with U+FFFD.
func (r *jsonReader) validRaw(start int) bool {
	end := int(r.dec.InputOffset())
	if start < 0 || end > len(r.p) || start > end {
		return false
	}
	return utf8.Valid(r.p[start:end])
}

func jsonKind(tok json.Token) string {
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return "the end of a container"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a bool"
	case nil:
		return "null"
	}
	return "a value"
}

// jsonKindByte names the kind of the value starting with c.
func jsonKindByte(c byte) string {
	switch {
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 'n':
		return "null"
	case c == 't' || c == 'f':
		return "a bool"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a number"
	case c == 0:
		return "the end of the payload"
	}
	return "a value"
}

func (r *jsonReader) isNil() (bool, *Error) {
	if r.peekByte() != 'n' {
		return false, nil
	}
	tok, _, err := r.next()
	if err != nil {
		return false, err
	}
	if tok != nil {
		return false, badRequest("malformed JSON: unexpected %s", jsonKind(tok))
	}
	return true, nil
}

func (r *jsonReader) mapStart(path string) (iter, *Error) {
	tok, _, err := r.next()
	if err != nil {
		return iter{}, err
	}
	if tok != json.Delim('{') {
		return iter{}, typeError(path, "an object", jsonKind(tok))
	}
	return iter{n: -1, path: path}, nil
}

func (r *jsonReader) mapNext(it *iter) (string, bool, *Error) {
	tok, start, err := r.next()
	if err != nil {
		return "", false, err
	}
	if tok == json.Delim('}') {
		return "", false, nil
	}
	k, ok := tok.(string)
	if !ok { // encoding/json guarantees string keys
		return "", false, badRequest("malformed JSON: object key is not a string")
	}
	if !r.validRaw(start) {
		return "", false, badRequest("%s: invalid UTF-8 in a key", orPayload(it.path))
	}
	return k, true, nil
}

func (r *jsonReader) arrayStart(path string) (iter, *Error) {
	tok, _, err := r.next()
	if err != nil {
		return iter{}, err
	}
	if tok != json.Delim('[') {
		return iter{}, typeError(path, "an array", jsonKind(tok))
	}
	return iter{n: -1, path: path}, nil
}

func (r *jsonReader) arrayNext(it *iter) (bool, *Error) {
	if r.peekByte() != ']' {
		return true, nil // an element, or a syntax error the next read reports
	}
	_, _, err := r.next()
	return false, err
}

func (r *jsonReader) str(path string) (string, *Error) {
	tok, start, err := r.next()
	if err != nil {
		return "", err
	}
	s, ok := tok.(string)
	if !ok {
		return "", typeError(path, "a string", jsonKind(tok))
	}
	if !r.validRaw(start) {
		return "", badRequest("%s: invalid UTF-8", path)
	}
	return s, nil
}

func (r *jsonReader) num(path string) (number, *Error) {
	tok, _, err := r.next()
	if err != nil {
		return number{}, err
	}
	s, ok := tok.(json.Number)
	if !ok {
		return number{}, typeError(path, "a number", jsonKind(tok))
	}
	return parseJSONNumber(path, string(s))
}

func parseJSONNumber(path, s string) (number, *Error) {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return number{kind: numInt, i: i}, nil
	}
	if u, err := strconv.ParseUint(s, 10, 64); err == nil {
		return number{kind: numUint, u: u}, nil
	}
	f, err := parseJSONFloat(s)
	if err != nil {
		return number{}, badRequest("%s: number %.32s is out of range", path, s)
	}
	return number{kind: numFloat64, f: f}, nil
}

// parseJSONFloat parses a valid JSON number; only an overflow fails (an
// underflow rounds to 0 or a subnormal).
func parseJSONFloat(s string) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil && (!errors.Is(err, strconv.ErrRange) || math.IsInf(f, 0)) {
		return 0, err
	}
	return f, nil
}

func (r *jsonReader) boolean(path string) (bool, *Error) {
	tok, _, err := r.next()
	if err != nil {
		return false, err
	}
	b, ok := tok.(bool)
	if !ok {
		return false, typeError(path, "a bool", jsonKind(tok))
	}
	return b, nil
}

func (r *jsonReader) blob(path string) ([]byte, *Error) {
	s, err := r.str(path)
	if err != nil {
		return nil, err
	}
	b, derr := base64.StdEncoding.DecodeString(s)
	if derr != nil {
		b, derr = base64.RawStdEncoding.DecodeString(s)
	}
	if derr != nil {
		return nil, badRequest("%s: invalid base64", path)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// rawValue is filled by Decode with the raw text of one (valid) JSON value,
// without copying it.
type rawValue struct{ b []byte }

func (v *rawValue) UnmarshalJSON(b []byte) error {
	v.b = b
	return nil
}

// raw reads the next value whole. The returned slice aliases the decoder's
// buffer and is valid until the next read.
func (r *jsonReader) raw() ([]byte, *Error) {
	var v rawValue
	if err := r.dec.Decode(&v); err != nil {
		return nil, jsonSyntax(err)
	}
	return v.b, nil
}

func (r *jsonReader) skip() *Error {
	_, err := r.raw()
	return err
}

func (r *jsonReader) floats(path string) ([]float64, *Error) {
	if c := r.peekByte(); c != '[' {
		return nil, typeError(path, "an array", jsonKindByte(c))
	}
	b, err := r.raw()
	if err != nil {
		return nil, err
	}
	// b is a valid JSON array: split it at commas, insisting on numbers
	// (anything else fails at its first byte, before a comma inside it could
	// mislead the split).
	vals := make([]float64, 0, min(len(b)/2, MaxElements))
	i := 1 // after '['
	for {
		for i < len(b) && isJSONSpace(b[i]) {
			i++
		}
		if i >= len(b) || b[i] == ']' {
			return vals, nil
		}
		c := b[i]
		if c != '-' && (c < '0' || c > '9') {
			return nil, typeError(path, "a number", jsonKindByte(c))
		}
		j := i
		for j < len(b) && b[j] != ',' && b[j] != ']' && !isJSONSpace(b[j]) {
			j++
		}
		if len(vals) == MaxElements {
			return nil, badRequest("%s: more than %d values", path, MaxElements)
		}
		f, perr := parseJSONFloat(string(b[i:j]))
		if perr != nil {
			return nil, badRequest("%s[%d]: number %.32s is out of range", path, len(vals), b[i:j])
		}
		vals = append(vals, f)
		for j < len(b) && isJSONSpace(b[j]) {
			j++
		}
		if j < len(b) && b[j] == ',' {
			j++
		}
		i = j
	}
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func (r *jsonReader) meta(path string) (any, *Error) {
	b, err := r.raw()
	if err != nil {
		return nil, err
	}
	if len(b) > MaxMetaBytes {
		return nil, metaSize(path, len(b))
	}
	sub := newJSONReader(b)
	return sub.value(path, 1)
}

func (r *jsonReader) value(path string, depth int) (any, *Error) {
	tok, start, err := r.next()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case nil, bool:
		return t, nil
	case string:
		if !r.validRaw(start) {
			return nil, badRequest("%s: invalid UTF-8 in a string", path)
		}
		return t, nil
	case json.Number:
		n, err := parseJSONNumber(path, string(t))
		if err != nil {
			return nil, err
		}
		return jsonMetaNumber(n), nil
	case json.Delim:
		if depth > MaxMetaDepth {
			return nil, metaDepth(path)
		}
		switch t {
		case '[':
			a := []any{}
			it := iter{n: -1, path: path}
			for {
				more, err := r.arrayNext(&it)
				if err != nil {
					return nil, err
				}
				if !more {
					return a, nil
				}
				v, err := r.value(path, depth+1)
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
		case '{':
			m := map[string]any{}
			it := iter{n: -1, path: path}
			for {
				k, ok, err := r.mapNext(&it)
				if err != nil {
					return nil, err
				}
				if !ok {
					return m, nil
				}
				v, err := r.value(path, depth+1)
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
		}
	}
	return nil, badRequest("malformed JSON: unexpected %s", jsonKind(tok))
}

// jsonMetaNumber gives a JSON number in meta its Go type: int64 when it is
// integral and fits (uint64 above math.MaxInt64), float64 otherwise. JSON
// does not tell 1 from 1.0, and this way re-encoding is stable.
func jsonMetaNumber(n number) any {
	switch n.kind {
	case numInt:
		return n.i
	case numUint:
		return n.u
	}
	f := n.f
	if f == math.Trunc(f) {
		switch {
		case f >= -(1<<63) && f < 1<<63:
			return int64(f)
		case f >= 0 && f < 1<<64:
			return uint64(f)
		}
	}
	return f
}

func (r *jsonReader) end() *Error {
	if _, err := r.dec.Token(); err != io.EOF {
		return badRequest("malformed JSON: trailing data after the payload")
	}
	return nil
}
