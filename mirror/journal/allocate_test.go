package journal

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestAllocatedTailIsKept: on the real disk the active segment's space is
// allocated ahead as zeros that extend the file; reopening keeps them as
// preallocated space (no rewrite, no torn tail reported) and appends go on
// into them.
func TestAllocatedTailIsKept(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 20; i++ {
		mustAppend(t, j, "fhir", payloadFor(i, allocTestSize(i)))
	}
	seg := j.Segments()[0]
	path := filepath.Join(dir, seg.Name)
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if before.Size() <= seg.Size {
		t.Fatalf("segment is %d bytes with %d durable: no space allocated ahead", before.Size(), seg.Size)
	}
	j.Close()

	j, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep := j.Recovery()
	if rep.TruncatedBytes != 0 || rep.PreallocatedBytes != before.Size()-seg.Size {
		t.Fatalf("recovery %+v; want no truncation and %d preallocated bytes", rep, before.Size()-seg.Size)
	}
	after, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(before, after) || after.Size() != before.Size() {
		t.Fatalf("the segment was rewritten by Open (%d -> %d bytes)", before.Size(), after.Size())
	}
	checkPayloads(t, j, 20, allocTestSize)
	for i := 21; i <= 40; i++ {
		mustAppend(t, j, "fhir", payloadFor(i, allocTestSize(i)))
	}
	if st, _ := os.Stat(path); st.Size() != before.Size() {
		t.Fatalf("appends into allocated space grew the file from %d to %d bytes", before.Size(), st.Size())
	}
	j.Close()
	j, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	checkPayloads(t, j, 40, allocTestSize)
}

// TestRolledOverSegmentsEndAtTheirLastFrame: space is never allocated past
// the rollover threshold, so every segment but the last ends at its last
// frame, on disk and in memory. A segment rolled over after the threshold
// was lowered (space allocated under the old one) keeps zeros after its
// last frame, and that is read as allocated space too.
func TestRolledOverSegmentsEndAtTheirLastFrame(t *testing.T) {
	for _, fsName := range []string{"disk", "mem"} {
		t.Run(fsName, func(t *testing.T) {
			fs, dir := vfs.Default, t.TempDir()
			if fsName == "mem" {
				fs, dir = vfs.NewMem(), testDir
			}
			open := func(segSize int64) *Journal {
				j, err := Open(dir, Options{FS: fs, SegmentSize: segSize})
				if err != nil {
					t.Fatal(err)
				}
				return j
			}
			sizeOf := func(name string) int64 {
				st, err := fs.Stat(fs.PathJoin(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				return st.Size()
			}
			j := open(64 << 10)
			for i := 1; i <= 300; i++ {
				mustAppend(t, j, "fhir", payloadFor(i, allocTestSize(i)))
			}
			segs := j.Segments()
			if len(segs) < 3 {
				t.Fatalf("%d segments; want 3+", len(segs))
			}
			for _, s := range segs[:len(segs)-1] {
				if got := sizeOf(s.Name); got != s.Size {
					t.Fatalf("rolled-over segment %s is %d bytes, its frames end at %d", s.Name, got, s.Size)
				}
			}
			if last := segs[len(segs)-1]; sizeOf(last.Name) <= last.Size {
				t.Fatalf("active segment %s: no space allocated ahead", last.Name)
			}
			j.Close()

			j = open(1 << 20)
			mustAppend(t, j, "fhir", payloadFor(301, allocTestSize(301)))
			j.Close()
			j = open(4 << 10) // the next append rolls over a segment allocated up to 64 KiB
			mustAppend(t, j, "fhir", payloadFor(302, allocTestSize(302)))
			mustAppend(t, j, "fhir", payloadFor(303, allocTestSize(303)))
			segs = j.Segments()
			rolled := segs[len(segs)-2]
			if sizeOf(rolled.Name) <= rolled.Size {
				t.Fatalf("segment %s rolled over under a lower threshold has no zeros after its frames", rolled.Name)
			}
			j.Close()
			j = open(4 << 10)
			defer j.Close()
			checkPayloads(t, j, 303, allocTestSize)
		})
	}
}

// allocTestSize is the payload size of record i in these tests.
func allocTestSize(i int) int { return 200 + i*13%900 }
