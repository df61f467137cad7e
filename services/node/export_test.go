package node

import "context"

// CloseFHIR flushes the FHIR server's buffered AuditEvents, as Run does at
// shutdown, for tests that serve Handler without Run.
func CloseFHIR(ctx context.Context, n *Node) { n.closeFHIR(ctx) }
