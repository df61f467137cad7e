package configsync

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type mapGetter map[string][]byte

func (m mapGetter) Get(db string, key []byte) ([]byte, bool, error) {
	v, ok := m[db+"/"+string(key)]
	return v, ok, nil
}

func desiredWith(t *testing.T, docs map[string]string) State {
	t.Helper()
	g := mapGetter{}
	for c, raw := range docs {
		doc, err := Prepare(c, []byte(raw))
		if err != nil {
			t.Fatalf("prepare %s: %v", c, err)
		}
		b, _ := json.Marshal(Document{Category: c, Version: 1, Doc: doc})
		g[SystemDatabase+"/"+string(DesiredKey(c))] = b
	}
	st, err := ReadDesired(g)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestPrepareHashesPasswordsAndNeverKeepsThem(t *testing.T) {
	doc, err := Prepare(Users, []byte(`[{"name":"bob","password":"s3cret-pass","enabled":true,"api_clients":[{"id":"app","secret":"xyz","enabled":true}]}]`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(doc), "s3cret-pass") || strings.Contains(string(doc), `"xyz"`) || !strings.Contains(string(doc), "$2a$") {
		t.Fatalf("clear-text secret kept or not hashed: %s", doc)
	}
	c, _ := Canonical(Users, doc)
	if strings.Contains(string(c), "$2a$") {
		t.Fatalf("canonical form holds the bcrypt hash itself: %s", c)
	}
}

func TestPrepareRejects(t *testing.T) {
	for name, tc := range map[string][2]string{
		"unknown field":  {Users, `[{"name":"a","enabeld":true}]`},
		"duplicate user": {Users, `[{"name":"a"},{"name":"a"}]`},
		"bad scope":      {Roles, `[{"name":"r","scopes":["everything"]}]`},
		"bad tls":        {Security, `{"tls":{"min_version":"1.0"}}`},
		"bad ca":         {Security, `{"tls":{"ca_fingerprint":"zz"}}`},
		"bad category":   {"config", `{}`},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Prepare(tc[0], []byte(tc[1])); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestDigestIgnoresOrderAndHostSpecificFields(t *testing.T) {
	a, _ := Prepare(Roles, []byte(`[{"name":"b","scopes":["user/Patient.rs","patient/*.rs"]},{"name":"a"}]`))
	b, _ := Prepare(Roles, []byte(`[{"name":"a"},{"name":"b","scopes":["patient/*.rs","user/Patient.rs","patient/*.rs"]}]`))
	da, _ := Digest(Roles, a)
	db, _ := Digest(Roles, b)
	if da != db {
		t.Fatal("order changes the roles digest")
	}
	s1, _ := Prepare(Security, []byte(`{"tls":{"min_version":"1.3","cert_file":"/etc/a.pem"}}`))
	s2, _ := Prepare(Security, []byte(`{"tls":{"min_version":"1.3","cert_file":"/srv/b.pem"}}`))
	d1, _ := Digest(Security, s1)
	d2, _ := Digest(Security, s2)
	if d1 != d2 {
		t.Fatal("host-specific cert path changes the security digest")
	}
	empty, _ := Digest(Users, nil)
	emptyList, _ := Digest(Users, json.RawMessage("[]"))
	if empty != emptyList {
		t.Fatal("an unset category must equal its empty document")
	}
}

func TestApplyIsIdempotentAndDiffNamesTheChange(t *testing.T) {
	dir := t.TempDir()
	l, err := OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	enabled := desiredWith(t, map[string]string{Users: `[{"name":"carol","enabled":true,"roles":["nurse"]}]`})
	if res, err := l.Apply(enabled, Host{}); err != nil || res[0].Result != "applied" {
		t.Fatalf("first apply: %+v %v", res, err)
	}
	disabled := desiredWith(t, map[string]string{Users: `[{"name":"carol","enabled":false,"roles":["nurse"]}]`})
	diff, err := Diff(disabled, l.State())
	if err != nil {
		t.Fatal(err)
	}
	if diff[0].Aligned || len(diff[0].Changes) != 1 || diff[0].Changes[0] != "user carol: enabled true here, false desired" {
		t.Fatalf("diff: %+v", diff[0])
	}
	if !diff[1].Aligned || !diff[2].Aligned {
		t.Fatalf("untouched categories not aligned: %+v", diff)
	}
	if res, _ := l.Apply(disabled, Host{}); res[0].Result != "applied" {
		t.Fatalf("apply: %+v", res)
	}
	if res, _ := l.Apply(disabled, Host{}); res[0].Result != "unchanged" || res[1].Result != "unchanged" || res[2].Result != "unchanged" {
		t.Fatalf("second apply changed something: %+v", res)
	}
	// durable: a reopened Local holds the applied state
	l2, err := OpenLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := Diff(disabled, l2.State()); !d[0].Aligned {
		t.Fatal("applied state not durable")
	}
}

func TestApplyLeavesWhatTheHostCannotLoad(t *testing.T) {
	l, _ := OpenLocal(t.TempDir())
	fp := strings.Repeat("ab", 32)
	desired := desiredWith(t, map[string]string{
		Users:    `[{"name":"dan","enabled":true}]`,
		Security: `{"tls":{"ca_fingerprint":"` + fp + `"}}`,
	})
	res, err := l.Apply(desired, Host{CAFingerprint: strings.Repeat("cd", 32)})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Result != "applied" || res[2].Result != "failed" || !strings.Contains(res[2].Error, "cannot load") {
		t.Fatalf("results: %+v", res)
	}
	if bad := (Host{CAFingerprint: strings.Repeat("cd", 32)}).Check(desired); bad[Security] == "" || len(bad) != 1 {
		t.Fatalf("check: %v", bad)
	}
	if res, _ := l.Apply(desired, Host{CAFingerprint: fp}); res[2].Result != "applied" {
		t.Fatalf("matching CA not applied: %+v", res)
	}
}

func TestDamagedEffectiveStateIsAnError(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "effective.json"), []byte(`{"format":1,"state":{},"sha256":"00"}`), 0o600)
	if _, err := OpenLocal(dir); err == nil {
		t.Fatal("damaged effective state opened")
	}
}

func TestApplyOnlyLeavesTheOtherCategories(t *testing.T) {
	l, _ := OpenLocal(t.TempDir())
	desired := desiredWith(t, map[string]string{Users: `[{"name":"carol","enabled":true}]`, Roles: `[{"name":"nurse","scopes":["patient/*.rs"]}]`})
	res, err := l.ApplyOnly(desired, Host{}, []string{Roles})
	if err != nil || res[0].Result != "skipped" || res[1].Result != "applied" || res[2].Result != "skipped" {
		t.Fatalf("%+v %v", res, err)
	}
	d, _ := Diff(desired, l.State())
	if d[0].Aligned || !d[1].Aligned {
		t.Fatalf("users applied or roles not: %+v", d)
	}
	if res, _ := l.ApplyOnly(desired, Host{}, nil); res[0].Result != "applied" || res[1].Result != "unchanged" {
		t.Fatalf("apply of every category: %+v", res)
	}
}
