package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/tandemhealth/tandem/mirror/journal"
)

// Reads are served from the block cache once their blocks were read: with
// Pebble's default 8 MiB cache, which its memtables use up, none were
// (every read went to the file).
func TestBlockCacheKeepsReadBlocks(t *testing.T) {
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	val := make([]byte, 2000)
	const n = 2000
	for i := 1; i <= n; i++ {
		ops := []journal.Op{{Kind: journal.OpSet, Key: fmt.Appendf(nil, "k%06d", i), Value: val}}
		if err := s.Apply(journal.Record{LSN: uint64(i), Epoch: 1, Type: journal.TypeData, Database: "fhir", Payload: journal.EncodeOps(ops)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	// Settle the tables first: a background compaction rewriting them
	// between the two passes would make the second read new blocks.
	if err := s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
		t.Fatal(err)
	}
	readAll := func() {
		for i := 1; i <= n; i++ {
			if _, ok, err := s.Get("fhir", fmt.Appendf(nil, "k%06d", i)); !ok || err != nil {
				t.Fatalf("k%06d: found %v, %v", i, ok, err)
			}
		}
	}
	readAll() // loads the blocks
	before := s.db.Metrics().BlockCache
	readAll()
	after := s.db.Metrics().BlockCache
	// A background compaction may rewrite a table meanwhile (new blocks,
	// read again), so a few misses are allowed; without a working cache
	// every block read misses.
	hits, misses := after.Hits-before.Hits, after.Misses-before.Misses
	if misses*10 > hits+misses {
		t.Fatalf("second pass over %d keys (%d KB) missed the block cache %d times (hits %d, cache holds %d bytes)",
			n, n*len(val)/1000, misses, hits, after.Size)
	}
}
