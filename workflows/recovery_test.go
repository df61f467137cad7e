package workflows

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// fakeFHIR is the primary's /fhir for one resource type: versions, If-Match,
// If-None-Match "*", 410 with the tombstone's ETag.
type fakeFHIR struct {
	mu     sync.Mutex
	cur    map[string]fakeVersion // id → current
	writes []string
}

type fakeVersion struct {
	vid     uint64
	deleted bool
	body    string
}

func (f *fakeFHIR) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := strings.TrimPrefix(r.URL.Path, "/fhir/Patient/")
	cur, ok := f.cur[id]
	etag := func(v uint64) string { return fmt.Sprintf(`W/"%d"`, v) }
	switch r.Method {
	case "GET":
		switch {
		case !ok:
			http.Error(w, `{"resourceType":"OperationOutcome"}`, 404)
		case cur.deleted:
			w.Header().Set("ETag", etag(cur.vid))
			http.Error(w, `{"resourceType":"OperationOutcome"}`, 410)
		default:
			w.Header().Set("ETag", etag(cur.vid))
			io.WriteString(w, cur.body)
		}
		return
	}
	live := ok && !cur.deleted
	if m := r.Header.Get("If-Match"); m != "" && (!ok || m != etag(cur.vid)) {
		http.Error(w, `{"resourceType":"OperationOutcome","issue":[{"code":"conflict"}]}`, 412)
		return
	}
	if r.Header.Get("If-None-Match") == "*" && live {
		http.Error(w, `{"resourceType":"OperationOutcome","issue":[{"code":"conflict"}]}`, 412)
		return
	}
	if r.Header.Get("Idempotency-Key") == "" {
		http.Error(w, "no Idempotency-Key", 400)
		return
	}
	next := fakeVersion{vid: cur.vid + 1}
	if r.Method == "DELETE" {
		next.deleted = true
	} else {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		m["meta"] = map[string]any{"versionId": fmt.Sprint(next.vid), "lastUpdated": "2026-11-26T20:00:00Z"}
		out, _ := json.Marshal(m)
		next.body = string(out)
	}
	f.cur[id] = next
	f.writes = append(f.writes, r.Method+" "+id)
	w.Header().Set("ETag", etag(next.vid))
	w.WriteHeader(200)
}

func patient(id, family string, vid int) string {
	return fmt.Sprintf(`{"resourceType":"Patient","id":%q,"meta":{"versionId":"%d","lastUpdated":"2026-11-26T19:00:00Z"},"name":[{"family":%q}]}`, id, vid, family)
}

// TestRecoveryPlanAndReapply: the plan reads each lost resource on the
// primary (create when absent, update/delete on the base version, present
// when the primary holds the same content, conflict when it changed);
// ApplyRecovery writes only the planned items with their guards, and a
// second call (an activity retry) writes nothing more.
func TestRecoveryPlanAndReapply(t *testing.T) {
	lost := []map[string]any{
		{"resource_type": "Patient", "id": "new", "base_version": 0, "version": 1, "interaction": "create", "lsn": 11, "resource": json.RawMessage(patient("new", "Lost", 1))},
		{"resource_type": "Patient", "id": "upd", "base_version": 2, "version": 3, "interaction": "update", "lsn": 12, "resource": json.RawMessage(patient("upd", "Lost", 3))},
		{"resource_type": "Patient", "id": "del", "base_version": 1, "version": 2, "interaction": "delete", "lsn": 13},
		{"resource_type": "Patient", "id": "same", "base_version": 0, "version": 1, "interaction": "create", "lsn": 14, "resource": json.RawMessage(patient("same", "Both", 1))},
		{"resource_type": "Patient", "id": "moved", "base_version": 1, "version": 2, "interaction": "update", "lsn": 15, "resource": json.RawMessage(patient("moved", "Lost", 2))},
		{"resource_type": "Patient", "id": "taken", "base_version": 0, "version": 1, "interaction": "create", "lsn": 16, "resource": json.RawMessage(patient("taken", "Lost", 1))},
		{"resource_type": "Patient", "id": "brief", "base_version": 0, "version": 2, "interaction": "none", "lsn": 17},
	}
	report, _ := json.Marshal(map[string]any{"name": "r1", "report": map[string]any{"kept_up_to_lsn": 10, "first_quarantined_lsn": 11, "last_quarantined_lsn": 17},
		"lost_resources": lost, "other_records_per_database": map[string]int{"records": 2}})
	fhir := &fakeFHIR{cur: map[string]fakeVersion{
		"upd":   {vid: 2, body: patient("upd", "Kept", 2)},
		"del":   {vid: 1, body: patient("del", "Kept", 1)},
		"same":  {vid: 4, body: patient("same", "Both", 4)},
		"moved": {vid: 5, body: patient("moved", "Newer", 5)},
		"taken": {vid: 1, body: patient("taken", "Other", 1)},
	}}
	var recovery []byte
	a := fakeMembers(t, map[string]http.HandlerFunc{
		"a": func(w http.ResponseWriter, r *http.Request) {
			switch r.Method + " " + r.URL.Path {
			case "GET /admin/quarantine":
				io.WriteString(w, `{"reports":[{"name":"r1"}]}`)
			case "GET /admin/quarantine/r1":
				w.Write(report)
			case "PUT /admin/quarantine/r1/recovery":
				recovery, _ = io.ReadAll(r.Body)
				io.WriteString(w, `{}`)
			default:
				http.NotFound(w, r)
			}
		},
		"b": fhir.serve,
	})
	ctx := context.Background()
	lj, err := a.ReadLostJournal(ctx, "records", "a", "")
	if err != nil {
		t.Fatal(err)
	}
	if lj.Report != "r1" || len(lj.Lost) != 7 || lj.Other["records"] != 2 || lj.Lost[0].SHA256 == "" || lj.Lost[2].SHA256 != "" {
		t.Fatalf("lost journal %+v", lj)
	}
	plan, err := a.PlanRecovery(ctx, "records", "a", "r1", "b")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, it := range plan.Items {
		got = append(got, it.Action+" "+it.ID)
	}
	want := "create new,update upd,delete del,present same,conflict moved,conflict taken,none brief"
	if strings.Join(got, ",") != want {
		t.Fatalf("plan %v\nwant %s", got, want)
	}
	if len(fhir.writes) != 0 {
		t.Fatalf("planning wrote %v", fhir.writes)
	}
	if d := plan.Digest(); d == "" || d != plan.Digest() {
		t.Fatal("plan digest")
	}

	// Between plan and re-apply, someone updates "upd": it becomes a
	// conflict, not an overwrite.
	fhir.cur["upd"] = fakeVersion{vid: 3, body: patient("upd", "Racer", 3)}
	var todo []RecoveryItem
	for _, it := range plan.Items {
		if it.Applies() {
			todo = append(todo, it)
		}
	}
	out, err := a.ApplyRecovery(ctx, "records", "a", "r1", "b", "run-1", todo)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	for _, o := range out {
		got = append(got, o.Outcome+" "+o.Ref)
	}
	if strings.Join(got, ",") != "applied Patient/new,conflict Patient/upd,applied Patient/del" {
		t.Fatalf("outcomes %v", got)
	}
	if strings.Join(fhir.writes, ",") != "PUT new,DELETE del" || !strings.Contains(fhir.cur["new"].body, "Lost") || !fhir.cur["del"].deleted || !strings.Contains(fhir.cur["upd"].body, "Racer") {
		t.Fatalf("writes %v, state %+v", fhir.writes, fhir.cur)
	}
	// A retry of the activity writes nothing more.
	out, err = a.ApplyRecovery(ctx, "records", "a", "r1", "b", "run-1", todo)
	if err != nil {
		t.Fatal(err)
	}
	if len(fhir.writes) != 2 || out[0].Outcome != OutcomePresent || out[2].Outcome != OutcomePresent {
		t.Fatalf("retry: writes %v, outcomes %+v", fhir.writes, out)
	}
	// A report whose body no longer matches the plan is refused.
	bad := todo[0]
	bad.SHA256 = "00"
	if _, err := a.ApplyRecovery(ctx, "records", "a", "r1", "b", "run-1", []RecoveryItem{bad}); err == nil || !strings.Contains(err.Error(), "differs from the approved plan") {
		t.Fatalf("changed body: %v", err)
	}
	if err := a.MarkRecovered(ctx, "records", "a", "r1", QuarantineRecovery{By: "ops", Workflow: "run-1", Primary: "b", Applied: 2}); err != nil || !strings.Contains(string(recovery), `"by":"ops"`) {
		t.Fatalf("mark: %v %s", err, recovery)
	}
}

// TestReadLostJournalPicksTheNewestUnrecovered: without a name, the newest
// report not recovered yet; none left is a non-retryable refusal.
func TestReadLostJournalPicksTheNewestUnrecovered(t *testing.T) {
	list := `{"reports":[{"name":"r3","recovery":{"by":"ops"}},{"name":"r2"},{"name":"r1"}]}`
	a := fakeMembers(t, map[string]http.HandlerFunc{"a": func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/admin/quarantine":
			io.WriteString(w, list)
		case "/admin/quarantine/r2":
			io.WriteString(w, `{"name":"r2","lost_resources":[]}`)
		default:
			http.Error(w, `{"error":"no quarantine report"}`, 404)
		}
	}})
	lj, err := a.ReadLostJournal(context.Background(), "records", "a", "")
	if err != nil || lj.Report != "r2" {
		t.Fatalf("%+v %v", lj, err)
	}
	if _, err := a.ReadLostJournal(context.Background(), "records", "a", "nope"); err == nil || !strings.Contains(err.Error(), "no quarantine report") {
		t.Fatalf("unknown report: %v", err)
	}
	list = `{"reports":[{"name":"r3","recovery":{"by":"ops"}}]}`
	if _, err := a.ReadLostJournal(context.Background(), "records", "a", ""); err == nil || !strings.Contains(err.Error(), "not recovered yet") {
		t.Fatalf("all recovered: %v", err)
	}
}
