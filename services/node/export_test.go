package node

import (
	"context"

	"github.com/tandemhealth/tandem/mirror/journal"
)

// CloseFHIR flushes the FHIR server's buffered AuditEvents, as Run does at
// shutdown, for tests that serve Handler without Run.
func CloseFHIR(ctx context.Context, n *Node) { n.closeFHIR(ctx) }

// JournalStats is the node's journal counters (for benchmarks).
func JournalStats(n *Node) journal.Stats { return n.journal.Stats() }
