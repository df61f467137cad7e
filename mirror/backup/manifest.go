package backup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/tandemhealth/tandem/mirror/journal"
)

// ManifestVersion is the version of the manifests this package writes.
const ManifestVersion = 1

// FileSum is one file of a snapshot.
type FileSum struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// SnapshotManifest describes a snapshot: a consistent copy of a member's
// store holding every record up to LSN.
type SnapshotManifest struct {
	Version       int       `json:"manifest_version"`
	LSN           uint64    `json:"lsn"`
	Epoch         uint64    `json:"epoch"`
	TakenAt       time.Time `json:"taken_at"`
	Member        string    `json:"member"`
	JournalFormat uint32    `json:"journal_format"`
	PayloadFormat int       `json:"payload_format"`
	Files         []FileSum `json:"files"`
}

// ChunkManifest describes one archived chunk of committed journal records.
type ChunkManifest struct {
	Version    int       `json:"manifest_version"`
	FirstLSN   uint64    `json:"first_lsn"`
	LastLSN    uint64    `json:"last_lsn"`
	FirstEpoch uint64    `json:"first_epoch"`
	LastEpoch  uint64    `json:"last_epoch"`
	Records    int       `json:"records"`
	Size       int64     `json:"size"`
	SHA256     string    `json:"sha256"`
	ArchivedAt time.Time `json:"archived_at"` // every record was committed at or before
	Member     string    `json:"member"`
	// LastFrameSHA256 identifies the last record, so the next run can check
	// the source still holds the same history (no fork).
	LastFrameSHA256 string `json:"last_frame_sha256"`
	JournalFormat   uint32 `json:"journal_format"`
}

func snapshotDir(lsn uint64) string          { return fmt.Sprintf("snapshots/%020d", lsn) }
func snapshotManifestName(lsn uint64) string { return snapshotDir(lsn) + "/manifest.json" }
func chunkBase(first, last uint64) string    { return fmt.Sprintf("archive/%020d-%020d", first, last) }

// Catalog is what a backup store holds: complete snapshots and chunks (those
// with a manifest), oldest first.
type Catalog struct {
	Snapshots []SnapshotManifest `json:"snapshots"`
	Chunks    []ChunkManifest    `json:"chunks"`
}

// ReadCatalog reads every manifest in st. A manifest that cannot be read or
// decoded is an error naming it: a backup store is never half understood.
func ReadCatalog(st Store) (Catalog, error) {
	var c Catalog
	names, err := st.List("snapshots")
	if err != nil {
		return c, err
	}
	for _, n := range names {
		if path.Base(n) != "manifest.json" || strings.Count(n, "/") != 2 {
			continue
		}
		var m SnapshotManifest
		if err := readJSON(st, n, &m); err != nil {
			return c, err
		}
		if m.Version != ManifestVersion {
			return c, fmt.Errorf("backup: %s: manifest version %d, this build reads %d", n, m.Version, ManifestVersion)
		}
		c.Snapshots = append(c.Snapshots, m)
	}
	names, err = st.List("archive")
	if err != nil {
		return c, err
	}
	for _, n := range names {
		if !strings.HasSuffix(n, ".json") {
			continue
		}
		var m ChunkManifest
		if err := readJSON(st, n, &m); err != nil {
			return c, err
		}
		if m.Version != ManifestVersion {
			return c, fmt.Errorf("backup: %s: manifest version %d, this build reads %d", n, m.Version, ManifestVersion)
		}
		if n != chunkBase(m.FirstLSN, m.LastLSN)+".json" {
			return c, fmt.Errorf("backup: %s: manifest names LSNs %d-%d", n, m.FirstLSN, m.LastLSN)
		}
		c.Chunks = append(c.Chunks, m)
	}
	sort.Slice(c.Snapshots, func(i, j int) bool { return c.Snapshots[i].LSN < c.Snapshots[j].LSN })
	sort.Slice(c.Chunks, func(i, j int) bool { return c.Chunks[i].FirstLSN < c.Chunks[j].FirstLSN })
	return c, nil
}

// ArchivedLSN is the last LSN archived, or 0.
func (c Catalog) ArchivedLSN() uint64 {
	if len(c.Chunks) == 0 {
		return 0
	}
	return c.Chunks[len(c.Chunks)-1].LastLSN
}

func readJSON(st Store, name string, v any) error {
	rc, err := st.Open(name)
	if err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return fmt.Errorf("backup: %s: %w", name, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("backup: %s is not a valid manifest: %w", name, err)
	}
	return nil
}

func writeJSON(st Store, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return st.Put(name, strings.NewReader(string(data)+"\n"))
}

// decodeChunk splits a chunk's bytes into records, checking every frame's
// CRC and that LSNs run from first to last without a gap.
func decodeChunk(name string, data []byte, first, last uint64) ([]journal.Record, error) {
	var recs []journal.Record
	want := first
	for off := 0; off < len(data); {
		rec, n, err := journal.DecodeShippedPrefix(data[off:])
		if err != nil {
			return nil, &CorruptError{Object: name, Offset: int64(off), Reason: err.Error()}
		}
		if rec.LSN != want {
			return nil, &CorruptError{Object: name, Offset: int64(off), Reason: fmt.Sprintf("LSN %d where %d was expected", rec.LSN, want)}
		}
		recs = append(recs, rec)
		want++
		off += n
	}
	if want != last+1 {
		return nil, &CorruptError{Object: name, Reason: fmt.Sprintf("holds LSNs %d-%d, its manifest says %d-%d", first, want-1, first, last)}
	}
	return recs, nil
}

// ErrCorrupt is wrapped by every error about damaged or missing backup data.
var ErrCorrupt = errors.New("backup: corrupt or incomplete")

// CorruptError names the object (and offset) that is damaged or missing.
type CorruptError struct {
	Object string
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	if e.Offset > 0 {
		return fmt.Sprintf("backup: %s at offset %d: %s", e.Object, e.Offset, e.Reason)
	}
	return fmt.Sprintf("backup: %s: %s", e.Object, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }
