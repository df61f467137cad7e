package gateway

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/fhir/access"
)

// fakeMonitor counts its sampling loops and answers every page request.
type fakeMonitor struct {
	running, stopped atomic.Int32
	prefix           atomic.Value
}

func (m *fakeMonitor) Handler(prefix string) http.Handler {
	m.prefix.Store(prefix)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("monitor:" + r.URL.Path)) })
}

func (m *fakeMonitor) Run(ctx context.Context, interval time.Duration) {
	m.running.Add(1)
	<-ctx.Done()
	m.stopped.Add(1)
}

var _ Monitor = (*fakeMonitor)(nil)

func TestMonitorIsServedAndSampledForTheGatewaysLifetime(t *testing.T) {
	fx := newFixture(t)
	m := &fakeMonitor{}
	// Registered first, so it runs after the gateway's own cleanup stopped it.
	t.Cleanup(func() {
		if m.stopped.Load() != 1 {
			t.Errorf("the sampler did not stop with the gateway")
		}
	})
	base, _ := fx.gateway(func(c *Config) { c.Monitor = m; c.Authenticator = denyAll{} })
	resp, body := do(t, "GET", base+"/monitor/api/state", "")
	if resp.StatusCode != 200 || body != "monitor:/monitor/api/state" || m.prefix.Load() != MonitorPrefix {
		t.Fatalf("%d %q (the page checks its own access, not the FHIR authenticator)", resp.StatusCode, body)
	}
	// The sampler is started on its own goroutine: give it a moment.
	for deadline := time.Now().Add(5 * time.Second); m.running.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if m.running.Load() != 1 || m.stopped.Load() != 0 {
		t.Fatalf("sampler running %d, stopped %d while serving", m.running.Load(), m.stopped.Load())
	}
}

func TestAdminNeedsTheAdminScope(t *testing.T) {
	k := access.Key{ID: "k", Alg: access.HS256, Secret: []byte("0123456789abcdef0123456789abcdef")}
	v, err := access.NewVerifier(access.Config{Keys: []access.Key{k}})
	if err != nil {
		t.Fatal(err)
	}
	tokens := Tokens{Verifier: v}
	for _, c := range []struct {
		role string
		ok   bool
	}{{"admin", true}, {"clinician", false}, {"", false}} {
		req, _ := http.NewRequest("GET", "/monitor/", nil)
		if c.role != "" {
			g, err := access.RoleGrant(c.role, "s", "", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := access.Mint(k, g)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if err := tokens.Admin(req); (err == nil) != c.ok {
			t.Errorf("role %q: %v", c.role, err)
		}
	}
}
