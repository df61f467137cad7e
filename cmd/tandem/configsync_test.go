package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/services/ctl"
)

// ctlRun runs `tandem ctl ARGS` against the tier, in process.
func (tr *tier) ctlRun(args ...string) (string, error) {
	var out bytes.Buffer
	err := ctl.Main(context.Background(), append(args, "--cluster", tr.cluster), &out)
	return out.String(), err
}

func (tr *tier) mustCtl(args ...string) string {
	tr.t.Helper()
	out, err := tr.ctlRun(args...)
	if err != nil {
		tr.t.Fatalf("tandem ctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// usersAligned reports whether member's effective users equal the desired
// users it holds, and the desired version it holds.
func (tr *tier) usersAligned(member string) (bool, uint64) {
	var d ctl.MemberDiff
	if err := tr.client.Do(context.Background(), "GET", member, "/admin/config/diff", nil, &d); err != nil || len(d.Categories) == 0 {
		return false, 0
	}
	return d.Categories[0].Aligned, d.Categories[0].DesiredVersion
}

// disabledUserOnlyOnPrimary sets up: user carol enabled everywhere, then
// disabled in the desired state and applied only on a; b holds the desired
// state (it is mirrored) but still enforces carol enabled.
func (tr *tier) disabledUserOnlyOnPrimary() {
	tr.t.Helper()
	tr.mustCtl("config", "role", "set", "records", "nurse", "--scopes", "patient/*.rs,user/Observation.cruds")
	tr.mustCtl("config", "user", "add", "records", "carol", "--password", "correct-horse-battery", "--role", "nurse")
	tr.mustCtl("config", "apply")
	for _, m := range []string{"a", "b"} {
		tr.waitFor(m+" aligned", 10*time.Second, func() bool { ok, v := tr.usersAligned(m); return ok && v == 1 })
	}
	tr.mustCtl("config", "user", "disable", "records", "carol")
	tr.mustCtl("config", "apply", "--member", "a")
	tr.waitFor("b holds desired users v2, not applied", 10*time.Second, func() bool { ok, v := tr.usersAligned("b"); return !ok && v == 2 })
}

// TestPlannedFailoverRefusedUntilConfigApplied (issue 10): a user disabled
// in the desired state while the backup still enforces it enabled → the
// planned failover is refused (409) naming the users category and member b;
// `ctl config apply` repairs it; the failover then happens and loses no
// acknowledged write. Every decision is in `ctl gate log`.
func TestPlannedFailoverRefusedUntilConfigApplied(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	tr.disabledUserOnlyOnPrimary()

	diff := tr.mustCtl("config", "diff")
	if !strings.Contains(diff, "user carol: enabled true here, false desired") {
		t.Fatalf("config diff does not show the drift:\n%s", diff)
	}
	t.Logf("tandem ctl config diff:\n%s", diff)

	stop := make(chan struct{})
	wait := tr.writers(4, stop)
	time.Sleep(300 * time.Millisecond)
	err := tr.client.Do(context.Background(), "POST", "a", "/admin/planned-failover", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "HTTP 409") || !strings.Contains(err.Error(), "users: member b is not aligned") {
		t.Fatalf("planned failover not refused by the gate: %v", err)
	}
	t.Logf("refusal: %v", err)
	time.Sleep(2 * testQoS)
	if tr.status("a") != "primary" || tr.epoch("a") != 1 {
		t.Fatalf("a refused failover still changed the tier: a %s epoch %d", tr.status("a"), tr.epoch("a"))
	}

	out := tr.mustCtl("config", "apply", "--member", "b")
	if !strings.Contains(out, "b\tusers\tapplied\tv2") {
		t.Fatalf("apply on b: %q", out)
	}
	if ok, _ := tr.usersAligned("b"); !ok {
		t.Fatal("b not aligned after apply")
	}
	if out := tr.mustCtl("config", "apply", "--member", "b"); !strings.Contains(out, "b\tusers\tunchanged") {
		t.Fatalf("second apply not idempotent: %q", out)
	}
	var da, db struct {
		Effective map[string]string `json:"effective"`
	}
	if tr.client.Do(context.Background(), "GET", "a", "/admin/config/digests", nil, &da) != nil ||
		tr.client.Do(context.Background(), "GET", "b", "/admin/config/digests", nil, &db) != nil ||
		da.Effective["users"] == "" || da.Effective["users"] != db.Effective["users"] {
		t.Fatalf("effective digests differ after apply: a %v, b %v", da.Effective, db.Effective)
	}
	var dj []ctl.MemberDiff
	if err := json.Unmarshal([]byte(tr.mustCtl("config", "diff", "--json")), &dj); err != nil || len(dj) != 2 || !dj[1].Categories[0].Aligned {
		t.Fatalf("config diff --json: %v %+v", err, dj)
	}
	if err := tr.client.Do(context.Background(), "POST", "a", "/admin/planned-failover", nil, nil); err != nil {
		t.Fatalf("planned failover refused after apply: %v", err)
	}
	tr.waitFor("b primary, a backup, epoch 2", 20*time.Second, func() bool {
		return tr.status("b") == "primary" && tr.status("a") == "backup" && tr.epoch("b") == 2
	})
	time.Sleep(300 * time.Millisecond)
	close(stop)
	acked, failed := wait()
	t.Logf("%d writes acknowledged, %d attempts refused during the handover", len(acked), failed)
	tr.checkAcked("b", acked)
	tr.waitFor("equal content", 20*time.Second, func() bool { return tr.hash("a") == tr.hash("b") })

	log := tr.mustCtl("gate", "log", "records")
	t.Logf("tandem ctl gate log records:\n%s", log)
	if strings.Count(log, "planned_failover") != 2 || !strings.Contains(log, "REFUSED") || !strings.Contains(log, "users: member b") || !strings.Contains(log, "allowed") {
		t.Fatalf("gate log lacks the decisions:\n%s", log)
	}
}

// TestAutomaticTakeoverSelfAlignsFirst (issue 10): the backup enforces a
// user the desired state disabled; when the primary dies, the backup aligns
// its effective state with the desired state it holds, then takes over.
func TestAutomaticTakeoverSelfAlignsFirst(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	tr.disabledUserOnlyOnPrimary()
	tr.waitFor("b's verdict: not aligned while misaligned", 5*time.Second, func() bool {
		g, _ := tr.memberStatus("b")["gate"].(map[string]any)
		return g != nil && g["aligned"] == false
	})
	tr.kill9("a")
	tr.waitFor("b primary in epoch 2", 20*time.Second, func() bool { return tr.status("b") == "primary" && tr.epoch("b") == 2 })
	if ok, _ := tr.usersAligned("b"); !ok {
		t.Fatal("b took over without aligning its users")
	}
	logText, _ := os.ReadFile(filepath.Join(tr.dir, "b.log"))
	if !bytes.Contains(logText, []byte("aligned effective state with the desired state before takeover")) {
		t.Fatalf("b's log does not show the self-alignment:\n%s", tailFile(filepath.Join(tr.dir, "b.log"), 30))
	}
	tr.waitFor("takeover decision recorded on b", 10*time.Second, func() bool {
		out, err := tr.ctlRun("gate", "log", "records", "--member", "b")
		return err == nil && strings.Contains(out, "automatic_failover") && strings.Contains(out, "allowed")
	})
}

// TestAutomaticTakeoverRefusedWhenUnalignable (issue 10): the desired
// security settings name a CA the backup does not trust; it cannot align,
// so it does not take over, and says why in its status and log.
func TestAutomaticTakeoverRefusedWhenUnalignable(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	doc := filepath.Join(tr.dir, "security.json")
	os.WriteFile(doc, []byte(`{"tls":{"min_version":"1.3","ca_fingerprint":"`+strings.Repeat("ab", 32)+`"},"session_lifetime_seconds":28800}`), 0o600)
	tr.mustCtl("config", "set", "records", "security", doc)
	tr.waitFor("b holds the desired security", 10*time.Second, func() bool {
		var d ctl.MemberDiff
		return tr.client.Do(context.Background(), "GET", "b", "/admin/config/diff", nil, &d) == nil && d.Unalignable["security"] != ""
	})
	tr.kill9("a")
	time.Sleep(5 * testQoS)
	if s, e := tr.status("b"), tr.epoch("b"); s != "backup" || e != 1 {
		t.Fatalf("b took over although it cannot align its security settings: %s in epoch %d", s, e)
	}
	g, _ := tr.memberStatus("b")["gate"].(map[string]any)
	deny, _ := g["deny"].([]any)
	if g == nil || g["aligned"] != false || len(deny) == 0 || !strings.Contains(deny[0].(string), "security: member b cannot apply the desired state") {
		t.Fatalf("refusal not visible in b's status: %v", g)
	}
	t.Logf("b's gate status: %v", g)
	logText, _ := os.ReadFile(filepath.Join(tr.dir, "b.log"))
	if !bytes.Contains(logText, []byte("automatic takeover refused by the policy gate")) {
		t.Fatalf("refusal not in b's log:\n%s", tailFile(filepath.Join(tr.dir, "b.log"), 30))
	}
}

// TestBrokenPolicyFailsClosed (issue 10): a backup started with an operator
// policy directory that does not compile refuses an automatic takeover and
// says why in its status; the primary's default policy is unaffected.
func TestBrokenPolicyFailsClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	dir := filepath.Join(tr.dir, "policies")
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "gate.rego"), []byte("package tandem.gate\n\ndeny contains msg if {\n"), 0o600)
	tr.kill9("b")
	c := tr.procs["b"]
	args := append(c.Args[1:], "--policy-dir", dir)
	logf, err := os.OpenFile(filepath.Join(tr.dir, "b.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	nc := exec.Command(binary, args...)
	nc.Stdout, nc.Stderr = logf, logf
	if err := nc.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { nc.Wait(); logf.Close() }()
	tr.procs["b"] = nc
	tr.waitFor("b back as backup with the broken policy", 20*time.Second, func() bool {
		g, _ := tr.memberStatus("b")["gate"].(map[string]any)
		return tr.status("b") == "backup" && g != nil && g["policy_error"] != nil && g["aligned"] == false
	})
	tr.kill9("a")
	time.Sleep(5 * testQoS)
	if s, e := tr.status("b"), tr.epoch("b"); s != "backup" || e != 1 {
		t.Fatalf("b took over with a broken policy: %s in epoch %d", s, e)
	}
	g, _ := tr.memberStatus("b")["gate"].(map[string]any)
	deny, _ := g["deny"].([]any)
	if len(deny) != 1 || !strings.Contains(deny[0].(string), "does not compile") || !strings.Contains(deny[0].(string), "fails closed") {
		t.Fatalf("refusal does not explain the broken policy: %v", g)
	}
	t.Logf("b's gate status: %v", g)
}
