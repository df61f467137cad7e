package workflows

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/transport"
)

// Admin holds the activities: every one calls the members' admin APIs (or
// dials an endpoint) over mutual TLS with the operator's certificate, and
// every one is idempotent. Register it with worker.RegisterActivity(admin).
type Admin struct {
	File  *cluster.File
	HTTP  *http.Client
	Creds transport.Credentials
}

// NewAdmin builds the activities from the cluster file.
func NewAdmin(f *cluster.File) (*Admin, error) {
	creds, err := f.Credentials("operator")
	if err != nil {
		return nil, fmt.Errorf("operator credentials: %w", err)
	}
	return &Admin{File: f, Creds: creds,
		HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: creds.ClientConfig("")}}}, nil
}

func (a *Admin) tier(name string) (cluster.Tier, error) {
	t, ok := a.File.Tier(name)
	if !ok {
		return t, temporal.NewNonRetryableApplicationError(fmt.Sprintf("no tier %q in the cluster file", name), ErrNotReady, nil)
	}
	return t, nil
}

func (a *Admin) memberURL(tier, member string) (string, error) {
	t, err := a.tier(tier)
	if err != nil {
		return "", err
	}
	m, ok := t.Member(member)
	if !ok {
		return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("no member %q in tier %q", member, tier), ErrNotReady, nil)
	}
	return "https://" + m.HTTP, nil
}

// httpError is an admin API answer of 300 or more.
type httpError struct {
	Code int
	Body []byte
	Msg  string
}

func (e *httpError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Code, e.Msg) }

func (a *Admin) do(ctx context.Context, method, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := a.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &httpError{Code: resp.StatusCode, Body: data, Msg: msg}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// CheckEndpoints checks connectivity and mutual TLS to every process of the
// tier: each member's admin API (an operator-only request, so both sides'
// certificates are verified), each member's mirror transport, each agent
// and the arbiter. Failures are results, not errors.
func (a *Admin) CheckEndpoints(ctx context.Context, tier string) ([]EndpointCheck, error) {
	t, err := a.tier(tier)
	if err != nil {
		return nil, err
	}
	var out []EndpointCheck
	tlsCheck := func(name, addr string) {
		c := EndpointCheck{Name: name, Address: addr}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := transport.Dial(dctx, addr, a.Creds.ClientConfig(""))
		cancel()
		if err != nil {
			c.Error = err.Error()
		} else {
			conn.Close()
			c.OK = true
		}
		out = append(out, c)
	}
	for _, m := range t.Members {
		c := EndpointCheck{Name: m.Name + " (admin API)", Address: m.HTTP}
		if err := a.do(ctx, "GET", "https://"+m.HTTP+"/admin/hash/system", nil, nil); err != nil {
			c.Error = err.Error()
		} else {
			c.OK = true
		}
		out = append(out, c)
		tlsCheck(m.Name+" (mirror)", m.Address)
		if m.Role == cluster.RoleFailover {
			tlsCheck("agent-"+m.Name, m.Agent.Address)
		}
	}
	tlsCheck("arbiter", a.File.Arbiter.Address)
	return out, nil
}

// TierStatus asks every member of the tier for its status; a member that
// does not answer is reported with Error set.
func (a *Admin) TierStatus(ctx context.Context, tier string) ([]MemberStatus, error) {
	t, err := a.tier(tier)
	if err != nil {
		return nil, err
	}
	out := make([]MemberStatus, 0, len(t.Members))
	for _, m := range t.Members {
		var s MemberStatus
		if err := a.do(ctx, "GET", "https://"+m.HTTP+"/mirror/status", nil, &s); err != nil {
			s = MemberStatus{Error: err.Error()}
		}
		s.Member, s.Role = m.Name, m.Role
		out = append(out, s)
	}
	return out, nil
}

// ContentHashes reads the content hash of every database on each of the
// given members.
func (a *Admin) ContentHashes(ctx context.Context, tier string, members []string, databases []string) ([]HashReport, error) {
	var out []HashReport
	for _, m := range members {
		base, err := a.memberURL(tier, m)
		if err != nil {
			return nil, err
		}
		for _, db := range databases {
			r := HashReport{Member: m, Database: db}
			var h struct {
				SHA256     string `json:"sha256"`
				AppliedLSN uint64 `json:"applied_lsn"`
			}
			if err := a.do(ctx, "GET", base+"/admin/hash/"+db, nil, &h); err != nil {
				r.Error = err.Error()
			}
			r.SHA256, r.AppliedLSN = h.SHA256, h.AppliedLSN
			out = append(out, r)
		}
	}
	return out, nil
}

// RequestPlannedFailover asks primary (which was primary in epoch) to hand
// over to its backup. Idempotent: if primary already left the primary role
// or the epoch moved on, the request was made before and nothing is sent.
// A refusal (HTTP 409, e.g. the policy gate) fails without retry, its
// messages in a GateRefusal.
func (a *Admin) RequestPlannedFailover(ctx context.Context, tier, primary string, epoch uint64) error {
	base, err := a.memberURL(tier, primary)
	if err != nil {
		return err
	}
	var s MemberStatus
	if err := a.do(ctx, "GET", base+"/mirror/status", nil, &s); err != nil {
		return fmt.Errorf("%s: %w", primary, err)
	}
	if s.Epoch > epoch || s.Status == "transition" || (s.Status == "backup" && s.Epoch >= epoch) {
		return nil // already handed over or draining
	}
	err = a.do(ctx, "POST", base+"/admin/planned-failover", nil, nil)
	var he *httpError
	if errors.As(err, &he) && he.Code == http.StatusConflict {
		msgs := refusalMessages(he.Body)
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s refused the planned failover: %s", primary, strings.Join(msgs, "; ")),
			ErrGateRefused, nil, GateRefusal{Member: primary, Messages: msgs})
	}
	return err
}

// refusalMessages reads a refusal body: the messages of a policy gate
// (under "messages", "deny" or "reasons"), else its "error".
func refusalMessages(body []byte) []string {
	var r struct {
		Error    string   `json:"error"`
		Messages []string `json:"messages"`
		Deny     []string `json:"deny"`
		Reasons  []string `json:"reasons"`
	}
	if json.Unmarshal(body, &r) != nil {
		return []string{strings.TrimSpace(string(body))}
	}
	var out []string
	for _, l := range [][]string{r.Messages, r.Deny, r.Reasons} {
		out = append(out, l...)
	}
	sort.Strings(out)
	if len(out) == 0 && r.Error != "" {
		out = []string{r.Error}
	}
	return out
}

// PromotionPreview reads member's statement of what a forced promotion
// would lose, given the highest epoch known in the tier.
func (a *Admin) PromotionPreview(ctx context.Context, tier, member string, tierEpoch uint64) (PromotionPreview, error) {
	base, err := a.memberURL(tier, member)
	if err != nil {
		return PromotionPreview{}, err
	}
	var p PromotionPreview
	err = a.do(ctx, "GET", fmt.Sprintf("%s/admin/force-promote?tier_epoch=%d", base, tierEpoch), nil, &p)
	var he *httpError
	if errors.As(err, &he) && he.Code == http.StatusConflict {
		return p, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s cannot be promoted: %s", member, he.Msg), ErrNotReady, nil)
	}
	return p, err
}

// ForcePromote sends the forced promotion with the confirmation the
// approver accepted. Idempotent: a member already primary in the preview's
// new epoch counts as promoted. A refusal (the preview changed) fails
// without retry.
func (a *Admin) ForcePromote(ctx context.Context, tier, member string, tierEpoch uint64, confirm string, newEpoch uint64) error {
	base, err := a.memberURL(tier, member)
	if err != nil {
		return err
	}
	var s MemberStatus
	if err := a.do(ctx, "GET", base+"/mirror/status", nil, &s); err == nil && s.Status == "primary" && s.Epoch >= newEpoch {
		return nil
	}
	body, _ := json.Marshal(map[string]any{"tier_epoch": tierEpoch, "confirm": confirm})
	err = a.do(ctx, "POST", base+"/admin/force-promote", body, nil)
	var he *httpError
	if errors.As(err, &he) && (he.Code == http.StatusConflict || he.Code == http.StatusBadRequest) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s refused the promotion: %s", member, he.Msg), ErrPromotionRefused, nil)
	}
	return err
}

// PromoteDR promotes a dr member with the confirmation the approver
// accepted and the operator's statement that both failover members are
// gone (the member asks the arbiter to record it first; see
// node.ForcePromote). Idempotent like ForcePromote.
func (a *Admin) PromoteDR(ctx context.Context, tier, member string, tierEpoch uint64, confirm, statement string, newEpoch uint64) error {
	base, err := a.memberURL(tier, member)
	if err != nil {
		return err
	}
	var s MemberStatus
	if err := a.do(ctx, "GET", base+"/mirror/status", nil, &s); err == nil && s.Status == "primary" && s.Epoch >= newEpoch {
		return nil
	}
	body, _ := json.Marshal(map[string]any{"tier_epoch": tierEpoch, "confirm": confirm, "statement": statement})
	err = a.do(ctx, "POST", base+"/admin/force-promote", body, nil)
	var he *httpError
	if errors.As(err, &he) && (he.Code == http.StatusConflict || he.Code == http.StatusBadRequest) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s refused the promotion: %s", member, he.Msg), ErrPromotionRefused, nil)
	}
	return err
}

// RequestRebuild asks member to re-seed itself from source, the tier's
// primary (POST /admin/rebuild). Idempotent: a member whose re-seed is
// already fetching, staged or installed is not asked again. A refusal
// (HTTP 409: a primary, or a member that needs no rebuild without force)
// fails without retry.
func (a *Admin) RequestRebuild(ctx context.Context, tier, member, source string, force bool) error {
	base, err := a.memberURL(tier, member)
	if err != nil {
		return err
	}
	var s MemberStatus
	if err := a.do(ctx, "GET", base+"/mirror/status", nil, &s); err != nil {
		return fmt.Errorf("%s: %w", member, err)
	}
	if s.Rebuild != nil && (s.Rebuild.State == "fetching" || s.Rebuild.State == "staged" || s.Rebuild.State == "installed") {
		return nil
	}
	body, _ := json.Marshal(map[string]any{"source": source, "force": force})
	err = a.do(ctx, "POST", base+"/admin/rebuild", body, nil)
	var he *httpError
	if errors.As(err, &he) && he.Code == http.StatusConflict {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s refused the re-seed: %s", member, he.Msg), ErrNotReady, nil)
	}
	return err
}

// DatabaseImport is a database's import as the primary reports it (GET
// /admin/databases/{db}/import).
type DatabaseImport struct {
	Name         string `json:"name"`
	State        string `json:"state"` // needs-activation, normal
	SourceSHA256 string `json:"source_sha256"`
	Keys         int    `json:"keys"`
	Bytes        int64  `json:"bytes"`
	FirstLSN     uint64 `json:"first_lsn"`
	LastLSN      uint64 `json:"last_lsn"`
	Error        string `json:"error,omitempty"`
}

// RequestImport asks primary to import the database sourceDB of the store
// at dir (on the primary's host) as db. Idempotent: an import already
// running or finished is not asked again. A refusal (HTTP 409: a name in
// use, not a store) fails without retry.
func (a *Admin) RequestImport(ctx context.Context, tier, primary, db, dir, sourceDB, by string) error {
	base, err := a.memberURL(tier, primary)
	if err != nil {
		return err
	}
	var cur DatabaseImport
	if err := a.do(ctx, "GET", base+"/admin/databases/"+db+"/import", nil, &cur); err == nil && cur.Error == "" {
		return nil // running (on this primary) or done
	}
	body, _ := json.Marshal(map[string]string{"source_dir": dir, "source_database": sourceDB, "by": by})
	err = a.do(ctx, "POST", base+"/admin/databases/"+db+"/import", body, nil)
	var he *httpError
	if errors.As(err, &he) && he.Code == http.StatusConflict {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s refused the import: %s", primary, he.Msg), ErrNotReady, nil)
	}
	return err
}

// ImportState reads db's import on member.
func (a *Admin) ImportState(ctx context.Context, tier, member, db string) (DatabaseImport, error) {
	base, err := a.memberURL(tier, member)
	if err != nil {
		return DatabaseImport{}, err
	}
	var st DatabaseImport
	return st, a.do(ctx, "GET", base+"/admin/databases/"+db+"/import", nil, &st)
}

// WriteRecord writes rec to the mirrored system database on the tier's
// current primary (PUT /admin/kv/system/<key>). Idempotent: the same
// record under the same key. Retried while no member is primary.
func (a *Admin) WriteRecord(ctx context.Context, tier string, rec Record) error {
	t, err := a.tier(tier)
	if err != nil {
		return err
	}
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range t.Members {
		err := a.do(ctx, "PUT", "https://"+m.HTTP+"/admin/kv/system/"+rec.Key, body, nil)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
	}
	return fmt.Errorf("no primary took the record %s: %w", rec.Key, errors.Join(errs...))
}
