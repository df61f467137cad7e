// Package statefile keeps a small piece of durable state — a member's hard
// state, the arbiter's record, an agent's fence count — in one JSON file
// with a checksum, replaced atomically.
//
// Save writes a temporary file, fsyncs it, renames it over the old one and
// fsyncs the directory, so after a crash the file holds either the old or
// the new state, whole. Load tells a missing file (ErrNotExist) from a
// damaged one (ErrDamaged, naming the file): the first is a new or wiped
// disk, the second needs an operator, and neither is ever guessed around.
package statefile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrNotExist means there is no state file.
var ErrNotExist = errors.New("statefile: no state file")

// ErrDamaged means the file exists but fails its checks.
var ErrDamaged = errors.New("statefile: damaged")

const format = 1

type envelope struct {
	Format int             `json:"format"`
	State  json.RawMessage `json:"state"`
	SHA256 string          `json:"sha256"` // of the compact JSON of State
}

// Load reads path into v.
func Load(path string, v any) error {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ErrNotExist
	}
	if err != nil {
		return err
	}
	var e envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDamaged, path, err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, e.State); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDamaged, path, err)
	}
	sum := sha256.Sum256(compact.Bytes())
	if e.Format != format || hex.EncodeToString(sum[:]) != e.SHA256 {
		return fmt.Errorf("%w: %s: format %d or checksum mismatch", ErrDamaged, path, e.Format)
	}
	dec := json.NewDecoder(bytes.NewReader(compact.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDamaged, path, err)
	}
	return nil
}

// Save makes v durable at path.
func Save(path string, v any) error {
	js, err := json.Marshal(v)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(js)
	data, err := json.MarshalIndent(envelope{Format: format, State: js, SHA256: hex.EncodeToString(sum[:])}, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
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
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
