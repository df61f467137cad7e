package journal

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the FuzzDecode seed corpus in testdata/fuzz/FuzzDecode")

// fuzzSeeds are the seed corpus: frames, segment bodies, payloads.
func fuzzSeeds() map[string][]byte {
	ops := EncodeOps([]Op{{Kind: OpSet, Key: []byte("Patient/1"), Value: []byte(`{"resourceType":"Patient"}`)}, {Kind: OpDelete, Key: []byte("idx/x")}})
	f1 := appendFrame(nil, TypeEpochMarker, 1, 1, 1, "", EncodeEpochMarker(0, 0))
	f2 := appendFrame(nil, TypeData, 1, 2, 2, "fhir", ops)
	f3 := appendFrame(nil, TypeData, 1, 3, 2, "audit", []byte("x"))
	two := append(append(append([]byte(nil), f1...), f2...), f3...)
	badCRC := append([]byte(nil), f2...)
	badCRC[len(badCRC)-1] ^= 1
	return map[string][]byte{
		"empty":            nil,
		"frame-marker":     f1,
		"frame-data":       f2,
		"frames-three":     two,
		"frames-torn-tail": two[:len(two)-3],
		"frames-bad-crc":   append(append([]byte(nil), f1...), badCRC...),
		"frames-zero-tail": append(append([]byte(nil), two...), make([]byte, 64)...),
		"ops":              ops,
		"ops-empty":        EncodeOps(nil),
		"epoch-marker":     EncodeEpochMarker(3, 99),
		"segment":          append(encodeSegmentHeader(1), two...),
		"length-huge":      {0xff, 0xff, 0xff, 0x03, 0, 0, 0, 0, 1},
	}
}

func TestWriteFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range fuzzSeeds() {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, "seed-"+name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to every decoder: a frame, the ops and
// epoch-marker payloads, and a whole journal (the bytes as the frames of a
// segment, and as a segment file). Nothing may panic; whatever decodes must
// re-encode to the same bytes; a journal that opens must read back cleanly
// and contiguously.
func FuzzDecode(f *testing.F) {
	for _, b := range fuzzSeeds() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if fr, n, ferr := decodeFrame(data); ferr == nil {
			re := appendFrame(nil, fr.Type, fr.Epoch, fr.LSN, fr.group, fr.Database, fr.Payload)
			if !bytes.Equal(re, data[:n]) {
				t.Fatalf("frame re-encodes differently")
			}
		}
		if ops, err := DecodeOps(data); err == nil {
			if !bytes.Equal(EncodeOps(ops), data) {
				t.Fatalf("ops re-encode differently")
			}
		} else if !errors.Is(err, ErrBadOps) {
			t.Fatalf("DecodeOps error does not wrap ErrBadOps: %v", err)
		}
		if e, l, err := DecodeEpochMarker(data); err == nil && !bytes.Equal(EncodeEpochMarker(e, l), data) {
			t.Fatalf("epoch marker re-encodes differently")
		}
		for _, seg := range [][]byte{append(encodeSegmentHeader(1), data...), data} {
			fuzzOpen(t, seg)
		}
	})
}

// fuzzOpen opens a journal whose only segment holds b, then one whose second
// (last) segment does.
func fuzzOpen(t *testing.T, b []byte) {
	for _, second := range []bool{false, true} {
		fs := vfs.NewMem()
		if err := fs.MkdirAll(testDir, 0o755); err != nil {
			t.Fatal(err)
		}
		first := uint64(1)
		if second {
			// A clean first segment holding LSN 1; b is the segment from LSN 2.
			seg := append(encodeSegmentHeader(1), appendFrame(nil, TypeData, 0, 1, 1, "db", []byte("p"))...)
			writeFile(t, fs, fs.PathJoin(testDir, segmentName(1)), seg)
			first = 2
			b = rebaseHeader(b, 2)
		}
		writeFile(t, fs, fs.PathJoin(testDir, segmentName(first)), b)
		j, err := Open(testDir, Options{FS: fs})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrFormatVersion) {
				t.Fatalf("Open: unexpected error %v", err)
			}
			continue
		}
		recs, err := tryReadAll(j, 1)
		if err != nil {
			t.Fatalf("read after a clean Open: %v", err)
		}
		for i, r := range recs {
			if r.LSN != uint64(i+1) {
				t.Fatalf("record %d has LSN %d", i, r.LSN)
			}
		}
		if uint64(len(recs)) != j.LastLSN() {
			t.Fatalf("read %d records, LastLSN %d", len(recs), j.LastLSN())
		}
		j.Close()
	}
}

// rebaseHeader rewrites a valid header of b to start at first, so the same
// bytes are also tried as a later segment.
func rebaseHeader(b []byte, first uint64) []byte {
	if _, err := decodeSegmentHeader(b); err != nil {
		return b
	}
	return append(encodeSegmentHeader(first), b[SegmentHeaderSize:]...)
}
