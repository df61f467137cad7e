package node

// Config-sync and the failover gate on a mirror member (DESIGN §5, issue 10):
// the admin routes under /admin/config and /admin/gate, the planned-failover
// gate check, and the alignment loop that, on a backup whose primary fell
// silent, aligns the member's effective state with the desired state it holds
// and feeds the gate's verdict to the failover core (MsgSetAlignment; the
// core only ever uses it to refuse a takeover).

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	configsync "github.com/tandemhealth/tandem/config-sync"
	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/services/gate"
)

// SoftwareVersion is this build's version, shown to the gate (set by the
// linker in releases).
var SoftwareVersion = "dev"

// ProtocolVersion is the version of the member-to-member protocol (wire).
const ProtocolVersion = 1

// alignInterval is how often a failover member re-evaluates its verdict.
const alignInterval = 200 * time.Millisecond

// gateLogPrefix is where gate decisions live in the system database.
const gateLogPrefix = "gate/decisions/"

// csync is a member's config-sync and gate state.
type csync struct {
	local *configsync.Local
	gate  *gate.Gate
	host  configsync.Host
	cert  *x509.Certificate
	peer  *http.Client

	mu      sync.Mutex
	verdict GateStatus
	sent    *failover.Alignment // last verdict handed to the core
	pending []gate.Decision     // decisions awaiting a primary to record them

	backupUntil time.Time // alignLoop-owned: last time this member was a backup
}

// GateStatus is the member's last gate verdict, shown in /mirror/status.
type GateStatus struct {
	Operation string `json:"operation,omitempty"`
	Aligned   bool   `json:"aligned"`
	// PrimarySilent: the verdict was taken after the primary fell silent and
	// this member aligned itself (a takeover decision, logged and recorded).
	PrimarySilent bool      `json:"primary_silent,omitempty"`
	Deny          []string  `json:"deny,omitempty"`
	Warn          []string  `json:"warn,omitempty"`
	EvaluatedAt   time.Time `json:"evaluated_at,omitzero"`
	Policy        string    `json:"policy"`
	PolicyHash    string    `json:"policy_hash"`
	PolicyError   string    `json:"policy_error,omitempty"`
}

// openConfigSync opens the member's effective state (DataDir/local) and the
// embedded gate policy.
func (n *Node) openConfigSync() error {
	dir := filepath.Join(n.cfg.DataDir, "local")
	if err := mkdirDurable(dir); err != nil {
		return fmt.Errorf("node: local state dir: %w", err)
	}
	l, err := configsync.OpenLocal(dir)
	if err != nil {
		return fmt.Errorf("node: %w; this member's effective users/roles/security need an operator (tandem ctl config apply after moving the file aside)", err)
	}
	g, err := gate.New(context.Background())
	if err != nil {
		return err
	}
	cs := &csync{local: l, gate: g}
	creds := n.mirror.creds
	if len(creds.Cert.Certificate) > 0 {
		if leaf, err := x509.ParseCertificate(creds.Cert.Certificate[0]); err == nil {
			cs.cert = leaf
			chains, err := leaf.Verify(x509.VerifyOptions{Roots: creds.Roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			if err == nil && len(chains) > 0 {
				ca := chains[0][len(chains[0])-1]
				sum := sha256.Sum256(ca.Raw)
				cs.host.CAFingerprint = hex.EncodeToString(sum[:])
			}
		}
	}
	cs.peer = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: creds.ClientConfig("")}}
	cs.verdict = GateStatus{Aligned: true, Policy: g.Source(), PolicyHash: g.PolicyHash()}
	n.cs = cs
	return nil
}

// UsePolicyDir replaces the embedded gate policy with the .rego files of
// dir. A broken policy is kept, failing closed: every operation is refused
// with its error, and the error is returned so the caller can log it.
func (n *Node) UsePolicyDir(dir string) error {
	if n.cs == nil || dir == "" {
		return nil
	}
	g, err := gate.Load(context.Background(), dir)
	n.cs.mu.Lock()
	n.cs.gate = g
	n.cs.verdict.Policy, n.cs.verdict.PolicyHash = g.Source(), g.PolicyHash()
	if err != nil {
		n.cs.verdict.PolicyError = err.Error()
	}
	n.cs.mu.Unlock()
	if err != nil {
		n.log.Error("gate policy does not load: every failover is refused until it is fixed", "dir", dir, "err", err)
	}
	return err
}

func (n *Node) gateStatus() *GateStatus {
	if n.cs == nil {
		return nil
	}
	n.cs.mu.Lock()
	defer n.cs.mu.Unlock()
	v := n.cs.verdict
	return &v
}

// ------------------------------------------------------------- snapshot

// desiredInput reads the desired state this member holds.
func (n *Node) desiredInput() (configsync.State, map[string]gate.DesiredCategory, error) {
	desired, err := configsync.ReadDesired(n.store)
	if err != nil {
		return nil, nil, err
	}
	dg, err := desired.Digests()
	if err != nil {
		return nil, nil, err
	}
	out := map[string]gate.DesiredCategory{}
	for _, c := range configsync.Categories {
		out[c] = gate.DesiredCategory{Version: desired[c].Version, Digest: dg[c]}
	}
	return desired, out, nil
}

// facts is this member as the gate sees it, measured now.
func (n *Node) facts(desired configsync.State) (gate.Member, error) {
	snap := n.mirror.snapshot()
	st := n.Status()
	role := snap.Role
	if n.cfg.Role != cluster.RoleFailover {
		role = n.cfg.Role
	}
	if st.Status == string(failover.StatusPrimary) {
		role = "primary"
	}
	m := gate.Member{Name: n.cfg.Member, Role: role, Status: st.Status, Transfer: snap.Transfer.Status,
		LastLSN: st.Journal.LastLSN, DurableLSN: st.Journal.DurableLSN, LagRecords: uint64(snap.Transfer.Behind),
		SoftwareVersion: SoftwareVersion, JournalFormat: journal.FormatVersion, ProtocolVersion: ProtocolVersion}
	for _, db := range st.Databases {
		m.Databases = append(m.Databases, gate.Database{Name: db.Name, Status: db.Status})
	}
	if n.cs.cert != nil {
		m.CertNotAfter = n.cs.cert.NotAfter.Unix()
	}
	eff, err := n.cs.local.State().Digests()
	if err != nil {
		return m, err
	}
	m.Effective = eff
	if desired != nil {
		if bad := n.cs.host.Check(desired); len(bad) > 0 {
			m.Unalignable = bad
		}
	}
	return m, nil
}

// peerFacts asks another member of the tier for its facts.
func (n *Node) peerFacts(ctx context.Context, name string) (gate.Member, error) {
	var m gate.Member
	peer, ok := n.mirror.tier.Member(name)
	if !ok {
		return m, fmt.Errorf("no member %q in tier %s", name, n.cfg.Tier)
	}
	req, err := http.NewRequestWithContext(ctx, "GET", "https://"+peer.HTTP+"/admin/config/facts", nil)
	if err != nil {
		return m, err
	}
	resp, err := n.cs.peer.Do(req)
	if err != nil {
		return m, fmt.Errorf("member %s is unreachable: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return m, fmt.Errorf("member %s: HTTP %d: %s", name, resp.StatusCode, b)
	}
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

func (n *Node) evaluate(ctx context.Context, op, target string, members []gate.Member, desired map[string]gate.DesiredCategory) gate.Decision {
	n.cs.mu.Lock()
	g := n.cs.gate
	n.cs.mu.Unlock()
	in := gate.Input{Operation: op, Target: target, NowUnix: time.Now().Unix(), Desired: desired,
		RequiredDatabases: n.cfg.Databases, Members: members}
	return g.Evaluate(ctx, in)
}

// --------------------------------------------------------- decision log

type recordedDecision struct {
	gate.Decision
	EvaluatedBy string `json:"evaluated_by"`
	RecordedBy  string `json:"recorded_by"`
}

// recordDecision writes a decision to the mirrored system database if this
// member is the primary; otherwise it is kept until this member is primary
// (a backup's takeover verdicts are recorded once it took over).
func (n *Node) recordDecision(ctx context.Context, d gate.Decision) error {
	if !n.IsPrimary() {
		n.cs.mu.Lock()
		if len(n.cs.pending) >= 64 {
			n.cs.pending = n.cs.pending[1:]
		}
		n.cs.pending = append(n.cs.pending, d)
		n.cs.mu.Unlock()
		return nil
	}
	return n.writeDecision(ctx, d)
}

func (n *Node) writeDecision(ctx context.Context, d gate.Decision) error {
	v, err := json.Marshal(recordedDecision{Decision: d, EvaluatedBy: n.cfg.Member, RecordedBy: n.cfg.Member})
	if err != nil {
		return err
	}
	key := fmt.Sprintf("%s%020d-%s", gateLogPrefix, d.At.UnixNano(), n.cfg.Member)
	_, err = n.seq.Write(ctx, configsync.SystemDatabase, func(sequencer.View) ([]journal.Op, error) {
		return []journal.Op{{Kind: journal.OpSet, Key: []byte(key), Value: v}}, nil
	})
	return err
}

func (n *Node) flushDecisions(ctx context.Context) {
	n.cs.mu.Lock()
	p := n.cs.pending
	n.cs.pending = nil
	n.cs.mu.Unlock()
	for i, d := range p {
		if err := n.writeDecision(ctx, d); err != nil {
			n.cs.mu.Lock()
			n.cs.pending = append(p[i:], n.cs.pending...)
			n.cs.mu.Unlock()
			return
		}
	}
}

// ------------------------------------------------------ planned failover

// gatePlannedFailover asks the gate whether the backup may take over; on a
// refusal it answers 409 with the decision and returns false.
func (n *Node) gatePlannedFailover(w http.ResponseWriter, r *http.Request) bool {
	ctx := r.Context()
	peer := "" // the other failover member (the core is the loop's: not read here)
	for _, o := range n.mirror.tier.Members {
		if o.Role == cluster.RoleFailover && o.Name != n.cfg.Member {
			peer = o.Name
		}
	}
	desired, dIn, err := n.desiredInput()
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return false
	}
	self, err := n.facts(desired)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return false
	}
	members := []gate.Member{self}
	var peerErr error
	if pm, err := n.peerFacts(ctx, peer); err != nil {
		peerErr = err
	} else {
		members = append(members, pm)
	}
	d := n.evaluate(ctx, gate.PlannedFailover, peer, members, dIn)
	if peerErr != nil {
		d.Allowed = false
		d.Deny = append(d.Deny, fmt.Sprintf("target %s: could not be asked for its state: %v", peer, peerErr))
	}
	n.metrics.countDecision(d)
	if err := n.recordDecision(ctx, d); err != nil {
		n.log.Warn("gate decision not recorded", "err", err)
	}
	if !d.Allowed {
		n.log.Warn("planned failover refused by the policy gate", "target", peer, "deny", d.Deny)
		writeJSON(w, http.StatusConflict, map[string]any{"error": "planned failover refused by the policy gate: " + strings.Join(d.Deny, "; "), "deny": d.Deny, "warn": d.Warn, "decision": d})
		return false
	}
	return true
}

// ------------------------------------------------------- alignment loop

// alignLoop runs beside the mirror loop until ctx ends. On a failover
// backup it evaluates the gate for an automatic takeover onto itself; once
// the primary has fallen silent it first aligns its effective state with
// the desired state it holds, so only what it cannot align refuses the
// takeover. On the primary it records decisions kept while it was backup.
func (n *Node) alignLoop(ctx context.Context) {
	if n.cs == nil || n.cfg.Role != cluster.RoleFailover {
		return
	}
	t := time.NewTicker(alignInterval)
	defer t.Stop()
	for {
		n.alignOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (n *Node) alignOnce(ctx context.Context) {
	snap := n.mirror.snapshot()
	if snap.Status == failover.StatusPrimary {
		// Just took over: records the old primary committed that this
		// member learned were committed only with its own epoch marker may
		// hold a newer desired state than the one it aligned to; finish the
		// self-alignment with them.
		if !n.cs.backupUntil.IsZero() && time.Since(n.cs.backupUntil) < 3*time.Second {
			n.selfAlign("took over: aligned effective state with the newest desired state")
		}
		n.flushDecisions(ctx)
		return
	}
	if snap.Role != "backup" {
		return
	}
	n.cs.backupUntil = time.Now()
	desired, dIn, err := n.desiredInput()
	if err != nil {
		n.setVerdict(ctx, gate.Decision{Operation: gate.AutomaticFailover, Target: n.cfg.Member, At: time.Now().UTC(),
			Deny: []string{"desired state unreadable: " + err.Error()}}, false)
		return
	}
	primarySilent := snap.Transfer.Status == "disconnected"
	if primarySilent {
		n.selfAlign("primary silent: aligned effective state with the desired state before takeover")
	}
	self, err := n.facts(desired)
	if err != nil {
		n.log.Error("gate input", "err", err)
		return
	}
	d := n.evaluate(ctx, gate.AutomaticFailover, n.cfg.Member, []gate.Member{self}, dIn)
	n.setVerdict(ctx, d, primarySilent)
}

// selfAlign applies the desired state this member holds to itself.
func (n *Node) selfAlign(logMsg string) {
	desired, err := configsync.ReadDesired(n.store)
	if err != nil {
		n.log.Error("self-alignment: desired state unreadable", "err", err)
		return
	}
	res, err := n.cs.local.Apply(desired, n.cs.host)
	if err != nil {
		n.log.Error("self-alignment failed", "err", err)
	}
	for _, r := range res {
		switch r.Result {
		case "applied":
			n.log.Warn(logMsg, "category", r.Category, "version", r.Version)
		case "failed":
			n.log.Error("self-alignment: cannot align this member", "category", r.Category, "err", r.Error)
		}
	}
}

// setVerdict publishes a verdict and hands it to the core when it changed.
// Verdicts taken while the primary is silent are decisions: logged and
// recorded.
func (n *Node) setVerdict(ctx context.Context, d gate.Decision, decisive bool) {
	n.metrics.countDecision(d)
	a := failover.Alignment{Aligned: d.Allowed, Reasons: d.Deny}
	n.cs.mu.Lock()
	changed := n.cs.sent == nil || n.cs.sent.Aligned != a.Aligned || !slices.Equal(n.cs.sent.Reasons, a.Reasons)
	wasDecisive := n.cs.verdict.PrimarySilent
	n.cs.verdict.Aligned, n.cs.verdict.Deny, n.cs.verdict.Warn, n.cs.verdict.EvaluatedAt = d.Allowed, d.Deny, d.Warn, d.At
	n.cs.verdict.Operation, n.cs.verdict.PrimarySilent = d.Operation, decisive
	if changed {
		n.cs.sent = &a
	}
	n.cs.mu.Unlock()
	if changed { // as mirror.operator, but never blocks past ctx (Run waits for this loop)
		msg := failover.Message{Type: failover.MsgSetAlignment, Alignment: a, From: failover.OperatorID, To: failover.ID(n.cfg.Member)}
		select {
		case n.mirror.inbox <- msg:
		case <-ctx.Done():
		}
	}
	if decisive && (changed || !wasDecisive) {
		if d.Allowed {
			n.log.Info("policy gate allows an automatic takeover onto this member", "warn", d.Warn)
		} else {
			n.log.Warn("automatic takeover refused by the policy gate", "deny", d.Deny)
		}
		if err := n.recordDecision(ctx, d); err != nil {
			n.log.Warn("gate decision not recorded", "err", err)
		}
	}
}

// ----------------------------------------------------------- admin API

// configSyncRoutes serves /admin/config/* and /admin/gate/*. admin wraps a
// handler with the operator-certificate check.
func (n *Node) configSyncRoutes(mux *http.ServeMux, admin func(http.HandlerFunc) http.HandlerFunc) {
	if n.cs == nil {
		return
	}
	fail := func(w http.ResponseWriter, code int, err error) {
		writeJSON(w, code, map[string]string{"error": err.Error()})
	}
	// Facts are read by the tier's other members (planned failover) as well
	// as the operator.
	mux.HandleFunc("GET /admin/config/facts", func(w http.ResponseWriter, r *http.Request) {
		if !n.operatorOrMember(r) {
			fail(w, http.StatusForbidden, errors.New("needs the operator's or a tier member's client certificate"))
			return
		}
		desired, _, err := n.desiredInput()
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		m, err := n.facts(desired)
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, m)
	})
	mux.HandleFunc("PUT /admin/config/desired/{category}", admin(func(w http.ResponseWriter, r *http.Request) {
		c := r.PathValue("category")
		if !configsync.KnownCategory(c) {
			fail(w, http.StatusNotFound, configsync.ErrUnknownCategory)
			return
		}
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<20))
		if err != nil {
			fail(w, http.StatusRequestEntityTooLarge, errors.New("document larger than 4 MiB"))
			return
		}
		doc, err := configsync.Prepare(c, raw)
		if err != nil {
			fail(w, http.StatusBadRequest, err)
			return
		}
		if !n.IsPrimary() {
			fail(w, http.StatusServiceUnavailable, errors.New("not the primary: the desired state is changed on the member whose /mirror/primary answers 200"))
			return
		}
		ifVersion := int64(-1)
		if s := r.URL.Query().Get("if_version"); s != "" {
			if ifVersion, err = strconv.ParseInt(s, 10, 64); err != nil {
				fail(w, http.StatusBadRequest, errors.New("if_version must be a number"))
				return
			}
		}
		var stored configsync.Document
		errConflict := errors.New("conflict")
		lsn, err := n.seq.Write(r.Context(), configsync.SystemDatabase, func(v sequencer.View) ([]journal.Op, error) {
			cur := configsync.Document{Category: c}
			if b, ok, err := v.Get(configsync.DesiredKey(c)); err != nil {
				return nil, err
			} else if ok {
				if err := json.Unmarshal(b, &cur); err != nil {
					return nil, err
				}
			}
			if ifVersion >= 0 && uint64(ifVersion) != cur.Version {
				return nil, fmt.Errorf("%w: desired %s is at version %d, not %d: read it again", errConflict, c, cur.Version, ifVersion)
			}
			stored = configsync.Document{Category: c, Version: cur.Version + 1, Doc: doc}
			b, err := json.Marshal(stored)
			if err != nil {
				return nil, err
			}
			return []journal.Op{{Kind: journal.OpSet, Key: configsync.DesiredKey(c), Value: b}}, nil
		})
		switch {
		case errors.Is(err, errConflict):
			fail(w, http.StatusConflict, err)
			return
		case err != nil:
			fail(w, http.StatusServiceUnavailable, err)
			return
		}
		dg, _ := configsync.Digest(c, doc)
		n.log.Info("desired state changed", "category", c, "version", stored.Version, "lsn", lsn)
		writeJSON(w, http.StatusOK, map[string]any{"category": c, "version": stored.Version, "digest": dg, "lsn": lsn})
	}))
	mux.HandleFunc("GET /admin/config/desired", admin(func(w http.ResponseWriter, r *http.Request) {
		desired, err := configsync.ReadDesired(n.store)
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, desired)
	}))
	mux.HandleFunc("GET /admin/config/digests", admin(func(w http.ResponseWriter, r *http.Request) {
		_, dIn, err := n.desiredInput()
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		eff, err := n.cs.local.State().Digests()
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"member": n.cfg.Member, "desired": dIn, "effective": eff})
	}))
	mux.HandleFunc("GET /admin/config/effective", admin(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.cs.local.State())
	}))
	mux.HandleFunc("GET /admin/config/diff", admin(func(w http.ResponseWriter, r *http.Request) {
		desired, err := configsync.ReadDesired(n.store)
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		diff, err := configsync.Diff(desired, n.cs.local.State())
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"member": n.cfg.Member, "categories": diff, "unalignable": n.cs.host.Check(desired)})
	}))
	// Apply may name the desired versions the operator saw on the primary
	// ({"versions": {"users": 2}}): a member still behind waits for them (up
	// to 5 s), so apply never enforces an older desired state than asked.
	mux.HandleFunc("POST /admin/config/apply", admin(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Versions map[string]uint64 `json:"versions"`
			// Categories restricts the apply to these categories (all when
			// empty); the others are reported "skipped".
			Categories []string `json:"categories"`
		}
		if b, _ := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<16)); len(b) > 0 {
			if err := json.Unmarshal(b, &req); err != nil {
				fail(w, http.StatusBadRequest, errors.New(`body must be empty or {"versions": {"users": N, ...}, "categories": ["users", ...]}`))
				return
			}
		}
		for _, c := range req.Categories {
			if !configsync.KnownCategory(c) {
				fail(w, http.StatusBadRequest, configsync.ErrUnknownCategory)
				return
			}
		}
		var desired configsync.State
		deadline := time.Now().Add(5 * time.Second)
		for {
			var err error
			if desired, err = configsync.ReadDesired(n.store); err != nil {
				fail(w, http.StatusInternalServerError, err)
				return
			}
			behind := ""
			for c, v := range req.Versions {
				if desired[c].Version < v {
					behind = fmt.Sprintf("member %s holds desired %s version %d, the tier is at %d: it is behind; retry when it has caught up", n.cfg.Member, c, desired[c].Version, v)
				}
			}
			if behind == "" {
				break
			}
			if time.Now().After(deadline) {
				fail(w, http.StatusConflict, errors.New(behind))
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		res, err := n.cs.local.ApplyOnly(desired, n.cs.host, req.Categories)
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		for _, x := range res {
			if x.Result != "unchanged" && x.Result != "skipped" {
				n.log.Info("config apply", "category", x.Category, "result", x.Result, "version", x.Version, "err", x.Error)
			}
		}
		code := http.StatusOK
		for _, x := range res {
			if x.Result == "failed" {
				code = http.StatusConflict
			}
		}
		writeJSON(w, code, map[string]any{"member": n.cfg.Member, "results": res})
	}))
	mux.HandleFunc("GET /admin/gate/log", admin(func(w http.ResponseWriter, r *http.Request) {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		if limit <= 0 {
			limit = 50
		}
		var all []json.RawMessage
		err := n.store.Scan(configsync.SystemDatabase, []byte(gateLogPrefix), func(_, v []byte) bool {
			all = append(all, json.RawMessage(slices.Clone(v)))
			return true
		})
		if err != nil {
			fail(w, http.StatusInternalServerError, err)
			return
		}
		if len(all) > limit {
			all = all[len(all)-limit:]
		}
		writeJSON(w, http.StatusOK, map[string]any{"member": n.cfg.Member, "decisions": all})
	}))
	mux.HandleFunc("GET /admin/gate/status", admin(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, n.gateStatus())
	}))
}

// operatorOrMember accepts the operator's certificate or that of a member
// of this tier, both from the cluster's CA.
func (n *Node) operatorOrMember(r *http.Request) bool {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return false
	}
	cn := r.TLS.PeerCertificates[0].Subject.CommonName
	if cn == AdminIdentity {
		return true
	}
	_, ok := n.mirror.tier.Member(cn)
	return ok
}

// EffectiveConfig is what this member enforces now: its effective users,
// roles and security settings (for the access package). ok is false on a
// standalone node, which has no config-sync state.
func (n *Node) EffectiveConfig() (st configsync.State, ok bool) {
	if n.cs == nil {
		return nil, false
	}
	return n.cs.local.State(), true
}
