package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// StoreFailureLimit is how long Pebble's memtable flushes may keep failing
// (Pebble retries them itself) before the member stops.
const StoreFailureLimit = 10 * time.Second

// storageCheckEvery is how often a running node looks at its storage.
const storageCheckEvery = time.Second

// ErrStorageFailed wraps the reason a node stopped because its storage
// failed under it while it ran.
var ErrStorageFailed = errors.New("storage failed")

// storageProblem is why the node's storage can no longer be trusted, or
// nil: the data directory is gone or was replaced (its files may still be
// open and writable, but nothing written now survives a restart), the
// store's applier stopped, the journal failed, or Pebble's memtable flushes
// have failed for StoreFailureLimit. A member that kept running on any of
// these would keep its role — heartbeats, acknowledgements, a primary's
// address at the gateway — while it cannot serve or keep what it holds.
func (n *Node) storageProblem(now time.Time) error {
	fi, err := os.Stat(n.cfg.DataDir)
	switch {
	case err != nil:
		return fmt.Errorf("%w: data directory %s: %v", ErrStorageFailed, n.cfg.DataDir, err)
	case !os.SameFile(fi, n.dataDir):
		return fmt.Errorf("%w: data directory %s was replaced while the node ran", ErrStorageFailed, n.cfg.DataDir)
	}
	if err := n.journal.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrStorageFailed, err)
	}
	if err := n.applier.Err(); err != nil {
		return fmt.Errorf("%w: %v", ErrStorageFailed, err)
	}
	if since, err := n.store.Failing(); !since.IsZero() && now.Sub(since) >= StoreFailureLimit {
		return fmt.Errorf("%w: the store's memtable flushes have failed for %s: %v", ErrStorageFailed, now.Sub(since).Round(time.Second), err)
	}
	return nil
}

// watchStorage sends the first storage problem it sees on failed, checking
// every storageCheckEvery until ctx ends.
func (n *Node) watchStorage(ctx context.Context, failed chan<- error) {
	t := time.NewTicker(storageCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := n.storageProblem(now); err != nil {
				failed <- err
				return
			}
		}
	}
}

// closeBounded closes the node but gives up after limit: a store whose
// disk failed can keep Pebble's close retrying forever. The journal is
// durable; the next start recovers as after kill -9.
func (n *Node) closeBounded(limit time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- n.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(limit):
		n.log.Error("node: journal and store did not close; exiting without them (the next start recovers from the journal)", "waited", limit.String())
		return nil
	}
}
