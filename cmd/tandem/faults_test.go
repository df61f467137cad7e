package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/tandemhealth/tandem/mirror/cluster"
)

// The fault suite (issue 13): seeded schedules of faults against a real
// tier under concurrent clients, every client operation recorded, then
// checked: per-key linearizability (porcupine), no acknowledged write lost,
// never two members committing in one epoch, equal content after healing.
// `make faults SCHEDULES=N` runs N seeds; `make test` runs a short fixed set.

// kvOp is one client operation on the tier's kv API.
type kvOp struct {
	Client  int    `json:"client"`
	Key     string `json:"key"`
	Put     bool   `json:"put"`
	Value   string `json:"value"`   // written, or read ("" = absent)
	Unknown bool   `json:"unknown"` // a write whose outcome the client never learned
	Call    int64  `json:"call"`
	Return  int64  `json:"return"`
	Member  string `json:"member"`
	Unique  bool   `json:"unique,omitempty"` // a write-once key, outside the linearizability check
}

type faultRun struct {
	tr    *tier
	rng   *rand.Rand
	seed  uint64
	start time.Time

	mu     sync.Mutex
	ops    []kvOp
	faults []string
}

func (f *faultRun) note(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	msg := fmt.Sprintf("%6.2fs "+format, append([]any{time.Since(f.start).Seconds()}, args...)...)
	f.faults = append(f.faults, msg)
	f.tr.t.Log(msg)
}

// keys is how many keys the clients share: few enough to collide often,
// enough that each key's history stays small for the checker.
const keys = 12

// clients runs n clients on keys k0..k11 until stop closes.
func (f *faultRun) clients(n int, stop chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for c := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(f.seed, uint64(c)))
			target := "a"
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				op := kvOp{Client: c, Key: fmt.Sprintf("k%d", rng.IntN(keys)), Put: rng.IntN(10) < 6, Member: target}
				if rng.IntN(4) == 0 {
					// A write-once key: its loss cannot hide behind an overwrite.
					op.Key, op.Put, op.Unique = fmt.Sprintf("u%d-%d", c, i), true, true
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				op.Call = time.Since(f.start).Nanoseconds()
				var err error
				if op.Put {
					op.Value = fmt.Sprintf("c%d-%d", c, i)
					err = f.tr.client.Do(ctx, "PUT", target, "/admin/kv/fhir/"+op.Key, []byte(op.Value), nil)
				} else {
					var v []byte
					err = f.tr.client.Do(ctx, "GET", target, "/admin/kv/fhir/"+op.Key+"?primary=1", nil, &v)
					if err != nil && strings.Contains(err.Error(), "no such key") {
						err = nil
					}
					op.Value = string(v)
				}
				op.Return = time.Since(f.start).Nanoseconds()
				cancel()
				if err != nil {
					if !op.Put {
						// A failed read tells nothing; it is left out.
						time.Sleep(30 * time.Millisecond)
						if p, perr := f.tr.client.Primary(context.Background(), "records"); perr == nil {
							target = p
						}
						continue
					}
					// The write may or may not have happened.
					op.Unknown, op.Return = true, math.MaxInt64
				}
				f.mu.Lock()
				f.ops = append(f.ops, op)
				f.mu.Unlock()
				if err != nil {
					time.Sleep(30 * time.Millisecond)
					if p, perr := f.tr.client.Primary(context.Background(), "records"); perr == nil {
						target = p
					}
				}
			}
		}()
	}
	return &wg
}

// kvModel is a register per key; histories are partitioned by key.
var kvModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, o := range h {
			k := o.Input.(kvOp).Key
			if _, ok := by[k]; !ok {
				keys = append(keys, k)
			}
			by[k] = append(by[k], o)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		op := input.(kvOp)
		if op.Put {
			return true, op.Value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		op := input.(kvOp)
		if op.Put {
			return fmt.Sprintf("put(%s, %s)@%s", op.Key, op.Value, op.Member)
		}
		return fmt.Sprintf("get(%s) -> %q @%s", op.Key, output, op.Member)
	},
}

// faultKinds are the faults a schedule draws from.
var faultKinds = []string{"kill-primary", "kill-backup", "pause-primary", "cut-pair", "cut-pair-one-way", "cut-primary-arbiter", "cut-backup-arbiter", "cut-all", "kill-arbiter", "planned-failover", "kill-primary-and-arbiter"}

// Not drawn at random yet: "cut-pair+kill-primary-host" (the primary's node
// and agent lost while cut off from the backup). With
// `TANDEM_FAULTS=cut-pair,cut-pair+kill-primary-host` it once left no
// primary (a member its returning agent fenced was never restarted: the
// settle loop now restarts members as a supervisor would) and once left the
// members' content different (most likely the hash compare racing live
// clients, fixed in settle; an agent log also showed its fence racing a
// starting node for the journal, fixed in the agent). It stays out of the
// random set until many schedules of it pass.
// TestFaultSuiteCatchesMutations uses it.

func (f *faultRun) roles() (primary, backup string) {
	for _, m := range []string{"a", "b"} {
		switch f.tr.status(m) {
		case "primary":
			primary = m
		case "backup":
			backup = m
		}
	}
	return primary, backup
}

func other(m string) string {
	if m == "a" {
		return "b"
	}
	return "a"
}

// restartDead restarts every process that exited (a fenced member, say),
// as systemd's Restart=on-abnormal would.
func (f *faultRun) restartDead() {
	for name, c := range f.tr.procs {
		if c.ProcessState != nil || syscall.Kill(c.Process.Pid, 0) != nil {
			f.note("  %s had exited (%v): restarted", name, c.ProcessState)
			f.tr.start(name)
		}
	}
}

// inject applies one fault, proves it happened, holds it, then repairs it.
func (f *faultRun) inject(kind string) {
	tr := f.tr
	defer f.restartDead()
	f.restartDead()
	primary, backup := f.roles()
	if primary == "" { // no primary now (e.g. right after a host loss)
		primary = "a"
		if backup == "a" {
			primary = "b"
		}
	}
	hold := time.Duration(500+f.rng.IntN(2500)) * time.Millisecond
	// Only a backup may take over; one still rejoining must not. Without
	// the primary's agent (host loss) only an *active* backup may: the
	// arbiter refuses one the primary reported behind.
	isBackup := backup != ""
	if backup == "" {
		backup = other(primary)
	}
	active := isBackup
	if kind == "cut-pair+kill-primary-host" {
		st := tr.memberStatus(primary)
		tf, _ := st["transfer"].(map[string]any)
		active = isBackup && tf != nil && tf["status"] == "active"
	}
	takeover := func() {
		if !active {
			f.note("  %s was not an active backup: no takeover expected", backup)
			time.Sleep(hold)
			return
		}
		tr.waitFor("a new primary after the kill", 30*time.Second, func() bool { return tr.status(backup) == "primary" })
		f.note("  %s primary in epoch %d", backup, tr.epoch(backup))
	}
	epoch := tr.epoch(primary)
	f.note("%s (primary %s in epoch %d, hold %s)", kind, primary, epoch, hold)
	cut := func(links ...string) {
		for _, l := range links {
			tr.proxies[l].cut()
		}
		f.note("  cut %v", links)
		time.Sleep(hold)
		for _, l := range links {
			tr.proxies[l].heal()
		}
		f.note("  healed %v", links)
	}
	switch kind {
	case "kill-primary", "kill-backup", "kill-arbiter":
		name := map[string]string{"kill-primary": primary, "kill-backup": backup, "kill-arbiter": "arbiter"}[kind]
		tr.kill9(name)
		f.note("  %s killed (pid gone)", name)
		time.Sleep(hold)
		if kind == "kill-primary" {
			takeover()
		}
		tr.start(name)
		f.note("  %s restarted", name)
	case "kill-primary-and-arbiter":
		tr.kill9("arbiter")
		tr.kill9(primary)
		f.note("  arbiter and %s killed", primary)
		takeover()
		tr.start("arbiter")
		tr.start(primary)
	case "pause-primary":
		pid := tr.procs[primary].Process.Pid
		syscall.Kill(pid, syscall.SIGSTOP)
		f.note("  %s (pid %d) stopped", primary, pid)
		time.Sleep(testQoS*2 + hold)
		syscall.Kill(pid, syscall.SIGCONT)
		f.note("  %s continued", primary)
	case "cut-pair":
		cut(primary+"->"+backup, backup+"->"+primary)
	case "cut-pair-one-way":
		cut(primary + "->" + backup)
	case "cut-primary-arbiter":
		cut(primary + "->arbiter")
	case "cut-backup-arbiter":
		cut(backup + "->arbiter")
	case "cut-all":
		cut(primary+"->"+backup, backup+"->"+primary, primary+"->arbiter", backup+"->arbiter")
	case "cut-pair+kill-primary-host":
		links := []string{primary + "->" + backup, backup + "->" + primary}
		for _, l := range links {
			tr.proxies[l].cut()
		}
		f.note("  cut %v", links)
		// Within the QoS: the arbiter still counts the backup as active.
		time.Sleep(testQoS / 2)
		tr.kill9(primary)
		tr.kill9("agent-" + primary)
		f.note("  %s and its agent killed (pids gone) with the pair cut", primary)
		takeover()
		for _, l := range links {
			tr.proxies[l].heal()
		}
		tr.start("agent-" + primary)
		tr.start(primary)
	case "planned-failover":
		if err := tr.client.Do(context.Background(), "POST", primary, "/admin/planned-failover", nil, nil); err != nil {
			f.note("  planned failover refused: %v", err)
		}
		time.Sleep(hold)
	}
}

// settle waits until the tier has a primary and a backup (the clients
// still running, so their histories include the recovery), then stops the
// clients with stopClients and waits for equal content at quiescence; it
// returns what it could not reach. (Comparing hashes while clients still
// write only succeeds in a lucky quiet instant: that made seeds 3, 5 and 6
// report "content still differs" with both members caught up.)
func (f *faultRun) settle(stopClients func()) (primary string, problem string) {
	tr := f.tr
	defer stopClients() // idempotent: on every path the clients have stopped when settle returns
	if !until(60*time.Second, func() bool {
		// As a supervisor would (systemd Restart=on-abnormal): a member its
		// returning agent fenced after the fault was repaired comes back,
		// and rejoins as backup.
		f.restartDead()
		p, b := f.roles()
		primary = p
		return p != "" && b != ""
	}) {
		return primary, fmt.Sprintf("no primary and backup 60s after healing (a: %s, b: %s)", tr.status("a"), tr.status("b"))
	}
	stopClients()
	hash := func(m string) string {
		var h struct{ SHA256 string }
		if err := tr.client.Do(context.Background(), "GET", m, "/admin/hash/fhir", nil, &h); err != nil {
			return "unreachable: " + err.Error()
		}
		return h.SHA256
	}
	if !until(60*time.Second, func() bool { return hash("a") == hash("b") }) {
		// What each member measures, for whoever debugs the divergence:
		// journal, commit and applied LSNs, databases, transfer.
		state := func(m string) string {
			st := tr.memberStatus(m)
			out, _ := json.Marshal(map[string]any{"status": st["status"], "epoch": st["epoch"], "mode": st["mode"],
				"journal": st["journal"], "databases": st["databases"], "transfer": st["transfer"]})
			return string(out)
		}
		return primary, fmt.Sprintf("members' content still differs 60s after healing (a: %.40s, b: %.40s)\n  a: %s\n  b: %s", hash("a"), hash("b"), state("a"), state("b"))
	}
	return primary, ""
}

func until(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// epochOwners reads every member's log for promotions: an epoch must have
// one primary only.
func epochOwners(t *testing.T, dir string) map[int][]string {
	owners := map[int][]string{}
	re := regexp.MustCompile(`"msg":"promoted to primary".*?"member":"(\w+)".*?"epoch":(\d+)`)
	for _, m := range []string{"a", "b"} {
		data, _ := os.ReadFile(filepath.Join(dir, m+".log"))
		for _, line := range strings.Split(string(data), "\n") {
			if mm := re.FindStringSubmatch(line); mm != nil {
				e, _ := strconv.Atoi(mm[2])
				if !contains(owners[e], mm[1]) {
					owners[e] = append(owners[e], mm[1])
				}
			}
		}
	}
	return owners
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// verdict is a schedule's report.
type verdict struct {
	Seed           uint64           `json:"seed"`
	Faults         []string         `json:"faults"`
	Ops            int              `json:"operations"`
	AckedWrites    int              `json:"acknowledged_writes"`
	UnknownWrites  int              `json:"unknown_writes"`
	Reads          int              `json:"reads"`
	Linearizable   string           `json:"linearizable"`
	LostWrites     []string         `json:"lost_writes"`
	EpochConflicts map[int][]string `json:"epoch_conflicts"`
	FinalEpoch     int              `json:"final_epoch"`
	NotConverged   string           `json:"not_converged,omitempty"`
}

// keepLogs copies the processes' logs of a failed schedule beside its
// report (TANDEM_FAULT_REPORT_DIR), for whoever looks into it.
func keepLogs(tr *tier, seed uint64) {
	dir := os.Getenv("TANDEM_FAULT_REPORT_DIR")
	if dir == "" {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(tr.dir, "*.log"))
	keep := filepath.Join(dir, fmt.Sprintf("seed-%d-logs", seed))
	os.MkdirAll(keep, 0o755)
	for _, l := range logs {
		if data, err := os.ReadFile(l); err == nil {
			os.WriteFile(filepath.Join(keep, filepath.Base(l)), data, 0o644)
		}
	}
}

// runSchedule runs one seeded schedule and returns its verdict (checks not
// yet asserted, so mutation tests can expect failure).
func runSchedule(t *testing.T, seed uint64, faults []string) verdict {
	tr := startTier(t)
	t.Cleanup(func() {
		if t.Failed() { // also a schedule stopped by a fatal wait: keep what the processes said
			keepLogs(tr, seed)
		}
	})
	f := &faultRun{tr: tr, rng: rand.New(rand.NewPCG(seed, 99)), seed: seed, start: time.Now()}
	if faults == nil {
		for range 4 {
			faults = append(faults, faultKinds[f.rng.IntN(len(faultKinds))])
		}
	}
	stop := make(chan struct{})
	wg := f.clients(6, stop)
	time.Sleep(500 * time.Millisecond)
	for _, k := range faults {
		f.inject(k)
		time.Sleep(time.Duration(300+f.rng.IntN(700)) * time.Millisecond)
	}
	var once sync.Once
	primary, problem := f.settle(func() {
		once.Do(func() {
			time.Sleep(300 * time.Millisecond)
			close(stop)
			wg.Wait()
		})
	})

	v := verdict{Seed: seed, Faults: f.faults, Ops: len(f.ops), EpochConflicts: map[int][]string{}, NotConverged: problem}
	if primary == "" {
		primary = "a"
	}
	v.FinalEpoch = tr.epoch(primary)
	// Final reads of every key on the primary close the history.
	end := time.Since(f.start).Nanoseconds()
	hist := make([]porcupine.Operation, 0, len(f.ops)+keys)
	final := map[string]string{}
	for k := range keys {
		key := fmt.Sprintf("k%d", k)
		val, err := tr.get(primary, key)
		if err != nil && !strings.Contains(err.Error(), "no such key") {
			t.Errorf("final read of %s on %s: %v", key, primary, err)
		}
		final[key] = val
		hist = append(hist, porcupine.Operation{ClientId: 99, Input: kvOp{Key: key, Member: primary}, Call: end, Output: val, Return: end + 1})
	}
	// A write whose outcome is unknown may take effect at any time after its
	// call (its return is "never"). One whose value nobody ever read can
	// always be placed last, after the final reads, so it is left out: that
	// keeps the search small and changes no verdict.
	observed := map[string]bool{}
	for _, op := range f.ops {
		if !op.Put {
			observed[op.Key+"="+op.Value] = true
		}
	}
	for k, val := range final {
		observed[k+"="+val] = true
	}
	for _, op := range f.ops {
		if op.Unique {
			if !op.Unknown {
				v.AckedWrites++
				if val, err := tr.get(primary, op.Key); err != nil || val != op.Value {
					v.LostWrites = append(v.LostWrites, fmt.Sprintf("%s=%s acknowledged by %s, now %q (%v)", op.Key, op.Value, op.Member, val, err))
				}
			}
			continue
		}
		switch {
		case op.Put && op.Unknown:
			v.UnknownWrites++
			if !observed[op.Key+"="+op.Value] {
				continue
			}
		case op.Put:
			v.AckedWrites++
		default:
			v.Reads++
		}
		hist = append(hist, porcupine.Operation{ClientId: op.Client, Input: op, Call: op.Call, Output: op.Value, Return: op.Return})
	}
	res, info := porcupine.CheckOperationsVerbose(kvModel, hist, 60*time.Second)
	v.Linearizable = string(res)
	if res == porcupine.Illegal {
		for _, s := range staleReads(f.ops, 10) {
			t.Log("stale read: " + s)
		}
		out := filepath.Join(os.TempDir(), fmt.Sprintf("tandem-faults-seed-%d.html", seed))
		if err := porcupine.VisualizePath(kvModel, info, out); err == nil {
			t.Logf("non-linearizable history drawn in %s", out)
		}
	}
	// Lost writes: the last acknowledged write of each key, if no other
	// write to that key could have come after it, must be the final value.
	for k := range keys {
		key := fmt.Sprintf("k%d", k)
		var last *kvOp
		for i := range f.ops {
			op := &f.ops[i]
			if op.Key == key && op.Put && !op.Unknown && !op.Unique && (last == nil || op.Return > last.Return) {
				last = op
			}
		}
		if last == nil {
			continue
		}
		overwritten := false
		for _, op := range f.ops {
			if op.Key == key && op.Put && op.Value != last.Value && op.Return >= last.Call {
				overwritten = true // a concurrent or later write (acknowledged or not) may legally win
			}
		}
		if !overwritten && final[key] != last.Value {
			v.LostWrites = append(v.LostWrites, fmt.Sprintf("%s=%s acknowledged, final %q", key, last.Value, final[key]))
		}
	}
	for e, ms := range epochOwners(t, tr.dir) {
		if len(ms) > 1 {
			v.EpochConflicts[e] = ms
		}
	}
	if dir := os.Getenv("TANDEM_FAULT_REPORT_DIR"); dir != "" {
		os.MkdirAll(dir, 0o755)
		data, _ := json.MarshalIndent(v, "", "  ")
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d.json", seed)), data, 0o644)
		ops, _ := json.Marshal(f.ops)
		os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d-history.json", seed)), ops, 0o644)
		if len(v.failures()) > 0 {
			keepLogs(tr, seed)
		}
	}
	t.Logf("seed %d: %d ops (%d acked writes, %d unknown, %d reads), linearizable %s, lost %d, epoch conflicts %d, final epoch %d",
		seed, v.Ops, v.AckedWrites, v.UnknownWrites, v.Reads, v.Linearizable, len(v.LostWrites), len(v.EpochConflicts), v.FinalEpoch)
	return v
}

func (v verdict) failures() []string {
	var out []string
	if v.Linearizable != string(porcupine.Ok) {
		out = append(out, "history not linearizable: "+v.Linearizable)
	}
	if len(v.LostWrites) > 0 {
		out = append(out, fmt.Sprintf("lost acknowledged writes: %v", v.LostWrites))
	}
	if v.NotConverged != "" {
		out = append(out, v.NotConverged)
	}
	if len(v.EpochConflicts) > 0 {
		out = append(out, fmt.Sprintf("two primaries in one epoch: %v", v.EpochConflicts))
	}
	return out
}

func TestFaultSchedules(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	n, _ := strconv.Atoi(os.Getenv("TANDEM_FAULT_SCHEDULES"))
	first, _ := strconv.Atoi(os.Getenv("TANDEM_FAULT_SEED"))
	if n <= 0 {
		n = 2 // the short fixed set in make test
	}
	if first <= 0 {
		first = 1
	}
	for seed := uint64(first); seed < uint64(first+n); seed++ {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			var faults []string // TANDEM_FAULTS=kind,kind replays a chosen schedule
			if env := os.Getenv("TANDEM_FAULTS"); env != "" {
				faults = strings.Split(env, ",")
			}
			v := runSchedule(t, seed, faults)
			for _, f := range v.failures() {
				t.Error(f)
			}
			if v.AckedWrites == 0 || v.Reads == 0 {
				t.Errorf("schedule did no work: %d acked writes, %d reads", v.AckedWrites, v.Reads)
			}
		})
	}
}

// TestFaultSuiteCatchesMutations: with a deliberate bug switched on in the
// real processes, a schedule that exposes it must fail the checkers.
func TestFaultSuiteCatchesMutations(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	t.Setenv(cluster.MutationsEnv, "ack-before-backup")
	// The primary acknowledges while cut off from the backup, so after
	// the kill the backup takes over without those writes: the lost-write
	// check must name them. (With correct code the primary stops
	// acknowledging, asks the arbiter, and the backup cannot take over.)
	v := runSchedule(t, 7, []string{"cut-pair+kill-primary-host"})
	if len(v.LostWrites) == 0 {
		t.Fatalf("ack-before-backup was not caught as lost writes: %v", v.failures())
	}
	t.Logf("caught: %v", v.failures())
}

// staleReads finds reads that returned a value already overwritten before
// they began: a write W2 acknowledged before the read's call, which itself
// began after the write of the value read had returned. Diagnostics only.
func staleReads(ops []kvOp, max int) []string {
	writes := map[string]kvOp{}
	for _, op := range ops {
		if op.Put {
			writes[op.Key+"="+op.Value] = op
		}
	}
	var out []string
	for _, r := range ops {
		if r.Put || r.Value == "" {
			continue
		}
		w, ok := writes[r.Key+"="+r.Value]
		if !ok {
			out = append(out, fmt.Sprintf("%s read %q that nobody wrote (member %s)", r.Key, r.Value, r.Member))
			continue
		}
		for _, w2 := range ops {
			if w2.Put && !w2.Unknown && w2.Key == r.Key && w2.Value != r.Value && w2.Call > w.Return && w2.Return < r.Call {
				out = append(out, fmt.Sprintf("%s: read at %.3fs on %s returned %s (written %.3fs-%.3fs on %s), but %s was acknowledged at %.3fs on %s",
					r.Key, float64(r.Call)/1e9, r.Member, r.Value, float64(w.Call)/1e9, float64(w.Return)/1e9, w.Member, w2.Value, float64(w2.Return)/1e9, w2.Member))
				break
			}
		}
		if len(out) >= max {
			break
		}
	}
	return out
}
