package arbiter

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/statefile"
)

// ErrNoState means the tier has no durable record: a new arbiter, or one
// that lost its disk. Either way it must be seeded before it grants anything.
var ErrNoState = errors.New("arbiter: no durable record for the tier")

// ErrAlreadySeeded is returned by Seed for a tier that has a record.
var ErrAlreadySeeded = errors.New("arbiter: the tier already has a record")

func statePath(dir, tier string) string { return filepath.Join(dir, tier+".arbiter.json") }

// loadState reads a tier's record. A missing file is ErrNoState; a damaged
// one is an error that names the file (the arbiter then refuses to start:
// an operator must decide, never a guess).
func loadState(dir, tier string) (failover.ArbiterState, error) {
	var st failover.ArbiterState
	err := statefile.Load(statePath(dir, tier), &st)
	if errors.Is(err, statefile.ErrNotExist) {
		return st, ErrNoState
	}
	if err != nil {
		return st, fmt.Errorf("arbiter: %w; move it aside and re-seed the tier", err)
	}
	return st, nil
}

// saveState makes a tier's record durable; only then may the arbiter answer.
func saveState(dir, tier string, st failover.ArbiterState) error {
	return statefile.Save(statePath(dir, tier), st)
}

// Seed writes the genesis record of a new tier: epoch 1, primary and backup
// named, arbiter-controlled, backup active — true at genesis, when both
// members hold the same single epoch marker and nothing else. It refuses
// when a record exists: re-seeding a live arbiter could hand out an epoch
// twice. A tier whose arbiter lost its disk is re-seeded from its members'
// records instead (the arbiter core does that when both report).
func Seed(dir, tier string, primary, backup failover.ID) error {
	if _, err := loadState(dir, tier); !errors.Is(err, ErrNoState) {
		if err == nil {
			return fmt.Errorf("%w: tier %q, %s; an arbiter is never re-seeded over a record", ErrAlreadySeeded, tier, statePath(dir, tier))
		}
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return saveState(dir, tier, failover.ArbiterState{Seeded: true, Record: failover.Record{
		Version: failover.Version{Epoch: 1}, Primary: primary, Backup: backup, BackupActive: true, Mode: failover.ModeArbiter,
	}})
}
