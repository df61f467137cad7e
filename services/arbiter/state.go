package arbiter

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tandemhealth/tandem/mirror/failover"
)

// stateFile is the durable form of one tier's arbiter record: the record
// and a SHA-256 of its JSON, so a damaged file is recognised as such.
type stateFile struct {
	Format int             `json:"format"`
	State  json.RawMessage `json:"state"`
	SHA256 string          `json:"sha256"`
}

const stateFormat = 1

// ErrNoState means the tier has no durable record: a new arbiter, or one
// that lost its disk. Either way it must be seeded before it grants anything.
var ErrNoState = errors.New("arbiter: no durable record for the tier")

func statePath(dir, tier string) string { return filepath.Join(dir, tier+".arbiter.json") }

// loadState reads a tier's record. A missing file is ErrNoState; a damaged
// one is an error that names the file (the arbiter then refuses to start:
// an operator must decide, never a guess).
func loadState(dir, tier string) (failover.ArbiterState, error) {
	p := statePath(dir, tier)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return failover.ArbiterState{}, ErrNoState
	}
	if err != nil {
		return failover.ArbiterState{}, err
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		return failover.ArbiterState{}, fmt.Errorf("arbiter: %s is damaged (%v); move it aside and re-seed the tier", p, err)
	}
	// The checksum is over the compact JSON of the state (the file itself is
	// indented for people to read).
	var compact bytes.Buffer
	if err := json.Compact(&compact, f.State); err != nil {
		return failover.ArbiterState{}, fmt.Errorf("arbiter: %s is damaged (%v); move it aside and re-seed the tier", p, err)
	}
	sum := sha256.Sum256(compact.Bytes())
	if f.Format != stateFormat || hex.EncodeToString(sum[:]) != f.SHA256 {
		return failover.ArbiterState{}, fmt.Errorf("arbiter: %s is damaged (format %d, checksum mismatch); move it aside and re-seed the tier", p, f.Format)
	}
	var st failover.ArbiterState
	if err := json.Unmarshal(f.State, &st); err != nil {
		return failover.ArbiterState{}, fmt.Errorf("arbiter: %s: %w", p, err)
	}
	return st, nil
}

// saveState makes a tier's record durable: write a temporary file, fsync
// it, rename it over the old one, fsync the directory. Only then may the
// arbiter answer.
func saveState(dir, tier string, st failover.ArbiterState) error {
	js, err := json.Marshal(st)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(js)
	data, err := json.MarshalIndent(stateFile{Format: stateFormat, State: js, SHA256: hex.EncodeToString(sum[:])}, "", "  ")
	if err != nil {
		return err
	}
	p := statePath(dir, tier)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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
			return fmt.Errorf("arbiter: tier %q already has a record in %s; an arbiter is never re-seeded over a record", tier, statePath(dir, tier))
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
