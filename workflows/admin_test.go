package workflows

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/tandemhealth/tandem/mirror/cluster"
)

// fakeMembers serves a and b's admin APIs from one handler per member.
func fakeMembers(t *testing.T, handlers map[string]http.HandlerFunc) *Admin {
	t.Helper()
	f := &cluster.File{Tiers: []cluster.Tier{{Name: "records"}}}
	var client *http.Client
	for _, name := range []string{"a", "b"} {
		srv := httptest.NewTLSServer(handlers[name])
		t.Cleanup(srv.Close)
		client = srv.Client() // every httptest TLS server shares one certificate
		f.Tiers[0].Members = append(f.Tiers[0].Members, cluster.Member{Name: name, Role: cluster.RoleFailover, HTTP: strings.TrimPrefix(srv.URL, "https://")})
	}
	return &Admin{File: f, HTTP: client}
}

type calls struct {
	mu  sync.Mutex
	got []string
}

func (c *calls) add(r *http.Request) {
	c.mu.Lock()
	c.got = append(c.got, r.Method+" "+r.URL.Path)
	c.mu.Unlock()
}

func (c *calls) String() string { c.mu.Lock(); defer c.mu.Unlock(); return strings.Join(c.got, ", ") }

func TestRequestPlannedFailover(t *testing.T) {
	status := func(st string, epoch int) string {
		return fmt.Sprintf(`{"member":"a","status":%q,"epoch":%d}`, st, epoch)
	}
	for _, tc := range []struct {
		name      string
		status    string
		code      int
		body      string
		wantType  string
		wantMsgs  []string
		wantCalls string
	}{
		{"accepted", status("primary", 1), 202, `{"status":"draining"}`, "", nil,
			"GET /mirror/status, POST /admin/planned-failover"},
		{"gate messages under deny, sorted", status("primary", 1), 409, `{"error":"policy refused","deny":["b: users not aligned","b: database audit missing"]}`,
			ErrGateRefused, []string{"b: database audit missing", "b: users not aligned"}, "GET /mirror/status, POST /admin/planned-failover"},
		{"gate messages under messages", status("primary", 1), 409, `{"error":"refused","messages":["b: journal format 3 cannot read 4"]}`,
			ErrGateRefused, []string{"b: journal format 3 cannot read 4"}, "GET /mirror/status, POST /admin/planned-failover"},
		{"a refusal with only an error", status("primary", 1), 409, `{"error":"planned failover starts on the primary"}`,
			ErrGateRefused, []string{"planned failover starts on the primary"}, "GET /mirror/status, POST /admin/planned-failover"},
		{"already draining: not sent again", status("transition", 1), 0, "", "", nil, "GET /mirror/status"},
		{"already handed over: not sent again", status("backup", 2), 0, "", "", nil, "GET /mirror/status"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c calls
			a := fakeMembers(t, map[string]http.HandlerFunc{"a": func(w http.ResponseWriter, r *http.Request) {
				c.add(r)
				if r.Method == "GET" {
					w.Write([]byte(tc.status))
					return
				}
				w.WriteHeader(tc.code)
				w.Write([]byte(tc.body))
			}})
			err := a.RequestPlannedFailover(context.Background(), "records", "a", 1)
			if c.String() != tc.wantCalls {
				t.Fatalf("calls %q, want %q", c.String(), tc.wantCalls)
			}
			if tc.wantType == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) || appErr.Type() != tc.wantType || !appErr.NonRetryable() {
				t.Fatalf("error %v", err)
			}
			var refusal GateRefusal
			if err := appErr.Details(&refusal); err != nil {
				t.Fatal(err)
			}
			if strings.Join(refusal.Messages, "|") != strings.Join(tc.wantMsgs, "|") || refusal.Member != "a" {
				t.Fatalf("refusal %+v", refusal)
			}
		})
	}
}

func TestWriteRecordGoesToThePrimary(t *testing.T) {
	var c calls
	var body string
	a := fakeMembers(t, map[string]http.HandlerFunc{
		"a": func(w http.ResponseWriter, r *http.Request) {
			c.add(r)
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":"not the primary"}`))
		},
		"b": func(w http.ResponseWriter, r *http.Request) {
			c.add(r)
			data, _ := io.ReadAll(r.Body)
			body = string(data)
			w.Write([]byte(`{"lsn":9}`))
		},
	})
	rec := Record{Key: RecordKey("PlannedFailover", "records", "run1", "done"), Event: "done", Result: "handed over"}
	if err := a.WriteRecord(context.Background(), "records", rec); err != nil {
		t.Fatal(err)
	}
	want := "PUT /admin/kv/system/workflow/PlannedFailover/records/run1/done"
	if c.String() != want+", "+want {
		t.Fatalf("calls %s", c.String())
	}
	if !strings.Contains(body, `"result":"handed over"`) {
		t.Fatalf("body %s", body)
	}
}

func TestForcePromoteIsIdempotent(t *testing.T) {
	var c calls
	a := fakeMembers(t, map[string]http.HandlerFunc{"a": func(w http.ResponseWriter, r *http.Request) {
		c.add(r)
		w.Write([]byte(`{"status":"primary","epoch":3}`))
	}})
	if err := a.ForcePromote(context.Background(), "records", "a", 2, "epoch 3, loss 5-9", 3); err != nil {
		t.Fatal(err)
	}
	if c.String() != "GET /mirror/status" {
		t.Fatalf("a promoted member was promoted again: %s", c.String())
	}
}

func TestForcePromoteRefusalIsNotRetried(t *testing.T) {
	a := fakeMembers(t, map[string]http.HandlerFunc{"a": func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" {
			w.Write([]byte(`{"status":"backup","epoch":2}`))
			return
		}
		w.WriteHeader(http.StatusConflict)
		w.Write([]byte(`{"error":"confirmation does not match the current preview"}`))
	}})
	err := a.ForcePromote(context.Background(), "records", "a", 2, "epoch 3, loss 5-9", 3)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrPromotionRefused || !appErr.NonRetryable() {
		t.Fatalf("error %v", err)
	}
}
