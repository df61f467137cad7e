package node

import (
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/failover"
)

func TestLeaseInArbiterModeNeedsARecentConfirmationInItsEpoch(t *testing.T) {
	l := &lease{qos: 400 * time.Millisecond}
	if l.valid(2, failover.ModeArbiter) {
		t.Fatal("valid before any confirmation")
	}
	l.confirm(1)
	if l.valid(2, failover.ModeArbiter) {
		t.Fatal("a confirmation of epoch 1 proved epoch 2")
	}
	l.confirm(2)
	if !l.valid(2, failover.ModeArbiter) {
		t.Fatal("not valid right after a confirmation")
	}
	time.Sleep(l.qos/2 + 10*time.Millisecond)
	if l.valid(2, failover.ModeArbiter) {
		t.Fatal("still valid QoS/2 after the last confirmation")
	}
	// A stall: a confirmation read right after it proves nothing.
	l.mu.Lock()
	l.resumed = time.Now()
	l.mu.Unlock()
	l.confirm(2)
	if l.valid(2, failover.ModeArbiter) {
		t.Fatal("a message read right after a stall renewed the lease")
	}
}

// A primary that took over through fence + tail is alone, in
// agent-controlled mode, with an arbiter record that names its dead
// partner: nothing can confirm it, and nothing needs to.
func TestLeaseInAgentModeNeedsNoConfirmationButAStallVoidsIt(t *testing.T) {
	l := &lease{qos: 400 * time.Millisecond}
	if !l.valid(2, failover.ModeAgent) {
		t.Fatal("agent-controlled primary without confirmations refused")
	}
	l.mu.Lock()
	l.resumed = time.Now()
	l.mu.Unlock()
	if l.valid(2, failover.ModeAgent) {
		t.Fatal("valid right after a stall")
	}
	time.Sleep(l.stallLimit() + 10*time.Millisecond)
	if !l.valid(2, failover.ModeAgent) {
		t.Fatal("still void a stall limit after the stall")
	}
}
