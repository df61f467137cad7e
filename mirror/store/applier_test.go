package store_test

import (
	"context"
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
