package model

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// panFlags: safety search (assertions), depth bound far above the model's
// reachable depth (the test fails if it is hit), 2^24-slot hash table.
var panFlags = []string{"-m1000000", "-w24"}

// ccFlags: exhaustive safety search; pan stops at 4 GiB instead of swapping.
var ccFlags = []string{"-DSAFETY", "-DMEMLIM=4096"}

type panResult struct {
	Errors      int
	Stored      int64
	Matched     int64
	Transitions int64
	Depth       int
	MemoryMB    float64
	Seconds     float64
	Output      string
}

var (
	reErrors  = regexp.MustCompile(`errors: (\d+)`)
	reStored  = regexp.MustCompile(`(\d+) states, stored`)
	reMatched = regexp.MustCompile(`(\d+) states, matched`)
	reTrans   = regexp.MustCompile(`(\d+) transitions \(`)
	reDepth   = regexp.MustCompile(`depth reached (\d+)`)
	reMemory  = regexp.MustCompile(`([\d.]+)\s+total actual memory usage`)
	reElapsed = regexp.MustCompile(`pan: elapsed time ([\d.e+]+) seconds`)
	reAssert  = regexp.MustCompile(`pan:\d+: (assertion violated .*)`)
)

func requireTools(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("spin model check skipped with -short")
	}
	for _, tool := range []string{"spin", "gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found on PATH: install spin: apt-get install -y spin (gcc: apt-get install -y gcc)", tool)
		}
	}
}

func run(t *testing.T, ctx context.Context, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// check generates the verifier for tier.pml with the given -D defines,
// compiles it and runs an exhaustive safety search in a temp dir.
func check(t *testing.T, timeout time.Duration, opt string, defines ...string) panResult {
	t.Helper()
	src, err := os.ReadFile("tier.pml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tier.pml"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	run(t, ctx, dir, "spin", append(append([]string{"-a"}, defines...), "tier.pml")...)
	run(t, ctx, dir, "gcc", append(append([]string{opt}, ccFlags...), "-o", "pan", "pan.c")...)

	cmd := exec.CommandContext(ctx, "./pan", panFlags...)
	cmd.Dir = dir
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if ctx.Err() != nil {
		t.Fatalf("pan %v: no result within %v\n%s", defines, timeout, tail(out))
	}
	// pan exits 0 with or without a counterexample; anything else is a crash.
	if err != nil {
		t.Fatalf("pan %v: %v\n%s", defines, err, tail(out))
	}
	for _, bad := range []string{"max search depth too small", "reached -DMEMLIM bound", "out of memory"} {
		if strings.Contains(out, bad) {
			t.Fatalf("pan %v: search incomplete (%s)\n%s", defines, bad, tail(out))
		}
	}
	r := panResult{Output: out}
	m := reErrors.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("pan %v: no \"errors:\" line\n%s", defines, tail(out))
	}
	r.Errors, _ = strconv.Atoi(m[1])
	r.Stored = atoi64(reStored, out)
	r.Matched = atoi64(reMatched, out)
	r.Transitions = atoi64(reTrans, out)
	r.Depth = int(atoi64(reDepth, out))
	r.MemoryMB = atof(reMemory, out)
	r.Seconds = atof(reElapsed, out)
	return r
}

func atoi64(re *regexp.Regexp, s string) int64 {
	if m := re.FindStringSubmatch(s); m != nil {
		v, _ := strconv.ParseInt(m[1], 10, 64)
		return v
	}
	return -1
}

func atof(re *regexp.Regexp, s string) float64 {
	if m := re.FindStringSubmatch(s); m != nil {
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	return -1
}

func tail(s string) string {
	const n = 3000
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// TestSpinModel checks the correct protocol exhaustively with the default
// bounds of tier.pml (W=2 writes, epochs <= 3, 2 faults, 3 arbiter requests
// per member): about 21 million states, 2.6 GB, 2–4 minutes here.
func TestSpinModel(t *testing.T) {
	requireTools(t)
	start := time.Now()
	r := check(t, 10*time.Minute, "-O2")
	if r.Errors != 0 || !strings.Contains(r.Output, "Full statespace search") {
		t.Fatalf("spin found %d error(s) in the correct protocol\n%s", r.Errors, tail(r.Output))
	}
	t.Logf("states stored %d, matched %d, transitions %d, depth reached %d, memory %.0f MB, pan %.1f s, total %.1f s",
		r.Stored, r.Matched, r.Transitions, r.Depth, r.MemoryMB, r.Seconds, time.Since(start).Seconds())
	fmt.Printf("spin: %d states, %d errors\n", r.Stored, r.Errors)
}

// mutants: each deliberate bug, with the bounds under which its
// counterexample is found quickly. spin must report an assertion violation.
var mutants = []struct {
	define  string
	extra   []string
	explain string
}{
	{"MUTANT_ACK_EARLY", nil, "primary acknowledges before the backup's ack (Mutations.AckBeforeBackup)"},
	{"MUTANT_NO_TAIL", nil, "agent-path takeover without the journal tail (Mutations.NonActiveTakeover)"},
	{"MUTANT_ARBITER_FORGETS", []string{"-DW=1"}, "arbiter answers before persisting, restart forgets (Mutations.ArbiterForget)"},
	{"MUTANT_BACKUP_ACKS_OLD", nil, "backup acks the old epoch after asking for takeover (Mutations.AckAfterTakeoverAsk)"},
	{"MUTANT_INACTIVE_TAKEOVER", nil, "arbiter grants a takeover to a backup recorded not active"},
	{"MUTANT_RESEED_KEEPS_ANSWERS", []string{"-DW=1"}, "members act on answers of an arbiter that lost its disk"},
	{"MUTANT_ALONE_WHILE_LEAVING", nil, "agent-mode primary commits alone while \"arbiter-controlled, backup active\" is pending"},
	{"MUTANT_NO_RESYNC", nil, "a restarted primary writes on in its epoch without its backup's records of it (Mutations.NoResync)"},
	{"MUTANT_NO_RESTARTS_ECHO", []string{"-DMAXEP=2", "-DMAXRQ=1"}, "an acknowledgement from before the primary's restart counts (Mutations.NoRestartsEcho)"},
}

// TestSpinMutants checks that every mutant is caught: the properties bite.
func TestSpinMutants(t *testing.T) {
	requireTools(t)
	for _, mu := range mutants {
		t.Run(mu.define, func(t *testing.T) {
			start := time.Now()
			r := check(t, 2*time.Minute, "-O0", append([]string{"-D" + mu.define}, mu.extra...)...)
			if r.Errors == 0 {
				t.Fatalf("%s (%s): spin found no counterexample (%d states) — the properties do not catch it",
					mu.define, mu.explain, r.Stored)
			}
			what := "?"
			if m := reAssert.FindStringSubmatch(r.Output); m != nil {
				what = m[1]
			}
			t.Logf("caught: %s after %d states, %.1f s: %s", mu.explain, r.Stored, time.Since(start).Seconds(), what)
		})
	}
}

// witnesses: states the exhaustive search must be able to reach, so that a
// clean TestSpinModel is not clean because the interesting paths are dead.
// Each -DREACH_* adds assert(!state); spin must find it violated.
var witnesses = []struct{ define, explain string }{
	{"REACH_ACK_IN_LAST_EPOCH", "a write acknowledged in epoch MAXEP (after two takeovers)"},
	{"REACH_AGENT_MODE_ALONE", "a primary acknowledging alone in agent-controlled mode"},
	{"REACH_ALONE_AFTER_RESEED", "a primary acknowledging alone after the arbiter was re-seeded"},
	{"REACH_QUARANTINE", "a rejoining former primary dropping (quarantining) its tail"},
	{"REACH_TAKEOVER_ALL_ACKED", "a takeover after every client write was acknowledged"},
	{"REACH_RESYNC_TAKES", "a restarted primary taking records it shipped early from its backup"},
	{"REACH_REOPEN", "a restarted primary, its backup silent, granted a new epoch of its own"},
}

// TestSpinReachable checks that the witnesses are reachable (the model is not vacuous).
func TestSpinReachable(t *testing.T) {
	requireTools(t)
	for _, w := range witnesses {
		t.Run(w.define, func(t *testing.T) {
			r := check(t, 2*time.Minute, "-O0", "-D"+w.define)
			if r.Errors == 0 {
				t.Fatalf("%s: unreachable in the model: %s", w.define, w.explain)
			}
			t.Logf("reachable: %s (depth %d)", w.explain, r.Depth)
		})
	}
}
