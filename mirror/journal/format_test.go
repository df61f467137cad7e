package journal

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
	}{
		{"data", Record{Type: TypeData, Epoch: 3, LSN: 7, Database: "fhir", Payload: EncodeOps([]Op{{Kind: OpSet, Key: []byte("k"), Value: []byte("v")}})}},
		{"empty payload", Record{Type: TypeData, Epoch: 0, LSN: 1, Database: "a", Payload: nil}},
		{"longest name", Record{Type: TypeData, Epoch: 1, LSN: 1 << 40, Database: strings.Repeat("z", MaxDatabaseName), Payload: []byte{1, 2, 3}}},
		{"epoch marker", Record{Type: TypeEpochMarker, Epoch: 9, LSN: 100, Payload: EncodeEpochMarker(8, 99)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := appendFrame([]byte("prefix"), tc.rec.Type, tc.rec.Epoch, tc.rec.LSN, tc.rec.LSN, tc.rec.Database, tc.rec.Payload)
			b = b[len("prefix"):]
			if len(b) != frameSize(tc.rec.Database, tc.rec.Payload) {
				t.Fatalf("frame size %d, want %d", len(b), frameSize(tc.rec.Database, tc.rec.Payload))
			}
			f, n, ferr := decodeFrame(append(b, 0xEE)) // trailing byte belongs to the next frame
			if ferr != nil {
				t.Fatalf("decode: %v", ferr)
			}
			if n != len(b) {
				t.Fatalf("decoded size %d, want %d", n, len(b))
			}
			want := tc.rec
			if len(want.Payload) == 0 {
				want.Payload, f.Payload = nil, nil
			}
			if err := sameRecord(f.Record, want); err != nil {
				t.Fatal(err)
			}
			if f.group != tc.rec.LSN {
				t.Fatalf("group %d, want %d", f.group, tc.rec.LSN)
			}
		})
	}
}

// TestFrameGolden pins the byte layout: if it fails, the format changed and
// FormatVersion must change with it.
func TestFrameGolden(t *testing.T) {
	got := appendFrame(nil, TypeData, 2, 5, 4, "fhir", []byte("hi"))
	const want = "24000000" + // length 36 = 30 + 4 + 2
		"8dc27fd5" + // CRC-32C (checked against an independent implementation)
		"01" + // type data
		"0200000000000000" + // epoch 2
		"0500000000000000" + // LSN 5
		"0400000000000000" + // group LSN 4
		"04" + "66686972" + // "fhir"
		"02000000" + "6869" // payload "hi"
	if hex.EncodeToString(got) != want {
		t.Fatalf("frame bytes changed:\n got %x\nwant %s", got, want)
	}
	hdr := encodeSegmentHeader(1)
	const wantHdr = "544e444d4a524e4c" + "01000000" + "0100000000000000" + "c9322ed0"
	if hex.EncodeToString(hdr) != wantHdr {
		t.Fatalf("segment header bytes changed:\n got %x\nwant %s", hdr, wantHdr)
	}
	ops := EncodeOps([]Op{{Kind: OpSet, Key: []byte("a"), Value: []byte("b")}, {Kind: OpDelete, Key: []byte("c")}})
	const wantOps = "01" + "02000000" + "01" + "01000000" + "61" + "01000000" + "62" + "02" + "01000000" + "63"
	if hex.EncodeToString(ops) != wantOps {
		t.Fatalf("ops bytes changed:\n got %x\nwant %s", ops, wantOps)
	}
	if got, want := hex.EncodeToString(EncodeEpochMarker(1, 2)), "01"+"0100000000000000"+"0200000000000000"; got != want {
		t.Fatalf("epoch marker bytes changed: got %s want %s", got, want)
	}
}

func TestDecodeFrameRejects(t *testing.T) {
	good := appendFrame(nil, TypeData, 1, 10, 10, "fhir", []byte("payload"))
	// mutate returns a copy of good with f applied and the CRC recomputed if fix.
	mutate := func(fix bool, f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		if fix {
			binary.LittleEndian.PutUint32(b[4:], crcFrame(b))
		}
		return b
	}
	tests := []struct {
		name       string
		b          []byte
		incomplete bool
		reason     string
	}{
		{"empty", nil, true, "incomplete"},
		{"short header", good[:7], true, "incomplete"},
		{"short body", good[:len(good)-1], true, "incomplete"},
		{"length too small", mutate(false, func(b []byte) { b[0], b[1], b[2], b[3] = 3, 0, 0, 0 }), false, "out of range"},
		{"length too large", mutate(false, func(b []byte) { b[0], b[1], b[2], b[3] = 0xff, 0xff, 0xff, 0xff }), false, "out of range"},
		{"bit flip in payload", mutate(false, func(b []byte) { b[len(b)-1] ^= 1 }), false, "checksum"},
		{"bit flip in LSN", mutate(false, func(b []byte) { b[17] ^= 0x10 }), false, "checksum"},
		{"bit flip in CRC", mutate(false, func(b []byte) { b[5] ^= 0x80 }), false, "checksum"},
		{"unknown type", mutate(true, func(b []byte) { b[8] = 9 }), false, "unknown type"},
		{"database too long", mutate(true, func(b []byte) { b[33] = 65 }), false, "database length"},
		{"payload length mismatch", mutate(true, func(b []byte) { b[38] = 6 }), false, "payload length"},
		{"bad database char", mutate(true, func(b []byte) { b[34] = 'F' }), false, "bad database"},
		{"group after LSN", mutate(true, func(b []byte) { b[25] = 11 }), false, "group"},
		{"LSN zero", mutate(true, func(b []byte) { b[17] = 0 }), false, "LSN"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, ferr := decodeFrame(tc.b)
			if ferr == nil {
				t.Fatal("decoded a bad frame")
			}
			if ferr.incomplete != tc.incomplete || !strings.Contains(ferr.reason, tc.reason) {
				t.Fatalf("got %+v, want incomplete=%v reason containing %q", ferr, tc.incomplete, tc.reason)
			}
		})
	}
}

func TestSegmentHeader(t *testing.T) {
	h := encodeSegmentHeader(42)
	if first, err := decodeSegmentHeader(h); err != nil || first != 42 {
		t.Fatalf("got %d, %v", first, err)
	}
	for i := 0; i < len(h)*8; i++ {
		b := append([]byte(nil), h...)
		b[i/8] ^= 1 << (i % 8)
		if _, err := decodeSegmentHeader(b); err == nil {
			t.Fatalf("bit flip %d accepted", i)
		}
	}
	if _, err := decodeSegmentHeader(h[:10]); err == nil {
		t.Fatal("short header accepted")
	}
}

func TestSegmentName(t *testing.T) {
	if got := segmentName(1); got != "00000000000000000001.journal" {
		t.Fatalf("got %q", got)
	}
	for _, tc := range []struct {
		name string
		want uint64
		ok   bool
	}{
		{"00000000000000000001.journal", 1, true},
		{"18446744073709551615.journal", 1<<64 - 1, true},
		{"00000000000000000000.journal", 0, false},
		{"99999999999999999999.journal", 0, false},
		{"0000000000000000001.journal", 0, false},
		{"0000000000000000000a.journal", 0, false},
		{"00000000000000000001.journal.tmp", 0, false},
		{"LOCK", 0, false},
	} {
		got, ok := parseSegmentName(tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseSegmentName(%q) = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestOpsRoundTrip(t *testing.T) {
	tests := [][]Op{
		nil,
		{{Kind: OpSet, Key: []byte("k"), Value: []byte("v")}},
		{{Kind: OpDelete, Key: []byte("gone")}, {Kind: OpSet, Key: []byte{}, Value: []byte{}}, {Kind: OpSet, Key: bytes.Repeat([]byte{0xff}, MaxKey), Value: bytes.Repeat([]byte("x"), 1000)}},
	}
	for i, ops := range tests {
		b := EncodeOps(ops)
		if b[0] != PayloadVersion {
			t.Fatalf("case %d: version byte %d", i, b[0])
		}
		got, err := DecodeOps(b)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if len(got) != len(ops) {
			t.Fatalf("case %d: %d ops, want %d", i, len(got), len(ops))
		}
		for k := range ops {
			if got[k].Kind != ops[k].Kind || !bytes.Equal(got[k].Key, ops[k].Key) || !bytes.Equal(got[k].Value, ops[k].Value) {
				t.Fatalf("case %d op %d differs", i, k)
			}
		}
		if !bytes.Equal(EncodeOps(got), b) {
			t.Fatalf("case %d: re-encoding differs", i)
		}
	}
}

func TestDecodeOpsRejects(t *testing.T) {
	good := EncodeOps([]Op{{Kind: OpSet, Key: []byte("k"), Value: []byte("v")}})
	with := func(i int, v byte) []byte { b := append([]byte(nil), good...); b[i] = v; return b }
	bigKey := EncodeOps([]Op{{Kind: OpDelete, Key: make([]byte, MaxKey+1)}})
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"version only", []byte{1}},
		{"unknown version", with(0, 2)},
		{"bad kind", with(5, 3)},
		{"kind zero", with(5, 0)},
		{"count too large", with(1, 2)},
		{"huge count", with(4, 0xff)},
		{"key length past end", with(6, 9)},
		{"value length past end", with(11, 9)},
		{"value length huge", with(14, 0xff)},
		{"trailing bytes", append(append([]byte(nil), good...), 0)},
		{"truncated", good[:len(good)-1]},
		{"key too long", bigKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if ops, err := DecodeOps(tc.b); err == nil || !errors.Is(err, ErrBadOps) {
				t.Fatalf("DecodeOps = %v, %v; want ErrBadOps", ops, err)
			}
		})
	}
}

func TestEpochMarker(t *testing.T) {
	e, l, err := DecodeEpochMarker(EncodeEpochMarker(7, 1234))
	if err != nil || e != 7 || l != 1234 {
		t.Fatalf("got %d %d %v", e, l, err)
	}
	for _, b := range [][]byte{nil, make([]byte, 16), make([]byte, 18), append([]byte{2}, make([]byte, 16)...)} {
		if _, _, err := DecodeEpochMarker(b); err == nil {
			t.Fatalf("accepted %x", b)
		}
	}
}
