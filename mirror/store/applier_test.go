package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/store"
)

// TestApplierStopsAtTheCommitPoint: records beyond the limit are durable
// but not applied (a rejoin could still cut them off).
func TestApplierStopsAtTheCommitPoint(t *testing.T) {
	n := openNode(t, vfs.NewMem(), "n")
	for i := range 10 {
		ops := journal.EncodeOps([]journal.Op{set("k", string(rune('a'+i)))})
		if _, err := n.j.Append(context.Background(), journal.TypeData, 1, "fhir", ops); err != nil {
			t.Fatal(err)
		}
	}
	a := store.NewApplier(n.st, n.j)
	defer a.Close()
	a.SetLimit(4)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.WaitApplied(ctx, 4); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if got := n.st.AppliedLSN(); got != 4 {
		t.Fatalf("applied %d with the limit at 4", got)
	}
	if v, _ := get(t, n.st, "fhir", "k"); v != "d" {
		t.Fatalf("k = %q at LSN 4", v)
	}
	a.SetLimit(2) // the limit never goes back
	a.SetLimit(10)
	if err := a.WaitApplied(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if v, _ := get(t, n.st, "fhir", "k"); v != "j" {
		t.Fatalf("k = %q at LSN 10", v)
	}
}

func TestApplierReportsALimitBeyondTheJournal(t *testing.T) {
	n := openNode(t, vfs.NewMem(), "n")
	a := store.NewApplier(n.st, n.j)
	defer a.Close()
	a.SetLimit(5)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.WaitApplied(ctx, 5); err == nil || ctx.Err() != nil {
		t.Fatalf("limit beyond the journal: %v (ctx %v)", err, ctx.Err())
	}
}

// TestApplierAnswersEveryWaiterOnce: many writers wait for their own
// records while the limit rises in steps; each returns once its record is
// applied (not before), and one whose context ends returns at once.
func TestApplierAnswersEveryWaiterOnce(t *testing.T) {
	n := openNode(t, vfs.NewMem(), "n")
	const records = 300 // more than one store batch
	for i := range records {
		ops := journal.EncodeOps([]journal.Op{set(fmt.Sprintf("k%03d", i), "v")})
		if _, err := n.j.Append(context.Background(), journal.TypeData, 1, "fhir", ops); err != nil {
			t.Fatal(err)
		}
	}
	a := store.NewApplier(n.st, n.j)
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	gone, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- a.WaitApplied(gone, records+1) }() // never applied here
	errs := make(chan error, records)
	for lsn := uint64(1); lsn <= records; lsn++ {
		go func() {
			if err := a.WaitApplied(ctx, lsn); err != nil {
				errs <- err
				return
			}
			if got := n.st.AppliedLSN(); got < lsn {
				errs <- fmt.Errorf("waiter for %d returned with %d applied", lsn, got)
				return
			}
			errs <- nil
		}()
	}
	for limit := uint64(7); limit < records; limit += 53 {
		a.SetLimit(limit)
		time.Sleep(time.Millisecond)
	}
	a.SetLimit(records)
	for range records {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	stop()
	if err := <-stopped; err != context.Canceled {
		t.Fatalf("a waiter whose context ended: %v", err)
	}
}

// TestApplierClosedAnswersItsWaiters: Close answers a waiting writer with
// ErrApplierClosed instead of leaving it waiting.
func TestApplierClosedAnswersItsWaiters(t *testing.T) {
	n := openNode(t, vfs.NewMem(), "n")
	a := store.NewApplier(n.st, n.j)
	done := make(chan error, 1)
	go func() { done <- a.WaitApplied(context.Background(), 5) }()
	time.Sleep(20 * time.Millisecond)
	a.Close()
	select {
	case err := <-done:
		if err != store.ErrApplierClosed {
			t.Fatalf("waiter after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiter was left waiting after Close")
	}
}
