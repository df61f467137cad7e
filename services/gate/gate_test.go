package gate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

// Every deny and warn rule of the default policy has a Rego unit test in
// policies/gate_test.rego; this runs them.
func TestRegoUnitTests(t *testing.T) {
	results, err := tester.Run(context.Background(), "policies")
	if err != nil {
		t.Fatal(err)
	}
	if len(results) < 10 {
		t.Fatalf("only %d Rego tests found", len(results))
	}
	for _, r := range results {
		if !r.Pass() {
			t.Errorf("%s: %s", r.Name, r.String())
		}
	}
}

func fixture() Input {
	m := func(name, role, transfer string) Member {
		return Member{Name: name, Role: role, Status: role, Transfer: transfer, SoftwareVersion: "1", JournalFormat: 1, ProtocolVersion: 1,
			Databases: []Database{{"fhir", "normal"}, {"audit", "normal"}, {"system", "normal"}},
			Effective: map[string]string{"users": "u", "roles": "r", "security": "s"}}
	}
	return Input{Operation: PlannedFailover, Target: "b", NowUnix: 1,
		Desired:           map[string]DesiredCategory{"users": {1, "u"}, "roles": {1, "r"}, "security": {1, "s"}},
		RequiredDatabases: []string{"fhir", "audit", "system"},
		Members:           []Member{m("a", "primary", "active"), m("b", "backup", "active")}}
}

func TestEvaluateFromGo(t *testing.T) {
	g, err := New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	in := fixture()
	if d := g.Evaluate(context.Background(), in); !d.Allowed || len(d.Deny) != 0 || d.PolicyHash == "" || d.InputDigest == "" {
		t.Fatalf("aligned tier refused: %+v", d)
	}
	in.Members[1].Effective["users"] = "old"
	d := g.Evaluate(context.Background(), in)
	if d.Allowed || len(d.Deny) != 1 || !strings.HasPrefix(d.Deny[0], "users: member b is not aligned") {
		t.Fatalf("misaligned users not refused: %+v", d)
	}
}

// Evaluations share the input's key terms and common strings (terms.go);
// concurrent ones must not race (run with -race) and must all decide alike.
func TestEvaluateConcurrently(t *testing.T) {
	g, err := New(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := fixture()
			in.Members[1].Effective["users"] = "old" // one misaligned category
			for range 50 {
				d := g.Evaluate(context.Background(), in)
				if d.Allowed || len(d.Deny) != 1 || !strings.HasPrefix(d.Deny[0], "users: member b is not aligned") {
					t.Errorf("goroutine %d: %+v", i, d)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// A broken operator policy fails closed with a clear error.
func TestBrokenPolicyFailsClosed(t *testing.T) {
	for name, src := range map[string]string{
		"syntax":  "package tandem.gate\n\ndeny contains msg if {",
		"no deny": "package tandem.other\n\nx := 1\n",
		"not set": "package tandem.gate\n\ndeny := 1\nwarn := 2\n",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, "p.rego"), []byte(src), 0o600)
			g, _ := Load(context.Background(), dir)
			d := g.Evaluate(context.Background(), fixture())
			if d.Allowed || d.Error == "" || len(d.Deny) != 1 || !strings.Contains(d.Deny[0], "fails closed") {
				t.Fatalf("broken policy did not fail closed: %+v", d)
			}
		})
	}
	g, err := Load(context.Background(), t.TempDir())
	if err == nil || g.Evaluate(context.Background(), fixture()).Allowed {
		t.Fatal("an empty policy directory must fail closed")
	}
}

// An operator directory replaces the default policy.
func TestOperatorPolicyReplacesDefault(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package tandem.gate\n\ndeny contains \"maintenance window closed\" if true\nwarn contains \"x\" if false\n"), 0o600)
	g, err := Load(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	d := g.Evaluate(context.Background(), fixture())
	if d.Allowed || len(d.Deny) != 1 || d.Deny[0] != "maintenance window closed" {
		t.Fatalf("operator policy not used: %+v", d)
	}
}

// BenchmarkGate reports gate evaluation beside its baseline, computing the
// input digest alone (make bench BENCH=gate).
func BenchmarkGate(b *testing.B) {
	g, err := New(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	in := fixture()
	ctx := context.Background()
	const n = 5000
	measure := func(f func()) (p50, p99 float64) {
		ds := make([]float64, n)
		for i := range ds {
			t0 := nowNanos()
			f()
			ds[i] = float64(nowNanos()-t0) / 1e3
		}
		return percentile(ds, 0.50), percentile(ds, 0.99)
	}
	for i := 0; i < b.N; i++ {
		b50, b99 := measure(func() { InputDigest(in) })
		g50, g99 := measure(func() {
			if d := g.Evaluate(ctx, in); !d.Allowed {
				b.Fatal(d.Deny)
			}
		})
		b.ReportMetric(g50, "gate-p50-µs")
		b.ReportMetric(g99, "gate-p99-µs")
		b.ReportMetric(b50, "digest-p50-µs")
		b.ReportMetric(b99, "digest-p99-µs")
		b.ReportMetric(g99/b99, "p99-ratio-to-digest")
		b.Logf("%d evaluations: gate p50 %.1f µs, p99 %.1f µs; baseline (input digest alone) p50 %.1f µs, p99 %.1f µs; gate/baseline p99 %.1fx; goal p99 < 1000 µs",
			n, g50, g99, b50, b99, g99/b99)
	}
}

// The hand-built OPA value equals the input's JSON, so the policy sees
// exactly the documented input.
func TestToValueMatchesJSON(t *testing.T) {
	in := fixture()
	in.Members[1].Unalignable = map[string]string{"security": "bad CA"}
	in.Members[0].Effective = map[string]string{} // (a nil map becomes {} in toValue, never null: no rule can fail open on a null)
	b, _ := json.Marshal(in)
	want, err := ast.ValueFromReader(strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := toValue(in)
	if got.Compare(want) != 0 {
		t.Fatalf("toValue differs from JSON:\n got %v\nwant %v", got, want)
	}
}

// BenchmarkGateEvaluate is one evaluation per op, so -benchmem reports the
// allocations of one decision (BenchmarkGate's figures cover 5000 of them
// plus the baseline).
func BenchmarkGateEvaluate(b *testing.B) {
	g, err := New(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	in := fixture()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if d := g.Evaluate(ctx, in); !d.Allowed {
			b.Fatal(d.Deny)
		}
	}
}

// InputDigest hashes exactly encoding/json's bytes for the input: the
// digest recorded with every decision does not depend on the encoder.
func TestInputDigestIsJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	strs := []string{"", "a", "b", "primary", "u1", "0123456789abcdef0123", `q"uote`, `back\slash`, "<tag>&amp;", "tab\tnl\n", "\x00\x1f", "é ü", "\u2028\u2029", "\xff\xfe invalid", "emoji 😀"}
	pick := func() string { return strs[r.IntN(len(strs))] }
	strMap := func() map[string]string {
		switch r.IntN(4) {
		case 0:
			return nil
		case 1:
			return map[string]string{}
		}
		m := map[string]string{}
		for range r.IntN(4) {
			m[pick()] = pick()
		}
		return m
	}
	for i := range 2000 {
		in := Input{Operation: pick(), Target: pick(), NowUnix: r.Int64() - r.Int64()}
		if r.IntN(3) > 0 {
			in.Desired = map[string]DesiredCategory{}
			for range r.IntN(4) {
				in.Desired[pick()] = DesiredCategory{Version: r.Uint64(), Digest: pick()}
			}
		}
		for range r.IntN(3) {
			in.RequiredDatabases = append(in.RequiredDatabases, pick())
		}
		if r.IntN(4) == 0 {
			in.RequiredDatabases = []string{}
		}
		for range r.IntN(3) {
			m := Member{Name: pick(), Role: pick(), Status: pick(), Transfer: pick(), LastLSN: r.Uint64(), DurableLSN: r.Uint64(), LagRecords: r.Uint64(),
				SoftwareVersion: pick(), JournalFormat: r.IntN(5) - 2, ProtocolVersion: r.IntN(1 << 20), CertNotAfter: r.Int64() - r.Int64(),
				Effective: strMap(), Unalignable: strMap()}
			for range r.IntN(3) {
				m.Databases = append(m.Databases, Database{pick(), pick()})
			}
			if r.IntN(4) == 0 {
				m.Databases = []Database{}
			}
			in.Members = append(in.Members, m)
		}
		if r.IntN(5) == 0 {
			in.Members = []Member{}
		}
		want, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendInputJSON(nil, in); string(got) != string(want) {
			t.Fatalf("case %d:\n got %s\nwant %s", i, got, want)
		}
		sum := sha256.Sum256(want)
		if InputDigest(in) != hex.EncodeToString(sum[:]) {
			t.Fatalf("case %d: digest differs", i)
		}
	}
}
