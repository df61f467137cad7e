package backup

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/store"
)

// Local is a Source over a store and journal in this process: what a node
// serves its admin API from, and what tests back up.
type Local struct {
	Member  string
	Store   *store.Store
	Journal *journal.Journal
	// Committed is the tier's commit point as this member knows it; records
	// beyond it are never handed out. Default: the store's applied LSN
	// (a member applies only committed records).
	Committed func() uint64
}

var _ Source = (*Local)(nil)

// Name implements Source.
func (l *Local) Name() string { return l.Member }

// Snapshot implements Source with a Pebble checkpoint.
func (l *Local) Snapshot(ctx context.Context, dir string) (uint64, uint64, error) {
	return l.Store.Checkpoint(dir)
}

// Records implements Source: durable journal records up to the commit point.
func (l *Local) Records(ctx context.Context, from uint64, max int) ([][]byte, error) {
	limit := l.Store.AppliedLSN()
	if l.Committed != nil {
		limit = min(limit, l.Committed())
	}
	if from > limit {
		return nil, nil
	}
	r, err := l.Journal.NewReader(from)
	if errors.Is(err, journal.ErrPurged) {
		return nil, fmt.Errorf("%w: %v", ErrPurged, err)
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out [][]byte
	for len(out) < max {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, journal.ErrPurged) {
			return nil, fmt.Errorf("%w: %v", ErrPurged, err)
		}
		if err != nil {
			return nil, err
		}
		if rec.LSN > limit {
			break
		}
		f, err := journal.EncodeShipped(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}
