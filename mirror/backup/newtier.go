package backup

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/store"
)

// NewTierMaxPayload bounds the payload of each data record a new-tier
// restore writes. A member ships at most 64 records in one append and a
// transport frame holds at most 64 MiB, so records of 1 MiB could make a
// catch-up append too large; 256 KiB keeps a full one at 16 MiB. A single
// key/value larger than this gets a record of its own.
const NewTierMaxPayload = 256 << 10

// NewTierSeedFile is written into the data directory by a new-tier restore.
// A tier member that finds it, with no hard state yet, starts the tier's
// genesis (epoch 1, as `tandem arbiter seed` records it) over the restored
// journal instead of refusing a journal that holds more than the first
// epoch marker; it then deletes the file.
const NewTierSeedFile = "NEW_TIER.json"

// NewTierReport describes the journal of a new tier written by
// RestoreNewTier: epoch 1 from LSN 1 (the epoch marker every new member of
// a tier starts with) to LastLSN.
type NewTierReport struct {
	Epoch       uint64 `json:"epoch"`
	FirstLSN    uint64 `json:"first_lsn"`
	LastLSN     uint64 `json:"last_lsn"`
	DataRecords int    `json:"data_records"`
	Keys        int    `json:"keys"`
	// PayloadBytes is the sum of the data records' payloads.
	PayloadBytes int64 `json:"payload_bytes"`
	// MaxPayload is the per-record payload bound used (NewTierMaxPayload).
	MaxPayload int `json:"max_payload"`
}

// RestoreNewTier restores like Restore, to the same target, but makes the
// content the first history of a new tier: dest/journal starts at LSN 1
// with the epoch-1 marker (the one openStorage gives every new member),
// followed by every restored database's keys and values as ordinary data
// records (databases in name order, keys in key order, each record's
// payload at most NewTierMaxPayload), and dest/store is recovered from that
// journal, so its applied LSN is the journal's last LSN. Nothing of the old
// tier's epochs, LSNs, hard state or fence marks is kept; the report gives
// both the source point restored (LSN, Epoch, ArchivedBy) and the new
// tier's LSN range (NewTier). The content hashes are checked equal to the
// plain restore's before anything is reported. On any error dest is
// removed.
func RestoreNewTier(ctx context.Context, st Store, to Target, dest string) (rep RestoreReport, err error) {
	start := time.Now()
	if _, err := os.Stat(dest); err == nil {
		return rep, fmt.Errorf("backup: restore target %s already exists; restore into a new directory", dest)
	}
	if err := os.MkdirAll(dest, 0o750); err != nil {
		return rep, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dest)
		}
	}()
	// The plain restore, unchanged, into a scratch directory inside dest
	// (removed with dest on error, and before returning).
	scratch := filepath.Join(dest, ".source")
	rep, err = Restore(ctx, st, to, scratch)
	if err != nil {
		return rep, err
	}
	nt, hashes, err := reencode(ctx, filepath.Join(scratch, "store"), dest)
	if err != nil {
		return rep, err
	}
	for db, h := range rep.Hashes {
		if hashes[db] != h {
			return rep, fmt.Errorf("backup: new-tier content of database %s has SHA-256 %s, the restored snapshot %s", db, hashes[db], h)
		}
	}
	if len(hashes) != len(rep.Hashes) {
		return rep, fmt.Errorf("backup: new-tier store holds %d databases, the restored snapshot %d", len(hashes), len(rep.Hashes))
	}
	if err := os.RemoveAll(scratch); err != nil {
		return rep, err
	}
	rep.NewTier = &nt
	rep.Took = time.Since(start)
	d := Dir{Root: dest}
	if err := writeJSON(d, "RESTORED.json", rep); err != nil {
		return rep, err
	}
	if err := writeJSON(d, NewTierSeedFile, nt); err != nil {
		return rep, err
	}
	return rep, nil
}

// reencode writes the content of the store in srcDir as a new journal in
// dest/journal and recovers dest/store from it.
func reencode(ctx context.Context, srcDir, dest string) (nt NewTierReport, hashes map[string]string, err error) {
	src, err := store.Open(srcDir, store.Options{})
	if err != nil {
		return nt, nil, fmt.Errorf("backup: open restored store: %w", err)
	}
	defer src.Close()
	j, err := journal.Open(filepath.Join(dest, "journal"), journal.Options{StartLSN: 1})
	if err != nil {
		return nt, nil, fmt.Errorf("backup: create journal: %w", err)
	}
	defer func() {
		if cerr := j.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	const epoch = 1
	nt = NewTierReport{Epoch: epoch, FirstLSN: 1, MaxPayload: NewTierMaxPayload}
	if _, err := j.Append(ctx, journal.TypeEpochMarker, epoch, "", journal.EncodeEpochMarker(0, 0)); err != nil {
		return nt, nil, fmt.Errorf("backup: write epoch marker: %w", err)
	}
	// Enqueue without waiting (group commit), but never more than a window
	// of records ahead of the disk.
	const window = 64
	var inflight []*journal.Pending
	emit := func(db string, ops []journal.Op) error {
		payload := journal.EncodeOps(ops)
		p, err := j.Enqueue(journal.TypeData, epoch, db, payload)
		if err != nil {
			return fmt.Errorf("backup: journal record for database %s: %w", db, err)
		}
		nt.DataRecords++
		nt.PayloadBytes += int64(len(payload))
		inflight = append(inflight, p)
		if len(inflight) >= 2*window {
			if err := inflight[window-1].Wait(ctx); err != nil {
				return err
			}
			inflight = append(inflight[:0], inflight[window:]...)
		}
		return nil
	}
	for _, db := range src.Databases() {
		var ops []journal.Op
		size, wrote := journal.OpsHeaderSize, false
		var emitErr error
		err := src.Scan(db, nil, func(k, v []byte) bool {
			op := journal.Op{Kind: journal.OpSet, Key: append([]byte(nil), k...), Value: append([]byte(nil), v...)}
			if n := journal.EncodedOpSize(op); len(ops) > 0 && size+n > NewTierMaxPayload {
				if emitErr = emit(db, ops); emitErr != nil {
					return false
				}
				ops, size, wrote = nil, journal.OpsHeaderSize, true
			}
			ops = append(ops, op)
			size += journal.EncodedOpSize(op)
			nt.Keys++
			return ctx.Err() == nil
		})
		if err == nil {
			err = emitErr
		}
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			return nt, nil, err
		}
		// The last batch; a database whose keys were all deleted still
		// gets one (empty) record, so it exists in the new tier too.
		if len(ops) > 0 || !wrote {
			if err := emit(db, ops); err != nil {
				return nt, nil, err
			}
		}
	}
	for _, p := range inflight {
		if err := p.Wait(ctx); err != nil {
			return nt, nil, fmt.Errorf("backup: write journal: %w", err)
		}
	}
	nt.LastLSN = j.DurableLSN()

	s, err := store.Open(filepath.Join(dest, "store"), store.Options{})
	if err != nil {
		return nt, nil, fmt.Errorf("backup: create store: %w", err)
	}
	defer func() {
		if cerr := s.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if _, err := s.Recover(j); err != nil {
		return nt, nil, fmt.Errorf("backup: recover the new store from its journal: %w", err)
	}
	if s.AppliedLSN() != nt.LastLSN || s.Epoch() != epoch {
		return nt, nil, fmt.Errorf("backup: new store applied LSN %d epoch %d, the journal ends at LSN %d epoch %d", s.AppliedLSN(), s.Epoch(), nt.LastLSN, epoch)
	}
	hashes = map[string]string{}
	for _, db := range s.Databases() {
		h, err := s.ContentHash(db)
		if err != nil {
			return nt, nil, err
		}
		hashes[db] = hex.EncodeToString(h[:])
	}
	return nt, hashes, nil
}
