package workflows

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	configsync "github.com/tandemhealth/tandem/config-sync"
)

// configMember serves a primary's status and desired state; a PUT makes
// doc the desired users at the next version (or answers code).
type configMember struct {
	c       calls
	version uint64
	doc     json.RawMessage
	code    int
}

func (m *configMember) serve(w http.ResponseWriter, r *http.Request) {
	m.c.add(r)
	switch {
	case r.URL.Path == "/mirror/status":
		w.Write([]byte(`{"status":"primary","epoch":1}`))
	case r.Method == "GET" && r.URL.Path == "/admin/config/desired":
		json.NewEncoder(w).Encode(configsync.State{"users": {Category: "users", Version: m.version, Doc: m.doc}})
	case r.Method == "PUT":
		if m.code != 0 {
			w.WriteHeader(m.code)
			w.Write([]byte(`{"error":"desired users is at version 3, not 2: read it again"}`))
			return
		}
		m.doc, _ = io.ReadAll(r.Body)
		m.version++
		d, _ := configsync.Digest("users", m.doc)
		json.NewEncoder(w).Encode(map[string]any{"version": m.version, "digest": d})
	}
}

func TestPutDesired(t *testing.T) {
	doc := json.RawMessage(`[{"name":"dave","enabled":true}]`)
	t.Run("written once; a retry finds it written and writes nothing", func(t *testing.T) {
		m := &configMember{version: 2}
		a := fakeMembers(t, map[string]http.HandlerFunc{"a": m.serve, "b": m.serve})
		v := uint64(2)
		ch, err := a.PutDesired(context.Background(), "records", "users", doc, &v)
		if err != nil || ch.Version != 3 || ch.Unchanged || ch.Primary != "a" {
			t.Fatalf("%+v %v", ch, err)
		}
		ch, err = a.PutDesired(context.Background(), "records", "users", doc, &v)
		if err != nil || ch.Version != 3 || !ch.Unchanged {
			t.Fatalf("retry: %+v %v", ch, err)
		}
		if n := strings.Count(m.c.String(), "PUT "); n != 1 {
			t.Fatalf("%d PUTs: %s", n, m.c.String())
		}
	})
	t.Run("the desired state moved on: Conflict, not retried", func(t *testing.T) {
		m := &configMember{version: 3, doc: json.RawMessage(`[]`), code: http.StatusConflict}
		a := fakeMembers(t, map[string]http.HandlerFunc{"a": m.serve, "b": m.serve})
		v := uint64(2)
		_, err := a.PutDesired(context.Background(), "records", "users", doc, &v)
		var appErr *temporal.ApplicationError
		if !errors.As(err, &appErr) || appErr.Type() != ErrConflict || !appErr.NonRetryable() {
			t.Fatalf("error %v", err)
		}
	})
}

func TestApplyConfig(t *testing.T) {
	a := fakeMembers(t, map[string]http.HandlerFunc{
		"a": func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if string(body) != `{"categories":["users"],"versions":{"users":4}}` {
				t.Errorf("body %s", body)
			}
			w.Write([]byte(`{"member":"a","results":[{"category":"users","result":"applied","version":4},{"category":"roles","result":"skipped"}]}`))
		},
		"b": func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"member":"b","results":[{"category":"users","result":"failed","version":4,"error":"cannot load"}]}`))
		},
	})
	v := map[string]uint64{"users": 4}
	ra, err := a.ApplyConfig(context.Background(), "records", "a", v, []string{"users"})
	if err != nil || !ra.Aligned("users", 4) || ra.Aligned("users", 5) || ra.Aligned("roles", 0) {
		t.Fatalf("a: %+v %v", ra, err)
	}
	rb, err := a.ApplyConfig(context.Background(), "records", "b", v, []string{"users"})
	if err != nil || rb.Aligned("users", 4) || !strings.Contains(rb.Error, "HTTP 409") || rb.Results[0].Error != "cannot load" {
		t.Fatalf("b: %+v %v", rb, err)
	}
}
