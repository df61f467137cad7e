// Package peerbench measures Tandem side by side with its closest peer,
// PostgreSQL 15 with a synchronous standby managed by pg_auto_failover, in
// one run on loopback (issue 13, `make bench-peer`):
//
//  1. storage level: 1 KiB durable commits at 1, 16 and 64 clients, Tandem's
//     mirrored writes (PUT /admin/kv on the primary, operator certificate)
//     against INSERTs of 1 KiB bytea on the PostgreSQL primary whose commit
//     waits for the synchronous standby;
//  2. FHIR level: a fixed small Patient created through /fhir on the Tandem
//     primary against the same JSON inserted into a jsonb table;
//  3. failover: kill -9 of the primary's whole node (Tandem: the member's
//     node and agent processes; PostgreSQL: the node's pg_autoctl keeper and
//     its postmaster, one process group) → first acknowledged write on
//     whichever node is then primary, median over TRIALS trials, each from
//     a healthy pair.
//
// BenchmarkFHIRCreateHTTPS (`make bench BENCH=FHIRCreateHTTPS`) is step 2
// without PostgreSQL, beside raw kv writes on the same tier, with the
// primary's and backup's CPU per operation and optional CPU profiles.
//
// Everything lives in the test file behind TANDEM_BENCH_PEER=1, so `make
// test` never starts PostgreSQL. The package must never fake the peer: when
// pg_autoctl or PostgreSQL 15 is missing the run fails and says which
// Debian package to install (deploy/peer/install.sh installs them). Both
// systems run with their default failover settings.
package peerbench
