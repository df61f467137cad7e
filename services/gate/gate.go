// Package gate is the failover policy gate (DESIGN §5 "Policy gate"): Rego
// policies, embedded OPA, evaluated in-process with a query prepared once.
// A decision says whether an operation (planned_failover,
// automatic_failover, promote_async) onto a target member is allowed, and
// why not: every deny and warn message names its category and member.
//
// The default policies live in policies/ and are compiled into the binary;
// an operator may replace them with a directory of .rego files. A policy
// that does not load or does not evaluate fails closed: every decision is a
// refusal carrying the error.
//
// What it must never do: loosen the data-safety rules of the failover core
// (a gate verdict can only forbid), make a network call while deciding, or
// put PHI in a message.
package gate

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
)

//go:embed policies/*.rego
var embedded embed.FS

// Operations the gate decides.
const (
	PlannedFailover   = "planned_failover"
	AutomaticFailover = "automatic_failover"
	PromoteAsync      = "promote_async"
)

// ErrPolicy means the policy does not load or does not evaluate.
var ErrPolicy = errors.New("gate: policy error")

// Input is the tier snapshot the policy sees.
type Input struct {
	Operation         string                     `json:"operation"`
	Target            string                     `json:"target"`
	NowUnix           int64                      `json:"now_unix"`
	Desired           map[string]DesiredCategory `json:"desired"`
	RequiredDatabases []string                   `json:"required_databases"`
	Members           []Member                   `json:"members"`
}

// DesiredCategory is the desired state of one category.
type DesiredCategory struct {
	Version uint64 `json:"version"`
	Digest  string `json:"digest"`
}

// Member is one member in the snapshot.
type Member struct {
	Name            string            `json:"name"`
	Role            string            `json:"role"`     // primary, backup, dr, reporting
	Status          string            `json:"status"`   // DESIGN §3 member status
	Transfer        string            `json:"transfer"` // active, caught-up, behind, disconnected
	LastLSN         uint64            `json:"last_lsn"`
	DurableLSN      uint64            `json:"durable_lsn"`
	LagRecords      uint64            `json:"lag_records"`
	Databases       []Database        `json:"databases"`
	SoftwareVersion string            `json:"software_version"`
	JournalFormat   int               `json:"journal_format"`
	ProtocolVersion int               `json:"protocol_version"`
	CertNotAfter    int64             `json:"cert_not_after_unix"`
	Effective       map[string]string `json:"effective"`             // category -> digest
	Unalignable     map[string]string `json:"unalignable,omitempty"` // category -> why this member cannot apply it
}

// Database is one database of a member.
type Database struct {
	Name   string `json:"name"`
	Status string `json:"status"`
}

// Decision is one evaluation.
type Decision struct {
	At          time.Time `json:"at"`
	Operation   string    `json:"operation"`
	Target      string    `json:"target"`
	Allowed     bool      `json:"allowed"`
	Deny        []string  `json:"deny"`
	Warn        []string  `json:"warn"`
	PolicyHash  string    `json:"policy_hash"`
	InputDigest string    `json:"input_digest"`
	Error       string    `json:"error,omitempty"`
}

// Gate evaluates a prepared policy. It is safe for concurrent use.
type Gate struct {
	query  rego.PreparedEvalQuery
	hash   string
	source string
	err    error // the policy did not load: every decision is a refusal
}

// New prepares the embedded default policy.
func New(ctx context.Context) (*Gate, error) {
	sub, _ := fs.Sub(embedded, "policies")
	return load(ctx, sub, "embedded default policy")
}

// Load prepares the .rego files of dir (files ending in _test.rego are left
// out). The returned Gate is never nil: if the policy is broken, err says
// why and the Gate refuses every operation with that error (fail closed).
func Load(ctx context.Context, dir string) (*Gate, error) {
	return load(ctx, os.DirFS(dir), "policy directory "+dir)
}

func load(ctx context.Context, fsys fs.FS, source string) (*Gate, error) {
	g := &Gate{source: source}
	names, err := fs.Glob(fsys, "*.rego")
	if err == nil && len(names) == 0 {
		err = errors.New("no .rego files")
	}
	if err != nil {
		g.err = fmt.Errorf("%w: %s: %v", ErrPolicy, source, err)
		return g, g.err
	}
	sort.Strings(names)
	h := sha256.New()
	opts := []func(*rego.Rego){rego.Query("deny := data.tandem.gate.deny; warn := data.tandem.gate.warn"),
		rego.SetRegoVersion(ast.RegoV1)}
	for _, n := range names {
		if strings.HasSuffix(n, "_test.rego") {
			continue
		}
		src, err := fs.ReadFile(fsys, n)
		if err != nil {
			g.err = fmt.Errorf("%w: %s: %v", ErrPolicy, source, err)
			return g, g.err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(src))
		h.Write(src)
		opts = append(opts, rego.Module(filepath.Join(source, n), string(src)))
	}
	g.hash = hex.EncodeToString(h.Sum(nil))
	q, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		g.err = fmt.Errorf("%w: %s does not compile: %v", ErrPolicy, source, err)
		return g, g.err
	}
	g.query = q
	return g, nil
}

// PolicyHash identifies the policy in force (SHA-256 of its files).
func (g *Gate) PolicyHash() string { return g.hash }

// Source says where the policy came from.
func (g *Gate) Source() string { return g.source }

// Err is the load error of a broken policy, or nil.
func (g *Gate) Err() error { return g.err }

// Evaluate decides. A policy error is a refusal (fail closed), never an
// allowance.
func (g *Gate) Evaluate(ctx context.Context, in Input) Decision {
	d := Decision{At: time.Now().UTC(), Operation: in.Operation, Target: in.Target, PolicyHash: g.hash,
		InputDigest: InputDigest(in), Deny: []string{}, Warn: []string{}}
	fail := func(err error) Decision {
		d.Allowed, d.Error = false, err.Error()
		d.Deny = []string{"policy: " + err.Error() + " (refusing: the gate fails closed)"}
		return d
	}
	if g.err != nil {
		return fail(g.err)
	}
	v, err := toValue(in)
	if err != nil {
		return fail(fmt.Errorf("%w: input: %v", ErrPolicy, err))
	}
	// Cancellation by ctx without a goroutine per evaluation (OPA starts
	// one to watch ctx unless it is given its own Cancel).
	cancel := topdown.NewCancel()
	stop := context.AfterFunc(ctx, cancel.Cancel)
	defer stop()
	rs, err := g.query.Eval(ctx, rego.EvalParsedInput(v), rego.EvalExternalCancel(cancel),
		rego.EvalMetrics(metrics.NoOp()), rego.EvalGenerateJSON(keepTerm))
	if err != nil {
		return fail(fmt.Errorf("%w: evaluation: %v", ErrPolicy, err))
	}
	if len(rs) != 1 {
		return fail(fmt.Errorf("%w: %s defines no deny and warn sets in package tandem.gate", ErrPolicy, g.source))
	}
	for _, set := range []struct {
		name string
		out  *[]string
	}{{"deny", &d.Deny}, {"warn", &d.Warn}} {
		t, _ := rs[0].Bindings[set.name].(*ast.Term)
		if err := appendMessages(set.out, set.name, t); err != nil {
			return fail(err)
		}
		sort.Strings(*set.out)
	}
	d.Allowed = len(d.Deny) == 0
	return d
}

// keepTerm hands a query's result over as OPA's term, not converted to Go
// values: the messages are read from it directly.
func keepTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// appendMessages appends the strings of a deny or warn result (a set, or
// an array) to out.
func appendMessages(out *[]string, name string, t *ast.Term) error {
	if t == nil {
		return fmt.Errorf("%w: %s is not a set of strings", ErrPolicy, name)
	}
	var elems []*ast.Term
	switch v := t.Value.(type) {
	case ast.Set:
		elems = v.Slice()
	case *ast.Array:
		for i := range v.Len() {
			elems = append(elems, v.Elem(i))
		}
	default:
		return fmt.Errorf("%w: %s is not a set of strings", ErrPolicy, name)
	}
	for _, e := range elems {
		s, ok := e.Value.(ast.String)
		if !ok {
			m, _ := ast.JSON(e.Value)
			return fmt.Errorf("%w: %s holds a non-string message %v", ErrPolicy, name, m)
		}
		*out = append(*out, string(s))
	}
	return nil
}

// toValue builds OPA's value form of the input directly (no JSON text in
// between: half the cost of an evaluation otherwise). It must match the
// JSON tags of Input; TestToValueMatchesJSON checks that it does.
//
// Object keys and the strings the snapshot repeats on every evaluation
// (statuses, roles, database and category names) are shared terms (see
// term); objects are built from their items in one step, since inserting
// into an empty object grows it once per key. Together these halve the
// allocations of an evaluation.
func toValue(in Input) (ast.Value, error) {
	num := func(v int64) *ast.Term { return ast.IntNumberTerm(int(v)) }
	strMap := func(m map[string]string) *ast.Term {
		items := make([][2]*ast.Term, 0, len(m))
		for k, v := range m {
			items = append(items, ast.Item(term(k), term(v)))
		}
		return ast.ObjectTerm(items...)
	}
	desired := make([][2]*ast.Term, 0, len(in.Desired))
	for k, d := range in.Desired {
		desired = append(desired, ast.Item(term(k), ast.ObjectTerm(
			ast.Item(keyVersion, num(int64(d.Version))),
			ast.Item(keyDigest, term(d.Digest)))))
	}
	dbs := make([]*ast.Term, len(in.RequiredDatabases))
	for i, d := range in.RequiredDatabases {
		dbs[i] = term(d)
	}
	members := make([]*ast.Term, len(in.Members))
	for i, m := range in.Members {
		mdbs := make([]*ast.Term, len(m.Databases))
		for j, d := range m.Databases {
			mdbs[j] = ast.ObjectTerm(ast.Item(keyName, term(d.Name)), ast.Item(keyStatus, term(d.Status)))
		}
		items := [...][2]*ast.Term{
			ast.Item(keyName, term(m.Name)),
			ast.Item(keyRole, term(m.Role)),
			ast.Item(keyStatus, term(m.Status)),
			ast.Item(keyTransfer, term(m.Transfer)),
			ast.Item(keyLastLSN, num(int64(m.LastLSN))),
			ast.Item(keyDurableLSN, num(int64(m.DurableLSN))),
			ast.Item(keyLagRecords, num(int64(m.LagRecords))),
			ast.Item(keyDatabases, ast.ArrayTerm(mdbs...)),
			ast.Item(keySoftwareVersion, term(m.SoftwareVersion)),
			ast.Item(keyJournalFormat, num(int64(m.JournalFormat))),
			ast.Item(keyProtocolVersion, num(int64(m.ProtocolVersion))),
			ast.Item(keyCertNotAfter, num(m.CertNotAfter)),
			ast.Item(keyEffective, strMap(m.Effective)),
			{}, // unalignable, when there is any
		}
		n := len(items) - 1
		if len(m.Unalignable) > 0 {
			items[n] = ast.Item(keyUnalignable, strMap(m.Unalignable))
			n++
		}
		members[i] = ast.ObjectTerm(items[:n]...)
	}
	return ast.NewObject(
		ast.Item(keyOperation, term(in.Operation)),
		ast.Item(keyTarget, term(in.Target)),
		ast.Item(keyNowUnix, num(in.NowUnix)),
		ast.Item(keyDesired, ast.ObjectTerm(desired...)),
		ast.Item(keyRequiredDatabases, ast.ArrayTerm(dbs...)),
		ast.Item(keyMembers, ast.ArrayTerm(members...)),
	), nil
}
