package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
)

func TestDecide(t *testing.T) {
	up := func(name, status string, epoch uint64) MemberStatus {
		return MemberStatus{Member: name, Role: "failover", URL: "https://" + name, Status: status, Epoch: epoch}
	}
	down := func(name string) MemberStatus { return MemberStatus{Member: name, Err: "unreachable"} }
	for _, tc := range []struct {
		name        string
		members     []MemberStatus
		highest     uint64
		wantPrimary string
		wantEpoch   uint64
	}{
		{"steady", []MemberStatus{up("a", "primary", 1), up("b", "backup", 1)}, 0, "a", 1},
		{"primary killed, backup not yet promoted", []MemberStatus{down("a"), up("b", "backup", 1)}, 1, "", 1},
		{"backup promoted", []MemberStatus{down("a"), up("b", "primary", 2)}, 1, "b", 2},
		{"old primary still claims an old epoch", []MemberStatus{up("a", "primary", 1), up("b", "primary", 2)}, 1, "b", 2},
		{"old primary claims, new one unreachable: the gateway saw epoch 2", []MemberStatus{up("a", "primary", 1), down("b")}, 2, "", 2},
		{"two claims at the same epoch: none", []MemberStatus{up("a", "primary", 3), up("b", "primary", 3)}, 3, "", 3},
		{"in-trouble is not primary", []MemberStatus{up("a", "in-trouble", 1), up("b", "backup", 1)}, 1, "", 1},
		{"the epoch never goes down", []MemberStatus{up("a", "primary", 4)}, 5, "", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Decide("records", tc.members, tc.highest)
			if v.Primary != tc.wantPrimary || v.Epoch != tc.wantEpoch {
				t.Fatalf("primary %q epoch %d (%s), want %q epoch %d", v.Primary, v.Epoch, v.Reason, tc.wantPrimary, tc.wantEpoch)
			}
			if v.Primary == "" && v.Reason == "" {
				t.Fatal("no primary and no reason")
			}
		})
	}
}

func TestReadTarget(t *testing.T) {
	now := time.Unix(1000, 0)
	async := func(name, role, transfer string, behind float64, epoch uint64, age time.Duration) MemberStatus {
		return MemberStatus{Member: name, Role: role, URL: "https://" + name, Status: "async", Epoch: epoch,
			Transfer: &Transfer{Status: transfer, BehindSeconds: behind}, PolledAt: now.Add(-age)}
	}
	for _, tc := range []struct {
		name   string
		m      []MemberStatus
		maxLag time.Duration
		want   string
	}{
		{"caught-up reporting", []MemberStatus{async("r", "reporting", "caught-up", 0, 2, 100*time.Millisecond)}, 5 * time.Second, "r"},
		{"behind within bound", []MemberStatus{async("r", "reporting", "behind", 3, 2, 500*time.Millisecond)}, 5 * time.Second, "r"},
		{"behind beyond bound", []MemberStatus{async("r", "reporting", "behind", 6, 2, 0)}, 5 * time.Second, ""},
		{"old reading counts as lag", []MemberStatus{async("r", "dr", "caught-up", 0, 2, 6*time.Second)}, 5 * time.Second, ""},
		{"disconnected", []MemberStatus{async("r", "reporting", "disconnected", 0, 2, 0)}, 5 * time.Second, ""},
		{"following an old epoch", []MemberStatus{async("r", "reporting", "caught-up", 0, 1, 0)}, 5 * time.Second, ""},
		{"least lag wins", []MemberStatus{async("r1", "reporting", "behind", 2, 2, 0), async("r2", "dr", "caught-up", 0, 2, 0)}, 5 * time.Second, "r2"},
		{"failover members never serve stale reads", []MemberStatus{{Member: "b", Role: "failover", Status: "backup", Epoch: 2}}, time.Hour, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := TierView{Epoch: 2, Members: tc.m}
			a, ok := v.ReadTarget(tc.maxLag, now)
			if got := map[bool]string{true: a.Member}[ok]; got != tc.want {
				t.Fatalf("read target %q, want %q", got, tc.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	for _, tc := range []struct {
		method, path string
		h            http.Header
		want         retryClass
	}{
		{"GET", "/fhir/Patient/1", h(), retrySafe},
		{"HEAD", "/fhir/Patient/1", h(), retrySafe},
		{"PUT", "/fhir/Patient/1", h(), retrySafe},
		{"PUT", "/fhir/Patient/1", h("If-Match", `W/"1"`), retrySafe},
		{"DELETE", "/fhir/Patient/1", h("If-Match", `W/"2"`), retrySafe},
		{"POST", "/fhir/Patient", h("If-None-Exist", "identifier=x|1"), retrySafe},
		{"POST", "/fhir/Patient", h("Idempotency-Key", "k"), retrySafe},
		{"POST", "/fhir", h("Idempotency-Key", "tx"), retrySafe},
		{"POST", "/fhir/Patient/_search", h(), retrySafe},
		{"POST", "/fhir/Patient", h(), retryIfUnsent},
		{"POST", "/fhir", h(), retryIfUnsent},
		{"PATCH", "/fhir/Patient/1", h(), retryIfUnsent},
	} {
		if got := classify(tc.method, tc.path, tc.h); got != tc.want {
			t.Errorf("%s %s %v: %s, want %s", tc.method, tc.path, tc.h, got, tc.want)
		}
	}
}

func TestParseRedisURL(t *testing.T) {
	for _, tc := range []struct {
		url                string
		addrs              int
		master             string
		cluster, wantError bool
	}{
		{"redis://127.0.0.1:6379/2", 1, "", false, false},
		{"redis-sentinel://s1:26379?addr=s2:26379&master_name=mymaster", 2, "mymaster", false, false},
		{"redis-sentinel://s1:26379", 0, "", false, true},
		{"redis-cluster://n1:7000?addr=n2:7000&addr=n3:7000", 3, "", true, false},
		{"http://x", 0, "", false, true},
		{"redis-foo://x:1", 0, "", false, true},
	} {
		o, err := ParseRedisURL(tc.url)
		if (err != nil) != tc.wantError {
			t.Errorf("%s: error %v", tc.url, err)
			continue
		}
		if err == nil && (len(o.Addrs) != tc.addrs || o.MasterName != tc.master || o.IsClusterMode != tc.cluster) {
			t.Errorf("%s: %+v", tc.url, o)
		}
	}
}

func TestParseMaxLag(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "5": 5 * time.Second, "5s": 5 * time.Second, "250ms": 250 * time.Millisecond} {
		if got, err := ParseMaxLag(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"soon", "-1s"} {
		if _, err := ParseMaxLag(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	f := &cluster.File{Tiers: []cluster.Tier{{Name: "records"}, {Name: "labs"}}}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // part of the error; "" for none
	}{
		{"minimal", Config{Cluster: f}, ""},
		{"no cluster", Config{}, "--cluster"},
		{"unknown default tier", Config{Cluster: f, DefaultTier: "nope"}, "--default-tier"},
		{"rate limit needs Redis", Config{Cluster: f, RateLimit: 10}, "--rate-limit needs --redis"},
		{"bad Redis URL", Config{Cluster: f, RedisURL: "http://x"}, "--redis"},
		{"Sentinel without master", Config{Cluster: f, RedisURL: "redis-sentinel://s:26379"}, "master_name"},
		{"Temporal address", Config{Cluster: f, TemporalAddress: "127.0.0.1:7233"}, ""},
		{"Temporal address without port", Config{Cluster: f, TemporalAddress: "temporal"}, "--temporal-address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.SetDefaults()
			err := tc.cfg.Validate()
			if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	c := Config{Cluster: &cluster.File{Tiers: []cluster.Tier{{Name: "only"}}}}
	c.SetDefaults()
	if c.DefaultTier != "only" {
		t.Fatalf("default tier %q, want the only tier", c.DefaultTier)
	}
}
