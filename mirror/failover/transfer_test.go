package failover

import "testing"

// TestTransferStatus: both members report journal transfer as measured:
// active while the backup's acks count, disconnected after a QoS without
// contact, and active again after the backup returns and catches up.
func TestTransferStatus(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 3)
	for _, id := range []ID{"A", "B"} {
		if got := tr.m(id).Transfer(); got.Status != "active" || got.Behind != 0 {
			tr.fatalf("%s transfer %+v, want active and caught up", id, got)
		}
	}
	tr.cut("A", "B", true)
	tr.write("A", "x1")
	tr.run(2 * tQoS)
	if got := tr.m("A").Transfer(); got.Status != "disconnected" || got.Behind == 0 {
		tr.fatalf("primary's transfer %+v, want disconnected with records behind", got)
	}
	if got := tr.m("B").Transfer(); got.Status != "disconnected" {
		tr.fatalf("backup's transfer %+v, want disconnected", got)
	}
	tr.heal()
	tr.run(4 * tQoS)
	if got := tr.m("B").Transfer(); got.Behind != 0 || got.Status == "disconnected" {
		tr.fatalf("backup's transfer after healing %+v, want connected and caught up", got)
	}
	if !tr.hasData("B", "x1") {
		tr.fatalf("B did not catch up")
	}
}

// TestDropDataKeepsTheShapeOfTheJournal: DropData forgets record bytes up
// to an LSN but not epochs, LSNs or markers, and the member goes on
// replicating (its shell fills dropped bytes in from the journal).
func TestDropDataKeepsTheShapeOfTheJournal(t *testing.T) {
	tr := newTier(t)
	tr.run(4)
	tr.steady("w", 5)
	a := tr.m("A")
	a.DropData(3)
	j := a.Journal()
	for _, e := range j {
		switch {
		case e.LSN <= 3 && e.Data != nil:
			tr.fatalf("entry %d kept its data", e.LSN)
		case e.LSN > 3 && !e.Marker && e.Data == nil:
			tr.fatalf("entry %d lost its data", e.LSN)
		}
	}
	if !j[0].Marker || j[0].Epoch != 1 || a.LastLSN() != 6 {
		tr.fatalf("journal shape changed: %+v, last %d", j[0], a.LastLSN())
	}
	tr.write("A", "after-drop")
	tr.run(6)
	if !tr.hasData("B", "after-drop") {
		tr.fatalf("replication stopped after DropData")
	}
}
