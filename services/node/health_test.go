package node_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tandemhealth/tandem/services/node"
)

// TestHealthEndpointsForLoadBalancers: /mirror/primary, /mirror/backup and
// /mirror/async answer 200 only in that state and 503 otherwise. A
// standalone node is always its own primary. (Members of a tier are
// checked in every state by cmd/tandem TestNodeHealthEndpoints.)
func TestHealthEndpointsForLoadBalancers(t *testing.T) {
	cfg := node.Config{DataDir: t.TempDir()}
	cfg.SetDefaults()
	n, err := node.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	srv := httptest.NewServer(n.Handler())
	defer srv.Close()
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/mirror/primary", http.StatusOK},
		{"/mirror/backup", http.StatusServiceUnavailable},
		{"/mirror/async", http.StatusServiceUnavailable},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("GET %s = %d, want %d", tc.path, resp.StatusCode, tc.want)
			}
		})
	}
}
