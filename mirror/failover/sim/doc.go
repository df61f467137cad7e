// Package sim is a seeded, single-process simulation of a whole mirror tier:
// the two failover members, the arbiter, both agents, 0–2 async members and
// client writers, all driven through the pure cores of package failover.
//
// A seed (math/rand/v2 PCG) fixes everything: message delay, loss,
// duplication and reordering; messages to a process that is down, dropped
// or held for its restart (a sender's link sends the frames queued while
// its connection was down once a dial reaches the restarted process);
// one-way and two-way link cuts between hosts (an agent shares its
// member's host); crashes and restarts that keep only what a core asked to
// persist (also a crash between fsync and send); arbiter disk
// loss; pauses; operator actions (no-failover, planned failover, policy gate
// verdicts, forced promotion with a recorded data-loss decision); journal
// purges anywhere up to what each core allows (asyncs down longer than a
// retention, and now and then a running one — the size cap — are released)
// and re-seeds of needs-rebuild members from the primary's commit point
// (always while healing). Client writes count as acknowledged only when a
// core emits ActAckClients.
//
// After every step it checks DESIGN §3 invariants 1–4:
//  1. the primary of the highest epoch holds every acknowledged write;
//  2. no two members commit (or are primary) in one epoch, and acknowledged
//     writes form one linear history (hash chain);
//  3. a member takes over only with the acknowledged journal (checked at
//     ActPromote), except by a recorded operator decision whose range is
//     then exempted;
//  4. journals are prefixes of one history (log matching: equal (LSN, epoch)
//     implies equal prefix);
//
// and, for purge: a member purges only acknowledged records (of the
// history, or of one a forced promotion explicitly gave up); a
// needs-rebuild member never acknowledges an append and never becomes
// primary.
//
// At the end it heals every fault, restarts every process, clears operator
// holds and quiesces, then checks invariant 5 (every member's journal equal).
//
// Run(Options{Seed: s}) replays a seed exactly; TestSim (flags -seeds, -seed,
// -trace) prints the seed and trace of failures and, last,
// "sim: N seeds, V violations". TestMutationsCaught proves the checks bite.
//
// What it must never do: use wall-clock time, goroutines, real sockets or
// files, or iterate maps where order matters — a seed must replay exactly.
package sim
