package store

import (
	"context"

	"github.com/cockroachdb/pebble/v2"
)

// FilterHits is how many table reads Pebble's bloom filters have spared
// (a Get of a key the table cannot hold).
func FilterHits(s *Store) int64 { return s.db.Metrics().Filter.Hits }

// CompactAll compacts the whole store: everything moves to the bottom level.
func CompactAll(s *Store) error {
	return s.db.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff}, true)
}

// PebbleGet is Pebble's own point read of key in db: the baseline
// Store.Get is measured against.
func PebbleGet(s *Store, db string, key []byte) (bool, error) {
	_, closer, err := s.db.Get(dataKey(db, key))
	if err == pebble.ErrNotFound {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	closer.Close()
	return true, nil
}
