package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDisabledSearchParametersAreMirrored (issue 7): disabling a search
// parameter on the tier (tandem ctl search-params) stores the list in the
// mirrored system database and reindexes: the primary refuses it under
// strict handling and no longer lists it in /metadata, the backup holds
// the same list; enabling it again reindexes and the search finds the
// resource again.
func TestDisabledSearchParametersAreMirrored(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	tr := startTier(t)
	ctx := context.Background()
	if err := tr.client.Do(ctx, "PUT", "a", "/fhir/Patient/sp-1", []byte(`{"resourceType":"Patient","id":"sp-1","name":[{"family":"Quokka"}]}`), nil); err != nil {
		t.Fatal(err)
	}
	search := func(member string, strict bool) (int, string) {
		base, _ := tr.client.MemberURL(member)
		req, _ := http.NewRequest("GET", base+"/fhir/Patient?family=Quokka", nil)
		if strict {
			req.Header.Set("Prefer", "handling=strict")
		}
		resp, err := tr.client.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	matches := func(body string) int {
		var bundle struct{ Entry []any }
		json.Unmarshal([]byte(body), &bundle)
		return len(bundle.Entry)
	}
	if code, body := search("a", true); code != 200 || matches(body) != 1 {
		t.Fatalf("family search before: %d %.300s", code, body)
	}

	out := tr.mustCtl("search-params", "records", "--disable", "Patient.family")
	if !strings.Contains(out, "not indexed: Patient.family") || !strings.Contains(out, "reindexed") {
		t.Fatalf("search-params --disable:\n%s", out)
	}
	if code, body := search("a", true); code != 400 || !strings.Contains(body, "family") {
		t.Fatalf("a disabled parameter under strict handling: %d %.300s", code, body)
	}
	var meta struct {
		Rest []struct {
			Resource []struct {
				Type        string
				SearchParam []struct{ Name string }
			}
		}
	}
	if err := tr.client.Do(ctx, "GET", "a", "/fhir/metadata", nil, &meta); err != nil {
		t.Fatal(err)
	}
	for _, r := range meta.Rest[0].Resource {
		for _, p := range r.SearchParam {
			if r.Type == "Patient" && p.Name == "family" {
				t.Fatal("/metadata still lists Patient.family")
			}
		}
	}
	tr.waitFor("the list mirrored to b", 10*time.Second, func() bool {
		var got struct{ Disabled []string }
		return tr.client.Do(ctx, "GET", "b", "/admin/search/disabled", nil, &got) == nil && len(got.Disabled) == 1 && got.Disabled[0] == "Patient.family"
	})

	if out, err := tr.ctlRun("search-params", "records", "--disable", "Patient.nonsense"); err == nil || !strings.Contains(err.Error(), "not a search parameter") {
		t.Fatalf("an unknown parameter: %v\n%s", err, out)
	}
	tr.mustCtl("search-params", "records", "--enable-all")
	if code, body := search("a", true); code != 200 || matches(body) != 1 {
		t.Fatalf("family search after enabling it again: %d %.300s", code, body)
	}
}
