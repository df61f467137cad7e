package workflows

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
)

// The activities of RecoverLostJournal: a member's quarantine report (the
// journal tail it moved aside at a rejoin, never acknowledged to a client),
// the plan of what re-applying its FHIR resources on the primary would do,
// the re-apply itself (each write guarded by If-Match or If-None-Match and
// an Idempotency-Key, so a retry or a second run changes nothing twice), and
// the recovery recorded beside the report. Resource bodies never enter the
// workflow's history: the activities read them from the member's report,
// named by a digest the plan carries.

// LostResource is one resource of a quarantine report: its net change and
// the digest of the version the tail ended with (the body stays on the
// member).
type LostResource struct {
	Type        string `json:"resource_type"`
	ID          string `json:"id"`
	BaseVersion uint64 `json:"base_version"`
	Version     uint64 `json:"version"`
	Interaction string `json:"interaction"` // create, update, delete or none
	LSN         uint64 `json:"lsn"`
	SHA256      string `json:"sha256,omitempty"`
}

// Ref is Type/ID.
func (l LostResource) Ref() string { return l.Type + "/" + l.ID }

// LostJournal is a quarantine report as RecoverLostJournal plans from it.
type LostJournal struct {
	Member   string         `json:"member"`
	Report   string         `json:"report"`
	AfterLSN uint64         `json:"kept_up_to_lsn"`
	FirstLSN uint64         `json:"first_lsn"`
	LastLSN  uint64         `json:"last_lsn"`
	Lost     []LostResource `json:"lost"`
	// Other counts data records outside the fhir database (raw key/value
	// databases): not re-applied, kept in the report.
	Other map[string]int `json:"other_records_per_database,omitempty"`
	// Recovered names an earlier recovery of this report ("" if none).
	Recovered string `json:"recovered,omitempty"`
}

// Recovery actions of a plan item.
const (
	RecoverCreate   = "create"   // re-applied: PUT with If-None-Match "*"
	RecoverUpdate   = "update"   // re-applied: PUT with If-Match the base version
	RecoverDelete   = "delete"   // re-applied: DELETE with If-Match the base version
	RecoverPresent  = "present"  // the primary already holds the tail's result
	RecoverConflict = "conflict" // the primary changed it since: left alone
	RecoverNone     = "none"     // the tail created and deleted it: nothing to do
)

// RecoveryItem is one resource of a plan: what the primary held when it
// was read and what re-applying does.
type RecoveryItem struct {
	LostResource
	Action  string `json:"action"`
	Current uint64 `json:"current_version"` // the primary's version (0: absent)
	Deleted bool   `json:"current_deleted,omitempty"`
	Why     string `json:"why,omitempty"`
}

// Applies reports whether the item writes on the primary.
func (i RecoveryItem) Applies() bool {
	return i.Action == RecoverCreate || i.Action == RecoverUpdate || i.Action == RecoverDelete
}

// Line is the item for people: "create Patient/q-1 (absent on the primary)".
func (i RecoveryItem) Line() string {
	s := i.Action + " " + i.Ref()
	if i.Why != "" {
		s += " (" + i.Why + ")"
	}
	return s
}

// RecoveryPlan is what re-applying a report on the primary would do.
type RecoveryPlan struct {
	Primary string         `json:"primary"`
	Items   []RecoveryItem `json:"items"`
}

// Count is the number of items with action.
func (p RecoveryPlan) Count(action string) int {
	n := 0
	for _, i := range p.Items {
		if i.Action == action {
			n++
		}
	}
	return n
}

// Digest names the plan's content (resources, versions, actions, bodies):
// an approval carries it back, so it approves exactly this plan.
func (p RecoveryPlan) Digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", p.Primary)
	for _, i := range p.Items {
		fmt.Fprintf(h, "%s %d %d %s %s %d %v\n", i.Ref(), i.BaseVersion, i.Version, i.SHA256, i.Action, i.Current, i.Deleted)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// RecoveryOutcome is what re-applying one item did.
type RecoveryOutcome struct {
	Ref     string `json:"ref"`
	Action  string `json:"action"`  // the planned action
	Outcome string `json:"outcome"` // applied, present, conflict
	Version uint64 `json:"version,omitempty"`
	Why     string `json:"why,omitempty"`
}

// Recovery outcomes.
const (
	OutcomeApplied  = "applied"
	OutcomePresent  = "present"
	OutcomeConflict = "conflict"
)

// QuarantineRecovery is recorded on the member beside the report (PUT
// /admin/quarantine/{name}/recovery); the member refuses a second one.
type QuarantineRecovery struct {
	By       string `json:"by"`
	Workflow string `json:"workflow"`
	Primary  string `json:"primary"`
	Epoch    uint64 `json:"epoch"`
	Applied  int    `json:"applied"`
	Present  int    `json:"already_present"`
	Conflict int    `json:"conflicts"`
	Summary  string `json:"summary"`
}

// memberReport is the part of the member's GET /admin/quarantine/{name}
// the activities read.
type memberReport struct {
	Name   string `json:"name"`
	Report struct {
		AfterLSN uint64 `json:"kept_up_to_lsn"`
		FirstLSN uint64 `json:"first_quarantined_lsn"`
		LastLSN  uint64 `json:"last_quarantined_lsn"`
	} `json:"report"`
	Lost []struct {
		LostResource
		Resource json.RawMessage `json:"resource"`
	} `json:"lost_resources"`
	Other    map[string]int `json:"other_records_per_database"`
	Recovery *struct {
		At       time.Time `json:"at"`
		By       string    `json:"by"`
		Workflow string    `json:"workflow"`
		Summary  string    `json:"summary"`
	} `json:"recovery"`
}

func (a *Admin) memberReport(ctx context.Context, tier, member, report string) (memberReport, error) {
	var r memberReport
	base, err := a.memberURL(tier, member)
	if err != nil {
		return r, err
	}
	if report == "" {
		var list struct {
			Reports []struct {
				Name     string          `json:"name"`
				Recovery json.RawMessage `json:"recovery"`
			} `json:"reports"`
		}
		if err := a.do(ctx, "GET", base+"/admin/quarantine", nil, &list); err != nil {
			return r, err
		}
		for _, q := range list.Reports { // newest first
			if len(q.Recovery) == 0 || string(q.Recovery) == "null" {
				report = q.Name
				break
			}
		}
		if report == "" {
			return r, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s holds no quarantine report that is not recovered yet (%d in all): see `tandem ctl quarantine %s %s`", member, len(list.Reports), tier, member), ErrNotReady, nil)
		}
	}
	err = a.do(ctx, "GET", base+"/admin/quarantine/"+url.PathEscape(report), nil, &r)
	var he *httpError
	if errors.As(err, &he) && he.Code == http.StatusNotFound {
		return r, temporal.NewNonRetryableApplicationError(he.Msg, ErrNotReady, nil)
	}
	return r, err
}

func bodyDigest(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// ReadLostJournal reads a quarantine report of member (the newest one not
// recovered yet when report is ""), without the resources' bodies.
func (a *Admin) ReadLostJournal(ctx context.Context, tier, member, report string) (LostJournal, error) {
	r, err := a.memberReport(ctx, tier, member, report)
	if err != nil {
		return LostJournal{}, err
	}
	out := LostJournal{Member: member, Report: r.Name, AfterLSN: r.Report.AfterLSN, FirstLSN: r.Report.FirstLSN, LastLSN: r.Report.LastLSN, Other: r.Other}
	for _, l := range r.Lost {
		lr := l.LostResource
		lr.SHA256 = bodyDigest(l.Resource)
		out.Lost = append(out.Lost, lr)
	}
	if r.Recovery != nil {
		out.Recovered = fmt.Sprintf("recovered by %s at %s (%s)", r.Recovery.By, r.Recovery.At.Format(time.RFC3339), r.Recovery.Summary)
	}
	return out, nil
}

// primaryVersion is a resource as the primary holds it.
type primaryVersion struct {
	version uint64 // 0: absent
	deleted bool
	body    []byte
}

func (a *Admin) fhirCall(ctx context.Context, method, url string, body []byte, header map[string]string) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := a.HTTP.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	return resp.StatusCode, resp.Header, data, err
}

func versionOf(etag string) uint64 {
	s := strings.Trim(strings.TrimPrefix(etag, "W/"), `"`)
	v, _ := strconv.ParseUint(s, 10, 64)
	return v
}

func (a *Admin) readPrimary(ctx context.Context, base, ref string) (primaryVersion, error) {
	code, h, body, err := a.fhirCall(ctx, "GET", base+"/fhir/"+ref, nil, nil)
	if err != nil {
		return primaryVersion{}, err
	}
	switch code {
	case http.StatusOK:
		return primaryVersion{version: versionOf(h.Get("ETag")), body: body}, nil
	case http.StatusGone:
		return primaryVersion{version: versionOf(h.Get("ETag")), deleted: true}, nil
	case http.StatusNotFound:
		return primaryVersion{}, nil
	}
	return primaryVersion{}, fmt.Errorf("reading %s on the primary: HTTP %d: %s", ref, code, strings.TrimSpace(string(body)))
}

// sameContent compares two resources without the server's meta.versionId
// and meta.lastUpdated.
func sameContent(a, b []byte) bool {
	strip := func(raw []byte) any {
		var m map[string]any
		if json.Unmarshal(raw, &m) != nil {
			return nil
		}
		if meta, ok := m["meta"].(map[string]any); ok {
			delete(meta, "versionId")
			delete(meta, "lastUpdated")
			if len(meta) == 0 {
				delete(m, "meta")
			}
		}
		return m
	}
	x, y := strip(a), strip(b)
	return x != nil && reflect.DeepEqual(x, y)
}

// classify decides what re-applying l does given what the primary holds.
func classify(l LostResource, body []byte, cur primaryVersion) RecoveryItem {
	it := RecoveryItem{LostResource: l, Current: cur.version, Deleted: cur.deleted}
	live := cur.version > 0 && !cur.deleted
	switch {
	case l.Interaction == RecoverNone:
		it.Action, it.Why = RecoverNone, "created and deleted within the lost tail"
	case l.Interaction == "delete" && !live:
		it.Action, it.Why = RecoverPresent, "not live on the primary"
	case l.Interaction != "delete" && live && sameContent(cur.body, body):
		it.Action, it.Why = RecoverPresent, fmt.Sprintf("the primary holds the same content at version %d", cur.version)
	case l.BaseVersion == 0 && cur.version == 0:
		it.Action, it.Why = RecoverCreate, "absent on the primary"
	case l.BaseVersion == 0:
		state := "live"
		if cur.deleted {
			state = "deleted"
		}
		it.Action, it.Why = RecoverConflict, fmt.Sprintf("the tail created it; the primary holds version %d (%s)", cur.version, state)
	case cur.version == l.BaseVersion:
		it.Action = l.Interaction
		it.Why = fmt.Sprintf("the primary holds version %d, the tail's base", cur.version)
	case cur.version == 0:
		it.Action, it.Why = RecoverConflict, fmt.Sprintf("the tail changed version %d; the primary does not hold the resource", l.BaseVersion)
	default:
		it.Action, it.Why = RecoverConflict, fmt.Sprintf("the tail changed version %d; the primary holds version %d", l.BaseVersion, cur.version)
	}
	return it
}

// PlanRecovery reads every resource of the report on the primary and says
// what re-applying it would do.
func (a *Admin) PlanRecovery(ctx context.Context, tier, member, report, primary string) (RecoveryPlan, error) {
	r, err := a.memberReport(ctx, tier, member, report)
	if err != nil {
		return RecoveryPlan{}, err
	}
	base, err := a.memberURL(tier, primary)
	if err != nil {
		return RecoveryPlan{}, err
	}
	plan := RecoveryPlan{Primary: primary, Items: []RecoveryItem{}}
	for _, l := range r.Lost {
		lr := l.LostResource
		lr.SHA256 = bodyDigest(l.Resource)
		cur := primaryVersion{}
		if lr.Interaction != RecoverNone {
			if cur, err = a.readPrimary(ctx, base, lr.Ref()); err != nil {
				return plan, err
			}
		}
		plan.Items = append(plan.Items, classify(lr, l.Resource, cur))
	}
	return plan, nil
}

// ApplyRecovery re-applies the approved items on the primary, each only if
// the primary still holds what the plan saw (the write's own If-Match or
// If-None-Match decides, and its Idempotency-Key makes a retry answer the
// first result). An item whose body in the report no longer matches the
// plan's digest is refused whole.
func (a *Admin) ApplyRecovery(ctx context.Context, tier, member, report, primary, runID string, items []RecoveryItem) ([]RecoveryOutcome, error) {
	r, err := a.memberReport(ctx, tier, member, report)
	if err != nil {
		return nil, err
	}
	bodies := map[string][]byte{}
	for _, l := range r.Lost {
		bodies[l.Ref()] = l.Resource
	}
	base, err := a.memberURL(tier, primary)
	if err != nil {
		return nil, err
	}
	var out []RecoveryOutcome
	for _, it := range items {
		o := RecoveryOutcome{Ref: it.Ref(), Action: it.Action}
		body, ok := bodies[it.Ref()]
		if !ok || bodyDigest(body) != it.SHA256 {
			return out, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s in report %s differs from the approved plan", it.Ref(), report), ErrNotReady, nil)
		}
		if !it.Applies() {
			continue
		}
		cur, err := a.readPrimary(ctx, base, it.Ref())
		if err != nil {
			return out, err
		}
		now := classify(it.LostResource, body, cur)
		switch {
		case now.Action == RecoverPresent:
			o.Outcome, o.Version, o.Why = OutcomePresent, cur.version, now.Why
		case now.Action != it.Action:
			o.Outcome, o.Why = OutcomeConflict, "changed on the primary since the plan: "+now.Why
		default:
			o.Version, o.Why, err = a.reapply(ctx, base, report, runID, it, body)
			if err != nil {
				return out, err
			}
			o.Outcome = OutcomeApplied
			if o.Why != "" {
				o.Outcome = OutcomeConflict
			}
		}
		out = append(out, o)
	}
	return out, nil
}

// reapply sends one guarded write; a 412 is a conflict (why set), not an
// error.
func (a *Admin) reapply(ctx context.Context, base, report, runID string, it RecoveryItem, body []byte) (uint64, string, error) {
	h := map[string]string{"Idempotency-Key": fmt.Sprintf("recover-lost-journal/%s/%s/%d", report, it.Ref(), it.Version)}
	method := "PUT"
	switch it.Action {
	case RecoverCreate:
		h["If-None-Match"] = "*"
	case RecoverUpdate:
		h["If-Match"] = fmt.Sprintf(`W/"%d"`, it.BaseVersion)
	case RecoverDelete:
		h["If-Match"] = fmt.Sprintf(`W/"%d"`, it.BaseVersion)
		method, body = "DELETE", nil
	}
	h["X-Request-ID"] = "recover-" + runID
	code, rh, data, err := a.fhirCall(ctx, method, base+"/fhir/"+it.Ref(), body, h)
	if err != nil {
		return 0, "", err
	}
	switch {
	case code == http.StatusPreconditionFailed:
		return 0, "the primary refused the guarded write (412): " + strings.TrimSpace(string(data)), nil
	case code >= 200 && code < 300:
		return versionOf(rh.Get("ETag")), "", nil
	case code >= 400 && code < 500:
		return 0, "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s %s on the primary: HTTP %d: %s", method, it.Ref(), code, strings.TrimSpace(string(data))), ErrNotReady, nil)
	}
	return 0, "", fmt.Errorf("%s %s on the primary: HTTP %d: %s", method, it.Ref(), code, strings.TrimSpace(string(data)))
}

// MarkRecovered records the recovery beside the report on member (a retry
// of the same run is accepted; another run's is refused).
func (a *Admin) MarkRecovered(ctx context.Context, tier, member, report string, rec QuarantineRecovery) error {
	base, err := a.memberURL(tier, member)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(rec)
	err = a.do(ctx, "PUT", base+"/admin/quarantine/"+url.PathEscape(report)+"/recovery", body, nil)
	var he *httpError
	if errors.As(err, &he) && he.Code >= 400 && he.Code < 500 {
		return temporal.NewNonRetryableApplicationError(he.Msg, ErrNotReady, nil)
	}
	return err
}
