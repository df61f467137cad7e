package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/store"
)

// Target is the point a restore brings the data to: an LSN, or a time
// (every record archived by then). Zero means the newest archived record.
type Target struct {
	LSN  uint64
	Time time.Time
}

// RestoreReport says exactly what a restore produced.
type RestoreReport struct {
	LSN         uint64            `json:"lsn"`
	Epoch       uint64            `json:"epoch"`
	SnapshotLSN uint64            `json:"snapshot_lsn"`
	Replayed    int               `json:"records_replayed"`
	Hashes      map[string]string `json:"content_sha256"` // per database
	// ArchivedBy is, for a restore to a time, when the last restored record
	// was archived (it was committed at or before then).
	ArchivedBy time.Time     `json:"archived_by,omitzero"`
	Took       time.Duration `json:"took_ns"`
	// NewTier is set by RestoreNewTier: the new tier's journal. LSN, Epoch
	// and ArchivedBy above then describe the source point restored, which
	// the new tier's LSNs no longer refer to.
	NewTier *NewTierReport `json:"new_tier,omitempty"`
}

// Restore builds a data directory at dest (which must not exist) from the
// backup store: the newest snapshot at or before the target, then archived
// records up to it, every checksum verified. dest then holds store/ and an
// empty journal/ starting after the restored LSN, ready to start as a new
// standalone node (tandem node --config) or to seed a new tier. On any
// error dest is removed: a restore never leaves a partial database behind.
func Restore(ctx context.Context, st Store, to Target, dest string) (rep RestoreReport, err error) {
	start := time.Now()
	if _, err := os.Stat(dest); err == nil {
		return rep, fmt.Errorf("backup: restore target %s already exists; restore into a new directory", dest)
	}
	cat, err := ReadCatalog(st)
	if err != nil {
		return rep, err
	}
	target, archivedBy, err := cat.resolve(to)
	if err != nil {
		return rep, err
	}
	var snap *SnapshotManifest
	for i := range cat.Snapshots {
		s := &cat.Snapshots[i]
		if s.LSN <= target && (to.Time.IsZero() || !s.TakenAt.After(to.Time)) {
			snap = s
		}
	}
	if snap == nil {
		return rep, fmt.Errorf("backup: no snapshot at or before LSN %d: the oldest is at LSN %d", target, cat.Snapshots[0].LSN)
	}
	if snap.JournalFormat != journal.FormatVersion {
		return rep, fmt.Errorf("backup: snapshot %d has journal format %d; this build reads %d", snap.LSN, snap.JournalFormat, journal.FormatVersion)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dest)
		}
	}()
	if err := os.MkdirAll(dest, 0o750); err != nil {
		return rep, err
	}
	storeDir := filepath.Join(dest, "store")
	for _, f := range snap.Files {
		if err := copyVerified(st, snapshotDir(snap.LSN)+"/files/"+f.Name, filepath.Join(storeDir, filepath.FromSlash(f.Name)), f); err != nil {
			return rep, err
		}
	}
	s, err := store.Open(storeDir, store.Options{})
	if err != nil {
		return rep, fmt.Errorf("backup: open restored snapshot %d: %w", snap.LSN, err)
	}
	defer func() {
		if cerr := s.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if s.AppliedLSN() != snap.LSN {
		return rep, &CorruptError{Object: snapshotManifestName(snap.LSN), Reason: fmt.Sprintf("snapshot holds LSN %d, its manifest says %d", s.AppliedLSN(), snap.LSN)}
	}
	rep.SnapshotLSN = snap.LSN
	next := snap.LSN + 1
	for _, c := range cat.Chunks {
		if next > target {
			break
		}
		if c.LastLSN < next {
			continue
		}
		base := chunkBase(c.FirstLSN, c.LastLSN)
		if c.FirstLSN > next {
			return rep, &CorruptError{Object: "archive", Reason: fmt.Sprintf("LSNs %d-%d are missing (no chunk holds them)", next, c.FirstLSN-1)}
		}
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		recs, err := readChunk(st, c)
		if err != nil {
			return rep, err
		}
		for _, rec := range recs {
			if rec.LSN < next {
				continue
			}
			if rec.LSN > target {
				break
			}
			if err := s.Apply(rec); err != nil {
				return rep, fmt.Errorf("backup: replay %s: %w", base, err)
			}
			rep.Replayed++
			next = rec.LSN + 1
		}
	}
	if next <= target {
		return rep, &CorruptError{Object: "archive", Reason: fmt.Sprintf("LSNs %d-%d are missing (the archive ends at %d)", next, target, next-1)}
	}
	rep.LSN, rep.Epoch, rep.ArchivedBy = s.AppliedLSN(), s.Epoch(), archivedBy
	rep.Hashes = map[string]string{}
	for _, db := range s.Databases() {
		h, err := s.ContentHash(db)
		if err != nil {
			return rep, err
		}
		rep.Hashes[db] = hex.EncodeToString(h[:])
	}
	// An empty journal that continues after the restored LSN.
	j, err := journal.Open(filepath.Join(dest, "journal"), journal.Options{StartLSN: rep.LSN + 1})
	if err != nil {
		return rep, fmt.Errorf("backup: create journal: %w", err)
	}
	if err := j.Close(); err != nil {
		return rep, err
	}
	rep.Took = time.Since(start)
	if err := writeJSON(Dir{Root: dest}, "RESTORED.json", rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// resolve turns a target into an LSN the archive can reach.
func (c Catalog) resolve(to Target) (uint64, time.Time, error) {
	if len(c.Snapshots) == 0 {
		return 0, time.Time{}, errors.New("backup: the backup store holds no snapshot")
	}
	end := max(c.ArchivedLSN(), c.Snapshots[len(c.Snapshots)-1].LSN)
	switch {
	case to.LSN != 0 && !to.Time.IsZero():
		return 0, time.Time{}, errors.New("backup: give a target LSN or a time, not both")
	case to.LSN != 0:
		if to.LSN > end {
			return 0, time.Time{}, fmt.Errorf("backup: LSN %d is beyond the archive, which ends at LSN %d", to.LSN, end)
		}
		return to.LSN, time.Time{}, nil
	case !to.Time.IsZero():
		lsn, at := uint64(0), time.Time{}
		for _, s := range c.Snapshots {
			if !s.TakenAt.After(to.Time) && s.LSN >= lsn {
				lsn, at = s.LSN, s.TakenAt
			}
		}
		if at.IsZero() {
			return 0, time.Time{}, fmt.Errorf("backup: no snapshot was taken by %s; the oldest is from %s", to.Time.Format(time.RFC3339), c.Snapshots[0].TakenAt.Format(time.RFC3339))
		}
		for _, ch := range c.Chunks {
			if !ch.ArchivedAt.After(to.Time) && ch.LastLSN > lsn {
				lsn, at = ch.LastLSN, ch.ArchivedAt
			}
		}
		return lsn, at, nil
	}
	return end, time.Time{}, nil
}

func copyVerified(st Store, name, dest string, want FileSum) error {
	rc, err := st.Open(name)
	if err != nil {
		return &CorruptError{Object: name, Reason: "missing: " + err.Error()}
	}
	defer rc.Close()
	if err := os.MkdirAll(filepath.Dir(dest), 0o750); err != nil {
		return err
	}
	f, err := os.Create(dest)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), rc)
	if err != nil {
		return fmt.Errorf("backup: read %s: %w", name, err)
	}
	if n != want.Size || hex.EncodeToString(h.Sum(nil)) != want.SHA256 {
		return &CorruptError{Object: name, Reason: fmt.Sprintf("size %d / SHA-256 %x do not match the manifest (%d / %s)", n, h.Sum(nil), want.Size, want.SHA256)}
	}
	return f.Sync()
}

// readChunk reads a chunk, checks its size and SHA-256 against its
// manifest and every frame's CRC and LSN.
func readChunk(st Store, c ChunkManifest) ([]journal.Record, error) {
	name := chunkBase(c.FirstLSN, c.LastLSN) + ".chunk"
	rc, err := st.Open(name)
	if err != nil {
		return nil, &CorruptError{Object: name, Reason: "missing: " + err.Error()}
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, c.Size+1))
	if err != nil {
		return nil, fmt.Errorf("backup: read %s: %w", name, err)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != c.Size || hex.EncodeToString(sum[:]) != c.SHA256 {
		return nil, &CorruptError{Object: name, Reason: fmt.Sprintf("size %d / SHA-256 %x do not match the manifest (%d / %s)", len(data), sum, c.Size, c.SHA256)}
	}
	return decodeChunk(name, data, c.FirstLSN, c.LastLSN)
}

// Problem is one thing Verify found wrong.
type Problem struct {
	Object string `json:"object"`
	Error  string `json:"error"`
}

// VerifyReport is what Verify checked.
type VerifyReport struct {
	Snapshots int       `json:"snapshots"`
	Chunks    int       `json:"chunks"`
	Records   int       `json:"records"`
	FirstLSN  uint64    `json:"restorable_from_lsn"`
	LastLSN   uint64    `json:"restorable_to_lsn"`
	Problems  []Problem `json:"problems"`
}

// Verify reads every snapshot file and chunk, checks sizes, SHA-256 sums,
// frame CRCs and that the archive is contiguous from the oldest snapshot,
// and names every problem found.
func Verify(st Store) (VerifyReport, error) {
	var rep VerifyReport
	cat, err := ReadCatalog(st)
	if err != nil {
		return rep, err
	}
	rep.Snapshots, rep.Chunks = len(cat.Snapshots), len(cat.Chunks)
	for _, s := range cat.Snapshots {
		for _, f := range s.Files {
			name := snapshotDir(s.LSN) + "/files/" + f.Name
			if err := checkSum(st, name, f); err != nil {
				rep.Problems = append(rep.Problems, Problem{Object: name, Error: err.Error()})
			}
		}
	}
	if len(cat.Snapshots) == 0 {
		rep.Problems = append(rep.Problems, Problem{Object: "snapshots", Error: "no snapshot: nothing can be restored"})
		return rep, nil
	}
	rep.FirstLSN = cat.Snapshots[0].LSN
	next := cat.Snapshots[0].LSN + 1
	for _, c := range cat.Chunks {
		name := chunkBase(c.FirstLSN, c.LastLSN) + ".chunk"
		if c.LastLSN < next {
			continue
		}
		if c.FirstLSN > next {
			rep.Problems = append(rep.Problems, Problem{Object: "archive", Error: fmt.Sprintf("LSNs %d-%d are missing", next, c.FirstLSN-1)})
		}
		recs, err := readChunk(st, c)
		if err != nil {
			rep.Problems = append(rep.Problems, Problem{Object: name, Error: err.Error()})
		}
		rep.Records += len(recs)
		next = c.LastLSN + 1
	}
	rep.LastLSN = max(next-1, cat.Snapshots[len(cat.Snapshots)-1].LSN)
	return rep, nil
}

func checkSum(st Store, name string, want FileSum) error {
	rc, err := st.Open(name)
	if err != nil {
		return fmt.Errorf("missing: %w", err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return err
	}
	if n != want.Size || hex.EncodeToString(h.Sum(nil)) != want.SHA256 {
		return fmt.Errorf("size %d / SHA-256 %x do not match the manifest (%d / %s)", n, h.Sum(nil), want.Size, want.SHA256)
	}
	return nil
}

// Prune keeps the newest keep snapshots (at least 1) and deletes older
// snapshots and the chunks only they needed. It returns what it deleted.
func Prune(st Store, keep int) (snapshots, chunks int, err error) {
	keep = max(keep, 1)
	cat, err := ReadCatalog(st)
	if err != nil {
		return 0, 0, err
	}
	if len(cat.Snapshots) <= keep {
		return 0, 0, nil
	}
	oldest := cat.Snapshots[len(cat.Snapshots)-keep].LSN
	for _, c := range cat.Chunks {
		if c.LastLSN > oldest {
			break
		}
		base := chunkBase(c.FirstLSN, c.LastLSN)
		// The manifest first: a chunk without one is ignored by readers.
		if err := st.Delete(base + ".json"); err != nil {
			return snapshots, chunks, err
		}
		if err := st.Delete(base + ".chunk"); err != nil {
			return snapshots, chunks, err
		}
		chunks++
	}
	for _, s := range cat.Snapshots[:len(cat.Snapshots)-keep] {
		if err := st.Delete(snapshotManifestName(s.LSN)); err != nil {
			return snapshots, chunks, err
		}
		names, err := st.List(snapshotDir(s.LSN))
		if err != nil {
			return snapshots, chunks, err
		}
		for _, n := range names {
			if err := st.Delete(n); err != nil {
				return snapshots, chunks, err
			}
		}
		snapshots++
	}
	return snapshots, chunks, nil
}
