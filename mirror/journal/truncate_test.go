package journal

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestTruncateAfter(t *testing.T) {
	for _, cut := range []uint64{0, 1, 37, 63, 64, 99} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			j, err := Open("j", Options{FS: fs, SegmentSize: 4 << 10})
			if err != nil {
				t.Fatal(err)
			}
			payload := func(tag string, i int) []byte {
				return EncodeOps([]Op{{Kind: OpSet, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(fmt.Sprintf("%s-%d-%0200d", tag, i, 0))}})
			}
			for i := 1; i <= 100; i++ {
				if _, err := j.Append(context.Background(), TypeData, 1, "fhir", payload("old", i)); err != nil {
					t.Fatal(err)
				}
			}
			if len(j.Segments()) < 3 {
				t.Fatalf("test needs several segments, has %d", len(j.Segments()))
			}
			if err := j.TruncateAfter(cut); err != nil {
				t.Fatal(err)
			}
			if j.LastLSN() != cut || j.DurableLSN() != cut {
				t.Fatalf("after truncate: last %d durable %d", j.LastLSN(), j.DurableLSN())
			}
			// New history after the fork, in a later epoch.
			for i := int(cut) + 1; i <= int(cut)+5; i++ {
				if _, err := j.Append(context.Background(), TypeData, 2, "fhir", payload("new", i)); err != nil {
					t.Fatal(err)
				}
			}
			check := func(j *Journal) {
				t.Helper()
				r, err := j.NewReader(1)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				n := uint64(0)
				for {
					rec, err := r.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					n++
					tag := "old"
					if rec.LSN > cut {
						tag = "new"
					}
					if rec.LSN != n || string(rec.Payload) != string(payload(tag, int(n))) {
						t.Fatalf("record %d: LSN %d, wrong payload", n, rec.LSN)
					}
				}
				if n != cut+5 {
					t.Fatalf("%d records, want %d", n, cut+5)
				}
			}
			check(j)
			// After a crash (only synced data survives) the cut holds.
			crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 0})
			j.Close()
			j2, err := Open("j", Options{FS: crashed, SegmentSize: 4 << 10})
			if err != nil {
				t.Fatal(err)
			}
			defer j2.Close()
			check(j2)
		})
	}
}

func TestTruncateAfterEdges(t *testing.T) {
	j, err := Open("j", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for range 3 {
		j.Append(context.Background(), TypeData, 1, "fhir", EncodeOps(nil))
	}
	if err := j.TruncateAfter(5); err != nil { // nothing beyond: no-op
		t.Fatal(err)
	}
	if err := j.TruncateAfter(2); err != nil || j.LastLSN() != 2 {
		t.Fatalf("%v, last %d", err, j.LastLSN())
	}
	if err := j.TruncateAfter(0); err != nil || j.LastLSN() != 0 {
		t.Fatalf("%v, last %d", err, j.LastLSN())
	}
}
