package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/tandemhealth/tandem/mirror/journal"
)

// Source is the member a backup reads from (the backup or an async member
// preferred, so the primary is not loaded).
type Source interface {
	// Name is the member's name, recorded in manifests.
	Name() string
	// Snapshot writes a consistent copy of the member's store into dir
	// (which must not exist) and returns the LSN and epoch it holds.
	Snapshot(ctx context.Context, dir string) (lsn, epoch uint64, err error)
	// Records returns committed records from LSN from on as shipped journal
	// frames, at most max (fewer once it reaches the commit point). It
	// returns ErrPurged when the member no longer holds from.
	Records(ctx context.Context, from uint64, max int) ([][]byte, error)
}

// ErrPurged is returned by a Source that no longer holds the LSN asked for.
var ErrPurged = errors.New("backup: the member no longer holds that LSN (purged)")

// ErrForked means the source's history no longer contains what was
// archived (a forced promotion discarded it): a new backup must start.
var ErrForked = errors.New("backup: the source's journal diverged from the archive")

// Archiver takes snapshots and archives committed journal records from a
// Source into a Store.
type Archiver struct {
	Source Source
	Store  Store
	// MaxRecords and MaxBytes bound a chunk (10,000 records, 64 MiB).
	MaxRecords int
	MaxBytes   int
	// Now is the clock recorded in manifests; default time.Now.
	Now func() time.Time
	// TempDir holds a snapshot while it is copied; default os.TempDir().
	TempDir string
	Log     *slog.Logger
}

func (a *Archiver) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

func (a *Archiver) log() *slog.Logger {
	if a.Log != nil {
		return a.Log
	}
	return slog.Default()
}

// Snapshot copies a consistent snapshot of the source into the store and
// returns its manifest, written last.
func (a *Archiver) Snapshot(ctx context.Context) (SnapshotManifest, error) {
	tmp, err := os.MkdirTemp(a.TempDir, "tandem-snapshot-")
	if err != nil {
		return SnapshotManifest{}, err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "store")
	lsn, epoch, err := a.Source.Snapshot(ctx, dir)
	if err != nil {
		return SnapshotManifest{}, fmt.Errorf("backup: snapshot of %s: %w", a.Source.Name(), err)
	}
	m := SnapshotManifest{Version: ManifestVersion, LSN: lsn, Epoch: epoch, TakenAt: a.now(), Member: a.Source.Name(),
		JournalFormat: journal.FormatVersion, PayloadFormat: journal.PayloadVersion}
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		cr := &countReader{r: io.TeeReader(f, h)}
		if err := a.Store.Put(snapshotDir(lsn)+"/files/"+filepath.ToSlash(rel), cr); err != nil {
			return err
		}
		m.Files = append(m.Files, FileSum{Name: filepath.ToSlash(rel), Size: cr.n, SHA256: hex.EncodeToString(h.Sum(nil))})
		return nil
	})
	if err != nil {
		return SnapshotManifest{}, fmt.Errorf("backup: store snapshot %d: %w", lsn, err)
	}
	if err := writeJSON(a.Store, snapshotManifestName(lsn), m); err != nil {
		return SnapshotManifest{}, err
	}
	a.log().Info("backup snapshot taken", "member", m.Member, "lsn", lsn, "epoch", epoch, "files", len(m.Files))
	return m, nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ArchiveOnce archives every committed record the source holds beyond the
// archive's end, in chunks, and returns how many it archived. The archive
// continues from its last chunk, so it stays contiguous across snapshots,
// or starts after the newest snapshot; with no snapshot it is an error.
func (a *Archiver) ArchiveOnce(ctx context.Context) (int, error) {
	cat, err := ReadCatalog(a.Store)
	if err != nil {
		return 0, err
	}
	if len(cat.Snapshots) == 0 {
		return 0, errors.New("backup: no snapshot in the backup store yet: take one first (tandem backup --snapshot)")
	}
	snap := cat.Snapshots[len(cat.Snapshots)-1]
	last, lastEpoch, lastFrame := snap.LSN, snap.Epoch, ""
	if n := len(cat.Chunks); n > 0 {
		c := cat.Chunks[n-1]
		last, lastEpoch, lastFrame = c.LastLSN, c.LastEpoch, c.LastFrameSHA256
	}
	maxRecs, maxBytes := a.MaxRecords, a.MaxBytes
	if maxRecs <= 0 {
		maxRecs = 10000
	}
	if maxBytes <= 0 {
		maxBytes = 64 << 20
	}
	total := 0
	for {
		// Ask from the last archived record: it must come back identical,
		// or the source's history forked after it.
		from := last
		if from == 0 {
			from = 1
		}
		frames, err := a.Source.Records(ctx, from, maxRecs+1)
		if err != nil {
			return total, fmt.Errorf("backup: read records from LSN %d of %s: %w", from, a.Source.Name(), err)
		}
		if last > 0 {
			if len(frames) == 0 {
				return total, fmt.Errorf("%w: %s no longer has committed LSN %d", ErrForked, a.Source.Name(), last)
			}
			rec, err := journal.DecodeShipped(frames[0])
			if err != nil {
				return total, fmt.Errorf("backup: record %d from %s: %w", last, a.Source.Name(), err)
			}
			sum := sha256.Sum256(frames[0])
			if rec.LSN != last || rec.Epoch != lastEpoch || (lastFrame != "" && hex.EncodeToString(sum[:]) != lastFrame) {
				return total, fmt.Errorf("%w at LSN %d (archived epoch %d, %s now has epoch %d there): a forced promotion discarded archived records; take a new snapshot into a new backup store", ErrForked, last, lastEpoch, a.Source.Name(), rec.Epoch)
			}
			frames = frames[1:]
		}
		if len(frames) == 0 {
			return total, nil
		}
		var buf bytes.Buffer
		m := ChunkManifest{Version: ManifestVersion, FirstLSN: last + 1, Member: a.Source.Name(), JournalFormat: journal.FormatVersion}
		for _, f := range frames {
			rec, err := journal.DecodeShipped(f)
			if err != nil {
				return total, fmt.Errorf("backup: record from %s: %w", a.Source.Name(), err)
			}
			if rec.LSN != last+1 {
				return total, fmt.Errorf("backup: %s sent LSN %d after %d", a.Source.Name(), rec.LSN, last)
			}
			if m.Records > 0 && buf.Len()+len(f) > maxBytes {
				break
			}
			if m.Records == 0 {
				m.FirstEpoch = rec.Epoch
			}
			buf.Write(f)
			sum := sha256.Sum256(f)
			m.LastLSN, m.LastEpoch, m.LastFrameSHA256 = rec.LSN, rec.Epoch, hex.EncodeToString(sum[:])
			m.Records++
			last, lastEpoch, lastFrame = rec.LSN, rec.Epoch, m.LastFrameSHA256
		}
		sum := sha256.Sum256(buf.Bytes())
		m.Size, m.SHA256, m.ArchivedAt = int64(buf.Len()), hex.EncodeToString(sum[:]), a.now()
		base := chunkBase(m.FirstLSN, m.LastLSN)
		if err := a.Store.Put(base+".chunk", bytes.NewReader(buf.Bytes())); err != nil {
			return total, err
		}
		if err := writeJSON(a.Store, base+".json", m); err != nil {
			return total, err
		}
		total += m.Records
		a.log().Debug("backup chunk archived", "first_lsn", m.FirstLSN, "last_lsn", m.LastLSN, "records", m.Records)
		if m.Records < maxRecs {
			return total, nil
		}
	}
}

// Run archives every interval and takes a new snapshot every snapshotEvery
// (0: never after the first), until ctx ends (then it returns nil). It
// takes a first snapshot when the store has none. Any other error stops it:
// a backup that silently stopped archiving would be worse than none.
func (a *Archiver) Run(ctx context.Context, interval, snapshotEvery time.Duration) error {
	err := a.run(ctx, interval, snapshotEvery)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (a *Archiver) run(ctx context.Context, interval, snapshotEvery time.Duration) error {
	cat, err := ReadCatalog(a.Store)
	if err != nil {
		return err
	}
	lastSnap := time.Time{}
	if n := len(cat.Snapshots); n > 0 {
		lastSnap = cat.Snapshots[n-1].TakenAt
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if lastSnap.IsZero() || (snapshotEvery > 0 && a.now().Sub(lastSnap) >= snapshotEvery) {
			// Archive up to now first, so the chunks reach the new snapshot.
			if !lastSnap.IsZero() {
				if _, err := a.ArchiveOnce(ctx); err != nil {
					return err
				}
			}
			m, err := a.Snapshot(ctx)
			if err != nil {
				return err
			}
			lastSnap = m.TakenAt
		}
		if _, err := a.ArchiveOnce(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
