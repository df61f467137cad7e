package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tandemhealth/tandem/mirror/failover"
)

// ErrCannotProvePrimary refuses a linearizable read on a member that is not
// the primary, or cannot prove it still is.
var ErrCannotProvePrimary = errors.New("this member cannot prove it is still the primary: read from the member whose /mirror/primary answers 200")

// lease is the primary's proof that no other member can have taken over:
// a message in its epoch from the backup, or an arbiter answer whose record
// names it primary in its epoch, received recently
// (within QoS/2) and after any stall of this process. A backup takes over
// only after the arbiter or the primary's agent agrees the primary is gone,
// which takes at least the QoS without hearing from it (the agent kills the
// primary first). A stall (SIGSTOP, a frozen VM) longer than QoS/4 voids the lease: messages
// queued while this process could not run prove nothing about now.
//
// In agent-controlled mode no confirmation is needed: the backup has
// durably promised to take over only through this member's agent, which
// kills this process (and waits for it to die) before it hands the journal
// over, and the arbiter cannot grant a takeover the backup will not ask
// for. So while this process runs in agent-controlled mode, it is the
// primary of its epoch (an operator's forced promotion aside, which is
// declared data loss anyway). Without this rule a primary that took over
// through fence + tail, alone with its partner dead, could never prove
// anything: the arbiter's record still names the partner, and the partner
// sends nothing.
type lease struct {
	qos time.Duration

	mu        sync.Mutex
	epoch     uint64
	confirmed time.Time // when the last confirming message arrived
	resumed   time.Time // end of the last stall this process noticed
}

// stallLimit is how long the watchdog may miss its ticks before it counts
// the process as stalled. A message read after an undetected stall is at
// most stallLimit old (plus transit), and the lease lasts QoS/2 from its
// receipt: together less than the QoS of silence a backup needs before it
// may ask to take over. (QoS/8 voided leases all the time on a loaded
// 2-core machine, where the scheduler alone delays ticks by 100 ms.)
func (l *lease) stallLimit() time.Duration { return l.qos / 4 }

func (l *lease) confirm(epoch uint64) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if epoch >= l.epoch {
		l.epoch, l.confirmed = epoch, now
	}
}

// watch notices stalls of this process until ctx ends.
func (l *lease) watch(ctx context.Context) {
	tick := l.stallLimit() / 4
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if now.Sub(last) > l.stallLimit() {
				l.mu.Lock()
				l.resumed = now
				l.mu.Unlock()
			}
			last = now
		}
	}
}

// valid reports whether the lease proves primacy in epoch now, for a
// primary in the given failover mode. Agent-controlled mode needs no
// confirmation (see lease); a recent stall still voids the lease for
// stallLimit, the conservative choice while the agent may be mid-fence.
func (l *lease) valid(epoch uint64, mode failover.Mode) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if mode == failover.ModeAgent {
		return l.resumed.IsZero() || now.Sub(l.resumed) > l.stallLimit()
	}
	return l.epoch == epoch && now.Sub(l.confirmed) < l.qos/2 &&
		(l.resumed.IsZero() || l.confirmed.Sub(l.resumed) > l.stallLimit())
}

// ReadBarrier makes the next read linearizable: it returns once this member
// is the primary, holds a valid lease, and its store has applied every
// record its journal held when the read began (so every acknowledged write
// is visible, also right after a restart or a takeover). A standalone node
// only waits for its store.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if n.mirror == nil {
		return n.applier.WaitApplied(ctx, n.journal.LastLSN())
	}
	snap := n.mirror.snapshot()
	if snap.Status != failover.StatusPrimary || !n.mirror.lease.valid(snap.Epoch, snap.mode) {
		return ErrCannotProvePrimary
	}
	wctx, cancel := context.WithTimeout(ctx, n.mirror.lease.qos)
	defer cancel()
	if err := n.applier.WaitApplied(wctx, n.journal.LastLSN()); err != nil {
		return fmt.Errorf("%w (its last records are not committed yet: %v)", ErrCannotProvePrimary, err)
	}
	if now := n.mirror.snapshot(); now.Status != failover.StatusPrimary || now.Epoch != snap.Epoch || !n.mirror.lease.valid(now.Epoch, now.mode) {
		return ErrCannotProvePrimary
	}
	return nil
}
