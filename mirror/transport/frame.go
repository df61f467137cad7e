// Package transport carries messages between the members, the arbiter and
// the agents of a tier: TCP with mutual TLS and a small framed protocol of
// our own.
//
// Why not gRPC: the journal already has a checksummed, versioned frame
// format; shipping those bytes unchanged inside a frame keeps the journal's
// CRC end to end (a record is verified on the receiver exactly as it was
// written on the sender's disk) with no re-encoding, no protobuf schema to
// keep in step with the journal, and no HTTP/2 machinery between a commit
// and its acknowledgement. A plain TCP stream is also what the fault proxy
// of the tests cuts, delays and drops.
//
// Frame layout (all integers big-endian):
//
//	offset  size  field
//	0       2     magic "TM"
//	2       1     protocol version (1)
//	3       1     message type (opaque to this package; 0 is invalid)
//	4       4     body length n (<= MaxBody)
//	8       4     CRC-32C (Castagnoli) of bytes 0..7 and the body
//	12      n     body:
//	              1   tier length t (1..63)   t  tier
//	              1   sender length s (1..63) s  sender (member, "arbiter", agent name)
//	              8   epoch
//	              ... payload (n - 10 - t - s bytes)
//
// Every frame names its tier, its sender and the sender's epoch. The
// receiver checks that the sender named in the frame is the identity in the
// peer's certificate, so a member cannot speak for another.
//
// This package must never deliver a frame whose CRC, lengths or header do
// not check out: such a frame closes the connection with a reason.
package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Format constants: part of the wire format.
const (
	Magic       = "TM"
	Version     = 1
	HeaderSize  = 12
	MaxBody     = 64<<20 + 1<<10 // a full journal record plus the frame's own fields
	maxNameSize = 63
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBadFrame is wrapped by every decoding error.
var ErrBadFrame = errors.New("transport: bad frame")

// Message is one frame's content.
type Message struct {
	Type    uint8
	Tier    string
	From    string
	Epoch   uint64
	Payload []byte
}

// AppendFrame appends m's frame to dst.
func AppendFrame(dst []byte, m Message) ([]byte, error) {
	if m.Type == 0 {
		return dst, fmt.Errorf("%w: message type 0", ErrBadFrame)
	}
	if len(m.Tier) == 0 || len(m.Tier) > maxNameSize || len(m.From) == 0 || len(m.From) > maxNameSize {
		return dst, fmt.Errorf("%w: tier and sender must be 1..%d bytes", ErrBadFrame, maxNameSize)
	}
	n := 1 + len(m.Tier) + 1 + len(m.From) + 8 + len(m.Payload)
	if n > MaxBody {
		return dst, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrBadFrame, n, MaxBody)
	}
	start := len(dst)
	dst = append(dst, Magic[0], Magic[1], Version, m.Type)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	dst = append(dst, 0, 0, 0, 0) // CRC, filled below
	dst = append(dst, byte(len(m.Tier)))
	dst = append(dst, m.Tier...)
	dst = append(dst, byte(len(m.From)))
	dst = append(dst, m.From...)
	dst = binary.BigEndian.AppendUint64(dst, m.Epoch)
	dst = append(dst, m.Payload...)
	frame := dst[start:]
	crc := crc32.Update(crc32.Checksum(frame[:8], castagnoli), castagnoli, frame[HeaderSize:])
	binary.BigEndian.PutUint32(frame[8:12], crc)
	return dst, nil
}

// ReadFrame reads and verifies one frame from r. io.EOF means the stream
// ended cleanly between frames.
func ReadFrame(r io.Reader) (Message, error) {
	var hdr [HeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return Message{}, fmt.Errorf("%w: stream ended inside a frame header", ErrBadFrame)
		}
		return Message{}, err
	}
	n, err := checkHeader(hdr[:])
	if err != nil {
		return Message{}, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return Message{}, fmt.Errorf("%w: stream ended inside a frame body: %v", ErrBadFrame, err)
	}
	return decodeBody(hdr[:], body)
}

// DecodeFrame decodes one frame from the start of b and returns it with the
// number of bytes it used.
func DecodeFrame(b []byte) (Message, int, error) {
	if len(b) < HeaderSize {
		return Message{}, 0, fmt.Errorf("%w: %d bytes, shorter than a header", ErrBadFrame, len(b))
	}
	n, err := checkHeader(b[:HeaderSize])
	if err != nil {
		return Message{}, 0, err
	}
	if len(b)-HeaderSize < n {
		return Message{}, 0, fmt.Errorf("%w: body needs %d bytes, have %d", ErrBadFrame, n, len(b)-HeaderSize)
	}
	m, err := decodeBody(b[:HeaderSize], b[HeaderSize:HeaderSize+n])
	return m, HeaderSize + n, err
}

func checkHeader(hdr []byte) (int, error) {
	if hdr[0] != Magic[0] || hdr[1] != Magic[1] {
		return 0, fmt.Errorf("%w: bad magic %q", ErrBadFrame, hdr[:2])
	}
	if hdr[2] != Version {
		return 0, fmt.Errorf("%w: protocol version %d, this build speaks %d", ErrBadFrame, hdr[2], Version)
	}
	if hdr[3] == 0 {
		return 0, fmt.Errorf("%w: message type 0", ErrBadFrame)
	}
	n := binary.BigEndian.Uint32(hdr[4:8])
	if n < 1+1+1+1+8 || n > MaxBody {
		return 0, fmt.Errorf("%w: body length %d out of range", ErrBadFrame, n)
	}
	return int(n), nil
}

func decodeBody(hdr, body []byte) (Message, error) {
	want := binary.BigEndian.Uint32(hdr[8:12])
	if got := crc32.Update(crc32.Checksum(hdr[:8], castagnoli), castagnoli, body); got != want {
		return Message{}, fmt.Errorf("%w: checksum mismatch (got %08x, frame says %08x)", ErrBadFrame, got, want)
	}
	m := Message{Type: hdr[3]}
	rest := body
	var err error
	if m.Tier, rest, err = name(rest, "tier"); err != nil {
		return Message{}, err
	}
	if m.From, rest, err = name(rest, "sender"); err != nil {
		return Message{}, err
	}
	if len(rest) < 8 {
		return Message{}, fmt.Errorf("%w: body too short for the epoch", ErrBadFrame)
	}
	m.Epoch = binary.BigEndian.Uint64(rest)
	m.Payload = rest[8:]
	return m, nil
}

func name(b []byte, what string) (string, []byte, error) {
	if len(b) < 1 {
		return "", nil, fmt.Errorf("%w: body too short for the %s", ErrBadFrame, what)
	}
	n := int(b[0])
	if n == 0 || n > maxNameSize || len(b) < 1+n {
		return "", nil, fmt.Errorf("%w: %s length %d out of range", ErrBadFrame, what, n)
	}
	return string(b[1 : 1+n]), b[1+n:], nil
}
