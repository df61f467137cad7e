package store

// FilterHits is how many table reads Pebble's bloom filters have spared
// (a Get of a key the table cannot hold).
func FilterHits(s *Store) int64 { return s.db.Metrics().Filter.Hits }
