package store

import "context"

// FilterHits is how many table reads Pebble's bloom filters have spared
// (a Get of a key the table cannot hold).
func FilterHits(s *Store) int64 { return s.db.Metrics().Filter.Hits }

// CompactAll compacts the whole store: everything moves to the bottom level.
func CompactAll(s *Store) error {
	return s.db.Compact(context.Background(), []byte{0}, []byte{0xff, 0xff}, true)
}
