package onnxgraph

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// The ONNX protobuf encoding, written by hand for exactly the messages the
// builder emits (onnx.proto: ModelProto, GraphProto, NodeProto,
// AttributeProto, TensorProto, ValueInfoProto, TypeProto, TensorShapeProto,
// OperatorSetIdProto, StringStringEntryProto). It writes what a generated
// proto3 encoder writes in deterministic mode: fields in field-number
// order, scalars that are zero left out (except the members of a oneof),
// repeated numbers packed. testdata/all-ops.onnx pins the bytes.

// Field numbers (onnx.proto).
const (
	modelIRVersion     = 1
	modelProducerName  = 2
	modelGraph         = 7
	modelOpsetImport   = 8
	modelMetadataProps = 14

	opsetVersion = 2

	entryKey   = 1
	entryValue = 2

	graphNode        = 1
	graphName        = 2
	graphInitializer = 5
	graphInput       = 11
	graphOutput      = 12

	nodeInput     = 1
	nodeOutput    = 2
	nodeName      = 3
	nodeOpType    = 4
	nodeAttribute = 5

	attrName      = 1
	attrF         = 2
	attrI         = 3
	attrIntsField = 8
	attrType      = 20

	tensorDims      = 1
	tensorDataType  = 2
	tensorFloatData = 4
	tensorInt64Data = 7
	tensorName      = 8
	tensorRawData   = 9

	valueName = 1
	valueType = 2

	typeTensorType = 1
	tensorElemType = 1
	tensorShape    = 2
	shapeDim       = 1
	dimValue       = 1
	dimParam       = 2
)

// Enum values (onnx.proto).
const (
	attrFloat int32 = 1 // AttributeProto.FLOAT
	attrInt   int32 = 2 // AttributeProto.INT
	attrInts  int32 = 7 // AttributeProto.INTS

	dataFloat int32 = 1 // TensorProto.FLOAT
	dataInt64 int32 = 7 // TensorProto.INT64
)

// Wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

// pb is a protobuf message being written.
type pb []byte

func (b *pb) varint(v uint64) { *b = binary.AppendUvarint(*b, v) }

func (b *pb) tag(field, wire int) { b.varint(uint64(field)<<3 | uint64(wire)) }

// int writes a varint field, left out when zero (proto3).
func (b *pb) int(field int, v int64) {
	if v != 0 {
		b.tag(field, wireVarint)
		b.varint(uint64(v))
	}
}

// str writes a string field, left out when empty (proto3).
func (b *pb) str(field int, s string) {
	if s != "" {
		b.tag(field, wireBytes)
		b.varint(uint64(len(s)))
		*b = append(*b, s...)
	}
}

// bytesField writes a length-delimited field (a message or a repeated
// string element): always written, even when empty.
func (b *pb) bytesField(field int, p []byte) {
	b.tag(field, wireBytes)
	b.varint(uint64(len(p)))
	*b = append(*b, p...)
}

// packed writes a packed repeated int64 field, left out when empty.
func (b *pb) packed(field int, v []int64) {
	if len(v) == 0 {
		return
	}
	var body pb
	for _, x := range v {
		body.varint(uint64(x))
	}
	b.bytesField(field, body)
}

// encode writes the ModelProto of g.
func (g *Graph) encode() []byte {
	var gr pb
	for _, n := range g.nodes {
		gr.bytesField(graphNode, n.encode())
	}
	gr.str(graphName, g.name)
	for _, t := range g.inits {
		gr.bytesField(graphInitializer, t.encode())
	}
	for _, v := range g.inputs {
		gr.bytesField(graphInput, v.encode())
	}
	for _, v := range g.outputs {
		gr.bytesField(graphOutput, v.encode())
	}

	m := make(pb, 0, len(gr)+64+32*len(g.meta))
	m.int(modelIRVersion, irVersion)
	m.str(modelProducerName, "delen")
	m.bytesField(modelGraph, gr)
	var opset pb // domain "" (the default domain) is left out
	opset.int(opsetVersion, Opset)
	m.bytesField(modelOpsetImport, opset)
	for _, k := range g.sortedMeta() {
		var e pb
		e.str(entryKey, k)
		e.str(entryValue, g.meta[k])
		m.bytesField(modelMetadataProps, e)
	}
	return m
}

func (n *node) encode() pb {
	var b pb
	for _, in := range n.inputs {
		b.bytesField(nodeInput, []byte(in))
	}
	b.bytesField(nodeOutput, []byte(n.output))
	b.str(nodeName, n.name)
	b.str(nodeOpType, n.op)
	for _, a := range n.attrs {
		b.bytesField(nodeAttribute, a.encode())
	}
	return b
}

func (a *Attribute) encode() pb {
	var b pb
	b.str(attrName, a.name)
	if bits := math.Float32bits(a.f); bits != 0 {
		b.tag(attrF, wireFixed32)
		b = binary.LittleEndian.AppendUint32(b, bits)
	}
	b.int(attrI, a.i)
	b.packed(attrIntsField, a.ints)
	b.int(attrType, int64(a.typ))
	return b
}

func (t *tensor) encode() pb {
	b := make(pb, 0, len(t.raw)+len(t.name)+32)
	b.packed(tensorDims, t.dims)
	b.int(tensorDataType, int64(t.dataType))
	b.packed(tensorInt64Data, t.int64s)
	b.str(tensorName, t.name)
	if len(t.raw) > 0 {
		b.bytesField(tensorRawData, t.raw)
	}
	return b
}

func (v *valueInfo) encode() pb {
	var shape pb
	for _, d := range v.dims {
		var dim pb // a oneof member: written even when zero or empty
		if d.Param != "" {
			dim.bytesField(dimParam, []byte(d.Param))
		} else {
			dim.tag(dimValue, wireVarint)
			dim.varint(uint64(d.Value))
		}
		shape.bytesField(shapeDim, dim)
	}
	var tt pb
	tt.int(tensorElemType, int64(dataFloat))
	tt.bytesField(tensorShape, shape)
	var typ pb
	typ.bytesField(typeTensorType, tt)
	var b pb
	b.str(valueName, v.name)
	b.bytesField(valueType, typ)
	return b
}

// ---------------------------------------------------------------- reading

// errTruncated is a field that runs past the end of its message.
var errTruncated = errors.New("truncated protobuf")

// pbReader reads the fields of one message.
type pbReader struct {
	b   []byte
	off int
}

func (r *pbReader) more() bool { return r.off < len(r.b) }

func (r *pbReader) varint() (uint64, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	if n <= 0 {
		return 0, errTruncated
	}
	r.off += n
	return v, nil
}

// next reads a field's tag.
func (r *pbReader) next() (field int, wire int, err error) {
	t, err := r.varint()
	if err != nil {
		return 0, 0, err
	}
	if t>>3 == 0 || t>>3 > math.MaxInt32 {
		return 0, 0, fmt.Errorf("field number %d at byte %d", t>>3, r.off)
	}
	return int(t >> 3), int(t & 7), nil
}

// bytes reads a length-delimited value.
func (r *pbReader) bytes() ([]byte, error) {
	n, err := r.varint()
	if err != nil {
		return nil, err
	}
	if n > uint64(len(r.b)-r.off) {
		return nil, errTruncated
	}
	p := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return p, nil
}

// skip skips a value of the given wire type.
func (r *pbReader) skip(wire int) error {
	var n int
	switch wire {
	case wireVarint:
		_, err := r.varint()
		return err
	case wireBytes:
		_, err := r.bytes()
		return err
	case wireFixed64:
		n = 8
	case wireFixed32:
		n = 4
	default:
		return fmt.Errorf("wire type %d at byte %d", wire, r.off)
	}
	if n > len(r.b)-r.off {
		return errTruncated
	}
	r.off += n
	return nil
}

// fields calls f for every field of a message; f reads the value or
// returns handled=false to have it skipped.
func fields(b []byte, f func(r *pbReader, field, wire int) (handled bool, err error)) error {
	r := &pbReader{b: b}
	for r.more() {
		field, wire, err := r.next()
		if err != nil {
			return err
		}
		ok, err := f(r, field, wire)
		if err != nil {
			return err
		}
		if !ok {
			if err := r.skip(wire); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeInitializers reads the initializers of a ModelProto's graph (their
// name, data type, raw data and float data).
func decodeInitializers(model []byte) ([]tensor, error) {
	var out []tensor
	err := fields(model, func(r *pbReader, field, wire int) (bool, error) {
		if field != modelGraph || wire != wireBytes {
			return false, nil
		}
		graph, err := r.bytes()
		if err != nil {
			return true, err
		}
		return true, fields(graph, func(r *pbReader, field, wire int) (bool, error) {
			if field != graphInitializer || wire != wireBytes {
				return false, nil
			}
			p, err := r.bytes()
			if err != nil {
				return true, err
			}
			t, err := decodeTensor(p)
			out = append(out, t)
			return true, err
		})
	})
	return out, err
}

func decodeTensor(p []byte) (tensor, error) {
	var t tensor
	err := fields(p, func(r *pbReader, field, wire int) (bool, error) {
		switch {
		case field == tensorDataType && wire == wireVarint:
			v, err := r.varint()
			t.dataType = int32(v)
			return true, err
		case field == tensorName && wire == wireBytes:
			s, err := r.bytes()
			t.name = string(s)
			return true, err
		case field == tensorRawData && wire == wireBytes:
			s, err := r.bytes()
			t.raw = append([]byte(nil), s...)
			return true, err
		case field == tensorFloatData && wire == wireBytes: // packed
			s, err := r.bytes()
			if err != nil {
				return true, err
			}
			if len(s)%4 != 0 {
				return true, fmt.Errorf("initializer %s: float_data of %d bytes", t.name, len(s))
			}
			for i := 0; i < len(s); i += 4 {
				t.floats = append(t.floats, math.Float32frombits(binary.LittleEndian.Uint32(s[i:])))
			}
			return true, nil
		case field == tensorFloatData && wire == wireFixed32: // not packed
			if len(r.b)-r.off < 4 {
				return true, errTruncated
			}
			t.floats = append(t.floats, math.Float32frombits(binary.LittleEndian.Uint32(r.b[r.off:])))
			r.off += 4
			return true, nil
		}
		return false, nil
	})
	return t, err
}
