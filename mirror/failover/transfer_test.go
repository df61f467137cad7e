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
