package journal

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// buildJournal appends n records, one commit group each, and returns the FS,
// the payloads by LSN and the segments.
func buildJournal(t *testing.T, n int, segSize int64) (*vfs.MemFS, []SegmentInfo) {
	t.Helper()
	fs := vfs.NewMem()
	j := mustOpen(t, fs, Options{SegmentSize: segSize})
	for i := 1; i <= n; i++ {
		mustAppend(t, j, "fhir", payloadFor(i, 10+i%7))
	}
	segs := j.Segments()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return fs, segs
}

// cloneMem copies every file of the journal directory into a new MemFS.
func cloneMem(t *testing.T, src vfs.FS) *vfs.MemFS {
	t.Helper()
	dst := vfs.NewMem()
	if err := dst.MkdirAll(testDir, 0o755); err != nil {
		t.Fatal(err)
	}
	names, err := src.List(testDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if n == lockName {
			continue
		}
		writeFile(t, dst, dst.PathJoin(testDir, n), readFile(t, src, src.PathJoin(testDir, n)))
	}
	return dst
}

// frameOffsets returns the offset of every frame in a segment's bytes.
func frameOffsets(t *testing.T, b []byte) []int {
	t.Helper()
	var offs []int
	for off := SegmentHeaderSize; off < len(b); {
		_, n, ferr := decodeFrame(b[off:])
		if ferr != nil {
			t.Fatalf("frame at %d: %v", off, ferr)
		}
		offs = append(offs, off)
		off += n
	}
	return offs
}

// checkRecords checks that j holds exactly the records 1..n written with
// payloadFor(i, 10+i%7).
func checkRecords(t *testing.T, j *Journal, n int) {
	t.Helper()
	checkPayloads(t, j, n, func(i int) int { return 10 + i%7 })
}

// checkPayloads checks that j holds exactly the records 1..n written with
// payloadFor(i, size(i)).
func checkPayloads(t *testing.T, j *Journal, n int, size func(int) int) {
	t.Helper()
	got := readAll(t, j, 1)
	if len(got) != n {
		t.Fatalf("recovered %d records, want %d", len(got), n)
	}
	for i, r := range got {
		if r.LSN != uint64(i+1) || string(r.Payload) != string(payloadFor(i+1, size(i+1))) {
			t.Fatalf("record %d: LSN %d or payload differs", i, r.LSN)
		}
	}
}

// TestTornTailEveryOffset cuts the last segment at every byte of its last
// frame: Open drops exactly that frame, reports it, and appends again.
func TestTornTailEveryOffset(t *testing.T) {
	const n = 12
	base, segs := buildJournal(t, n, 200)
	last := segs[len(segs)-1]
	path := base.PathJoin(testDir, last.Name)
	full := segmentBytes(t, base, last)
	offs := frameOffsets(t, full)
	lastOff := offs[len(offs)-1]
	for cut := lastOff; cut < len(full); cut++ {
		fs := cloneMem(t, base)
		writeFile(t, fs, path, full[:cut])
		j := mustOpen(t, fs, Options{SegmentSize: 200})
		rep := j.Recovery()
		wantBytes := int64(cut - lastOff)
		if rep.TruncatedBytes != wantBytes || (wantBytes > 0 && (rep.TruncatedSegment != last.Name || rep.TruncatedOffset != int64(lastOff))) {
			t.Fatalf("cut %d: report %+v, want %d bytes at %s:%d", cut, rep, wantBytes, last.Name, lastOff)
		}
		if rep.LastLSN != n-1 {
			t.Fatalf("cut %d: LastLSN %d", cut, rep.LastLSN)
		}
		checkRecords(t, j, n-1)
		// The torn bytes are gone from disk and appending continues cleanly.
		if lsn := mustAppend(t, j, "fhir", payloadFor(n, 10+n%7)); lsn != n {
			t.Fatalf("cut %d: appended at %d", cut, lsn)
		}
		j.Close()
		j = mustOpen(t, fs, Options{SegmentSize: 200})
		if rep := j.Recovery(); rep.TruncatedBytes != 0 {
			t.Fatalf("cut %d: second open truncated again: %+v", cut, rep)
		}
		checkRecords(t, j, n)
		j.Close()
	}
}

func TestTornTailJunk(t *testing.T) {
	const n = 12
	base, segs := buildJournal(t, n, 200)
	last := segs[len(segs)-1]
	path := base.PathJoin(testDir, last.Name)
	full := segmentBytes(t, base, last)
	rng := rand.New(rand.NewPCG(1, 2))
	garbage := make([]byte, 3000)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}
	offs := frameOffsets(t, full)
	flipped := append([]byte(nil), full...)
	flipped[len(flipped)-3] ^= 0x40 // in the last frame: indistinguishable from a torn write
	tests := []struct {
		name     string
		b        []byte
		records  int
		truncAt  int
		truncLen int
		prealloc int // zeros kept as space allocated ahead
	}{
		{"zero tail", append(append([]byte(nil), full...), make([]byte, 4096)...), n, 0, 0, 4096},
		{"zeros shorter than a frame header", append(append([]byte(nil), full...), make([]byte, 5)...), n, 0, 0, 5},
		{"garbage tail", append(append([]byte(nil), full...), garbage...), n, len(full), len(garbage), 0},
		{"torn frame then zeros", append(append([]byte(nil), full[:len(full)-5]...), make([]byte, 100)...), n - 1, offs[len(offs)-1], len(full) - 5 + 100 - offs[len(offs)-1], 0},
		{"bit flip in last frame", flipped, n - 1, offs[len(offs)-1], len(full) - offs[len(offs)-1], 0},
		{"header only", full[:SegmentHeaderSize], int(last.FirstLSN) - 1, 0, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := cloneMem(t, base)
			writeFile(t, fs, path, tc.b)
			j := mustOpen(t, fs, Options{SegmentSize: 200})
			defer j.Close()
			rep := j.Recovery()
			if rep.TruncatedBytes != int64(tc.truncLen) || (tc.truncLen > 0 && rep.TruncatedOffset != int64(tc.truncAt)) || rep.PreallocatedBytes != int64(tc.prealloc) {
				t.Fatalf("report %+v, want %d bytes at %d", rep, tc.truncLen, tc.truncAt)
			}
			checkRecords(t, j, tc.records)
			if st, _ := fs.Stat(path); st.Size() != int64(len(tc.b)-tc.truncLen) {
				t.Fatalf("segment is %d bytes after truncation, want %d", st.Size(), len(tc.b)-tc.truncLen)
			}
		})
	}
}

// TestTornNewSegment: a last segment whose header never reached the disk
// (crash while creating it) is reset, not an error.
func TestTornNewSegment(t *testing.T) {
	base, segs := buildJournal(t, 12, 200)
	next := segs[len(segs)-1].LastLSN + 1
	for _, b := range [][]byte{nil, make([]byte, 10), make([]byte, 500), encodeSegmentHeader(next)[:SegmentHeaderSize-1]} {
		fs := cloneMem(t, base)
		writeFile(t, fs, fs.PathJoin(testDir, segmentName(next)), b)
		j := mustOpen(t, fs, Options{SegmentSize: 200})
		checkRecords(t, j, 12)
		if rep := j.Recovery(); rep.TruncatedSegment != segmentName(next) || rep.TruncatedOffset != 0 || rep.TruncatedBytes != int64(len(b)) {
			t.Fatalf("report %+v", rep)
		}
		if lsn := mustAppend(t, j, "fhir", payloadFor(13, 10+13%7)); lsn != 13 {
			t.Fatalf("appended at %d", lsn)
		}
		j.Close()
		j = mustOpen(t, fs, Options{SegmentSize: 200})
		checkRecords(t, j, 13)
		j.Close()
	}
}

// TestCorruptionBeforeTail: damage that is not a torn tail stops Open with a
// CorruptionError naming the file and offset.
func TestCorruptionBeforeTail(t *testing.T) {
	const n = 30
	base, segs := buildJournal(t, n, 400)
	if len(segs) < 3 {
		t.Fatalf("want 3+ segments, got %d", len(segs))
	}
	first := segs[0]
	lastSeg := segs[len(segs)-1]
	firstBytes := segmentBytes(t, base, first)
	lastBytes := segmentBytes(t, base, lastSeg)
	firstOffs := frameOffsets(t, firstBytes)
	lastOffs := frameOffsets(t, lastBytes)
	if len(lastOffs) < 2 {
		t.Fatalf("last segment has %d frames", len(lastOffs))
	}
	flip := func(b []byte, i int) []byte { c := append([]byte(nil), b...); c[i] ^= 0x01; return c }
	// A frame whose LSN skips one, with a valid checksum.
	gap := append([]byte(nil), lastBytes[:lastOffs[1]]...)
	gap = appendFrame(gap, TypeData, 1, lastSeg.FirstLSN+2, lastSeg.FirstLSN+2, "fhir", []byte("x"))
	lower := append([]byte(nil), lastBytes[:lastOffs[1]]...)
	lower = appendFrame(lower, TypeData, 0, lastSeg.FirstLSN+1, lastSeg.FirstLSN+1, "fhir", []byte("x"))
	tests := []struct {
		name    string
		file    string
		b       []byte
		wantOff int
		reason  string
	}{
		{"bit flip in first frame of an earlier segment", first.Name, flip(firstBytes, firstOffs[0]+20), firstOffs[0], "checksum"},
		{"bit flip in last frame of an earlier segment", first.Name, flip(firstBytes, len(firstBytes)-1), firstOffs[len(firstOffs)-1], "checksum"},
		{"earlier segment cut short", first.Name, firstBytes[:len(firstBytes)-4], firstOffs[len(firstOffs)-1], "incomplete"},
		{"bad header of an earlier segment", first.Name, flip(firstBytes, 3), 0, "magic"},
		{"bit flip in an earlier frame of the last segment", lastSeg.Name, flip(lastBytes, lastOffs[0]+12), lastOffs[0], "later commit group"},
		{"bad header of the last segment with frames", lastSeg.Name, flip(lastBytes, 14), 0, "frame follows"},
		{"LSN gap", lastSeg.Name, gap, lastOffs[1], "expected"},
		{"epoch lower than previous", lastSeg.Name, lower, lastOffs[1], "epoch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := cloneMem(t, base)
			writeFile(t, fs, fs.PathJoin(testDir, tc.file), tc.b)
			j, err := Open(testDir, Options{FS: fs, SegmentSize: 400})
			if err == nil {
				j.Close()
				t.Fatalf("Open succeeded")
			}
			ce, ok := asCorruption(err)
			if !ok || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want a CorruptionError", err)
			}
			if ce.Segment != tc.file || ce.Offset != int64(tc.wantOff) || !strings.Contains(ce.Reason, tc.reason) {
				t.Fatalf("got %v; want %s at %d (%s)", ce, tc.file, tc.wantOff, tc.reason)
			}
			if !strings.Contains(err.Error(), tc.file) {
				t.Fatalf("error does not name the file: %v", err)
			}
			// Nothing was rewritten: the damage is left for inspection.
			if got := readFile(t, fs, fs.PathJoin(testDir, tc.file)); string(got) != string(tc.b) {
				t.Fatal("Open modified a corrupt segment")
			}
		})
	}
	// Zeros where an earlier segment's last frame was read as space
	// allocated after it, and the record lost is a gap before the next.
	fs := cloneMem(t, base)
	lastOff := firstOffs[len(firstOffs)-1]
	writeFile(t, fs, fs.PathJoin(testDir, first.Name), append(append([]byte(nil), firstBytes[:lastOff]...), make([]byte, len(firstBytes)-lastOff)...))
	if _, err := Open(testDir, Options{FS: fs, SegmentSize: 400}); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "does not follow") || !strings.Contains(err.Error(), segs[1].Name) {
		t.Fatalf("zeroed last frame of %s: got %v, want a gap before %s", first.Name, err, segs[1].Name)
	}
	// A missing middle segment is a gap.
	fs = cloneMem(t, base)
	if err := fs.Remove(fs.PathJoin(testDir, segs[1].Name)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(testDir, Options{FS: fs}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("missing middle segment: %v", err)
	}
}

// TestReaderDetectsCorruption: damage appearing after Open is reported by
// the reader with file and offset, and nothing after it is returned.
func TestReaderDetectsCorruption(t *testing.T) {
	fs := vfs.NewMem()
	j := mustOpen(t, fs, Options{SegmentSize: 400})
	defer j.Close()
	for i := 1; i <= 30; i++ {
		mustAppend(t, j, "fhir", payloadFor(i, 10+i%7))
	}
	seg := j.Segments()[1]
	path := fs.PathJoin(testDir, seg.Name)
	b := segmentBytes(t, fs, seg)
	offs := frameOffsets(t, b)
	b[offs[1]+30] ^= 0x80
	// Overwrite in place (same inode, as the journal has it open).
	f, err := fs.OpenReadWrite(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got, err := tryReadAll(j, 1)
	ce, ok := asCorruption(err)
	if !ok || ce.Segment != seg.Name || ce.Offset != int64(offs[1]) {
		t.Fatalf("got %v, want corruption at %s:%d", err, seg.Name, offs[1])
	}
	if uint64(len(got)) != seg.FirstLSN {
		t.Fatalf("returned %d records before the damage, want %d", len(got), seg.FirstLSN)
	}
}

// TestDamagedSegmentsNeverPanic truncates, zeroes and flips bits all over
// every segment: Open either succeeds with a contiguous prefix or returns an
// error; it never panics and never returns a record that was not written.
func TestDamagedSegmentsNeverPanic(t *testing.T) {
	const n = 20
	base, segs := buildJournal(t, n, 300)
	rng := rand.New(rand.NewPCG(7, 7))
	step := 1
	if testing.Short() {
		step = 3
	}
	for _, seg := range segs {
		path := base.PathJoin(testDir, seg.Name)
		full := segmentBytes(t, base, seg)
		isLast := seg.Name == segs[len(segs)-1].Name
		for i := 0; i < len(full); i += step {
			variants := map[string][]byte{
				"truncated": full[:i],
				"zeroed":    append(append(append([]byte(nil), full[:i]...), make([]byte, min(17, len(full)-i))...), full[min(i+17, len(full)):]...),
				"flipped":   func() []byte { c := append([]byte(nil), full...); c[i] ^= byte(1 << rng.IntN(8)); return c }(),
			}
			for kind, b := range variants {
				fs := cloneMem(t, base)
				writeFile(t, fs, path, b)
				j, err := Open(testDir, Options{FS: fs, SegmentSize: 300})
				if err != nil {
					if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("%s %s at %d: unexpected error %v", kind, seg.Name, i, err)
					}
					if isLast && kind == "truncated" {
						t.Fatalf("truncated last segment at %d is corruption: %v", i, err)
					}
					continue
				}
				got, rerr := tryReadAll(j, 1)
				j.Close()
				if rerr != nil {
					t.Fatalf("%s %s at %d: read after a clean Open: %v", kind, seg.Name, i, rerr)
				}
				for k, r := range got {
					if r.LSN != uint64(k+1) || string(r.Payload) != string(payloadFor(k+1, 10+(k+1)%7)) {
						t.Fatalf("%s %s at %d: record %d wrong", kind, seg.Name, i, k)
					}
				}
				if !isLast && len(got) != n && string(b) != string(full) {
					t.Fatalf("%s %s at %d: damage in an earlier segment accepted with %d records", kind, seg.Name, i, len(got))
				}
			}
		}
	}
}

// TestUnsupportedFormatVersion: a segment from a newer format is neither
// truncated nor called corrupt.
func TestUnsupportedFormatVersion(t *testing.T) {
	base, segs := buildJournal(t, 5, 1<<20)
	path := base.PathJoin(testDir, segs[0].Name)
	b := readFile(t, base, path)
	b[8] = 2 // format version 2, header CRC recomputed
	binary.LittleEndian.PutUint32(b[20:], crc32.Checksum(b[:20], castagnoli))
	writeFile(t, base, path, b)
	_, err := Open(testDir, Options{FS: base})
	if !errors.Is(err, ErrFormatVersion) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %v, want ErrFormatVersion", err)
	}
	if got := readFile(t, base, path); string(got) != string(b) {
		t.Fatal("Open modified a segment of another format version")
	}
}
