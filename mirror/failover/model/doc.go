// Package model holds the Promela model of the mirror's failover protocol
// (tier.pml) and the tests that check it with spin: TestSpinModel runs an
// exhaustive safety search of the correct protocol and fails unless spin
// reports no error; TestSpinMutants checks each deliberate bug (a -DMUTANT_*
// switch) and fails unless spin finds a counterexample, so the properties are
// known to bite; TestSpinReachable checks -DREACH_* witnesses so that a clean
// run is not clean because the interesting paths are dead.
//
// The properties are DESIGN §3 invariants 1 and 2 (no acknowledged write is
// lost; at most one member commits in any epoch) and the prefix part of
// invariant 4. The comment at the top of tier.pml and MAPPING.md map the
// model's processes, variables and messages to the Go types of package
// mirror/failover.
//
// The tests need spin and gcc on PATH (apt-get install -y spin gcc); they are
// skipped with -short.
package model
