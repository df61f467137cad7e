package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `
tls: {dev_ca_dir: /tmp/ca}
arbiter: {address: "127.0.0.1:7500", data_dir: /tmp/arb}
tiers:
  - name: records
    members:
      - {name: a, role: failover, address: "127.0.0.1:7411", http: "127.0.0.1:7401", data_dir: /tmp/a, agent: {address: "127.0.0.1:7421"}}
      - {name: b, role: failover, address: "127.0.0.1:7412", http: "127.0.0.1:7402", data_dir: /tmp/b, agent: {address: "127.0.0.1:7422"}}
    links:
      a->b: "127.0.0.1:9001"
`

func TestParseDefaultsAndLinks(t *testing.T) {
	f, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(f.QoS) != DefaultQoS {
		t.Fatalf("qos %v", time.Duration(f.QoS))
	}
	for _, c := range []struct{ from, to, want string }{
		{"a", "b", "127.0.0.1:9001"}, // overridden: through the fault proxy
		{"b", "a", "127.0.0.1:7411"},
		{"a", "arbiter", "127.0.0.1:7500"},
		{"b", "agent-a", "127.0.0.1:7421"},
	} {
		got, err := f.DialAddress("records", c.from, c.to)
		if err != nil || got != c.want {
			t.Errorf("%s->%s = %q %v, want %q", c.from, c.to, got, err, c.want)
		}
	}
}

func TestJournalSectionDefaultsAndValues(t *testing.T) {
	f, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	j := f.Journal
	if j.SegmentSize != DefaultSegmentSize || time.Duration(j.AsyncRetention) != 14*24*time.Hour || j.MaxBytes != 0 || time.Duration(j.PurgeInterval) != time.Minute {
		t.Fatalf("defaults %+v", j)
	}
	f, err = Parse([]byte(strings.Replace(good, "tls:", "journal: {segment_size: 2097152, async_retention: 3s, max_bytes: 8388608, purge_interval: 500ms}\ntls:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	j = f.Journal
	if j.SegmentSize != 2<<20 || time.Duration(j.AsyncRetention) != 3*time.Second || j.MaxBytes != 8<<20 || time.Duration(j.PurgeInterval) != 500*time.Millisecond {
		t.Fatalf("values %+v", j)
	}
}

func TestAccessSection(t *testing.T) {
	f, err := Parse([]byte(strings.Replace(good, "tls:", "access:\n  issuer: tandem\n  leeway: 10s\n  keys:\n    - {kid: k1, alg: HS256, path: /k1}\n    - {kid: k2, alg: ES256, path: /k2.pem}\n  signing_key: k2\n  token_ttl: 10m\ntls:", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Access.Keys) != 2 || f.Access.Keys[1].Alg != "ES256" || time.Duration(f.Access.Leeway) != 10*time.Second || f.Access.Issuer != "tandem" ||
		f.Access.SigningKey != "k2" || time.Duration(f.Access.TokenTTL) != 10*time.Minute {
		t.Fatalf("access %+v", f.Access)
	}
}

func TestShippedExamplesLoad(t *testing.T) {
	files, _ := filepath.Glob("../../deploy/examples/cluster-*.yaml")
	if len(files) < 2 {
		t.Fatalf("examples not found: %v", files)
	}
	for _, p := range files {
		if _, err := Load(p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestBadFilesNameTheField: every mistake stops the load with its field.
func TestBadFilesNameTheField(t *testing.T) {
	cases := []struct{ name, from, to, field string }{
		{"qos unit", "tls:", "qos: 2\ntls:", "field qos"},
		{"qos too small", "tls:", "qos: 1ms\ntls:", "field qos"},
		{"no tls", "tls: {dev_ca_dir: /tmp/ca}", "", "field tls"},
		{"both tls", "dev_ca_dir: /tmp/ca}", "dev_ca_dir: /tmp/ca, ca_file: /x}", "field tls"},
		{"arbiter address", `address: "127.0.0.1:7500"`, `address: "nowhere"`, "field arbiter.address"},
		{"member role", "{name: b, role: failover", "{name: b, role: primary", "field tiers[0].members[1].role"},
		{"one failover", "{name: b, role: failover", "{name: b, role: dr", "field tiers[0].members"},
		{"duplicate name", "{name: b,", "{name: a,", "field tiers[0].members[1].name"},
		{"address reused", `"127.0.0.1:7412"`, `"127.0.0.1:7411"`, "field tiers[0].members[1].address"},
		{"missing data dir", "data_dir: /tmp/b, ", "", "field tiers[0].members[1].data_dir"},
		{"arbiter http", "data_dir: /tmp/arb}", `data_dir: /tmp/arb, http: "7501"}`, "field arbiter.http"},
		{"agent http reused", `agent: {address: "127.0.0.1:7422"}`, `agent: {address: "127.0.0.1:7422", http: "127.0.0.1:7402"}`, "field tiers[0].members[1].agent.http"},
		{"bad link", "a->b:", "a-b:", "links[\"a-b\"]"},
		{"link to nobody", "a->b:", "a->z:", "unknown target"},
		{"unknown key", "arbiter:", "arbitr:", "arbitr"},
		{"tier name", "name: records", "name: Records", "field tiers[0].name"},
		{"access alg", "tls:", "access: {keys: [{kid: k1, alg: none, path: /k}]}\ntls:", "field access.keys[0].alg"},
		{"access kid", "tls:", "access: {keys: [{alg: HS256, path: /k}]}\ntls:", "field access.keys[0].kid"},
		{"access path", "tls:", "access: {keys: [{kid: k1, alg: HS256}]}\ntls:", "field access.keys[0].path"},
		{"access kid twice", "tls:", "access: {keys: [{kid: k1, alg: HS256, path: /a}, {kid: k1, alg: ES256, path: /b}]}\ntls:", "field access.keys[1].kid"},
		{"signing key unknown", "tls:", "access: {keys: [{kid: k1, alg: HS256, path: /a}], signing_key: k2}\ntls:", "field access.signing_key"},
		{"token ttl too long", "tls:", "access: {keys: [{kid: k1, alg: HS256, path: /a}], signing_key: k1, token_ttl: 48h}\ntls:", "field access.token_ttl"},
		{"lockout after negative", "tls:", "access: {lockout_after: -1}\ntls:", "field access.lockout_after"},
		{"temporal address", "tls:", "temporal: {address: nowhere}\ntls:", "field temporal.address"},
		{"temporal cert without key", "tls:", "temporal: {tls: {enabled: true, cert_file: /c}}\ntls:", "field temporal.tls"},
		{"temporal ca without tls", "tls:", "temporal: {tls: {ca_file: /ca}}\ntls:", "field temporal.tls.enabled"},
		{"temporal api key in clear", "tls:", "temporal: {api_key_file: /k}\ntls:", "field temporal.api_key_file"},
		{"lockout for too long", "tls:", "access: {lockout_for: 100h}\ntls:", "field access.lockout_for"},
		{"access unknown key", "tls:", "access:\n  keys:\n    - {kid: k1, alg: HS256, file: /k}\ntls:", "field access.keys[0]"},
		{"segment size too small", "tls:", "journal: {segment_size: 4096}\ntls:", "field journal.segment_size"},
		{"retention unit", "tls:", "journal: {async_retention: 14}\ntls:", "field journal.async_retention"},
		{"retention too short", "tls:", "journal: {async_retention: 10ms}\ntls:", "field journal.async_retention"},
		{"max bytes negative", "tls:", "journal: {max_bytes: -1}\ntls:", "field journal.max_bytes"},
		{"max bytes below two segments", "tls:", "journal: {segment_size: 1048576, max_bytes: 1048576}\ntls:", "field journal.max_bytes"},
		{"purge interval too long", "tls:", "journal: {purge_interval: 2h}\ntls:", "field journal.purge_interval"},
		{"journal unknown key", "tls:", "journal: {retention: 1h}\ntls:", "retention"},
		{"member in two tiers", "    links:", `  - name: labs
    members:
      - {name: a, role: failover, address: "127.0.0.1:8411", http: "127.0.0.1:8401", data_dir: /tmp/la, agent: {address: "127.0.0.1:8421"}}
      - {name: lb, role: failover, address: "127.0.0.1:8412", http: "127.0.0.1:8402", data_dir: /tmp/lb, agent: {address: "127.0.0.1:8422"}}
    links:`, "field tiers[1].members[0].name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(good, c.from) {
				t.Fatalf("test bug: %q not in the good file", c.from)
			}
			_, err := Parse([]byte(strings.Replace(good, c.from, c.to, 1)))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.field) {
				t.Fatalf("error does not name %q:\n%v", c.field, err)
			}
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "cluster.yaml")
	os.WriteFile(p, []byte("qos: soon\n"), 0o600)
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "field qos") {
		t.Fatalf("error %v", err)
	}
}
