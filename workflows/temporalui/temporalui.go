// Package temporalui serves the Temporal Web UI (github.com/temporalio/
// ui-server, its assets embedded) beside the embedded Temporal server, so an
// administrator can watch Tandem's workflows — MirrorSetup, PlannedFailover,
// ConfigSync and the DriftCheck schedule — in the browser.
//
// It is for the development and single-host setups `tandem temporal`
// serves: plain HTTP on a loopback address, no login, like Temporal's own
// development server. Against a production Temporal cluster, run that
// cluster's UI with its authentication instead.
package temporalui

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
)

// Server is a running Web UI.
type Server struct {
	ui   *uiserver.Server
	addr string
	done chan error
}

// Start serves the UI on 127.0.0.1:port for the Temporal frontend at
// frontend (host:port), opening on namespace. It returns once the UI
// answers, or with the reason it could not start.
func Start(port int, frontend, namespace string) (*Server, error) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// ui-server exits the process when it cannot listen: find out first.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("temporal web UI: %w (flag --ui-port)", err)
	}
	ln.Close()
	cfg := &uiconfig.Config{
		Host:                "127.0.0.1",
		Port:                port,
		TemporalGRPCAddress: frontend,
		EnableUI:            true,
		DefaultNamespace:    namespace,
		DisableNewsFetch:    true, // no calls out of the machine
		NotifyOnNewVersion:  false,
		HideLogs:            true,
		CORS:                uiconfig.CORS{CookieInsecure: true}, // plain HTTP on loopback
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("temporal web UI: %w", err)
	}
	s := &Server{ui: uiserver.NewServer(uioptions.WithConfigProvider(cfg)), addr: addr, done: make(chan error, 1)}
	go func() { s.done <- s.ui.Start() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return s, nil
		}
		select {
		case err := <-s.done:
			return nil, errors.Join(errors.New("temporal web UI stopped while starting"), err)
		default:
		}
		if time.Now().After(deadline) {
			s.ui.Stop()
			return nil, fmt.Errorf("temporal web UI: not answering on %s after 10s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL is where to point a browser.
func (s *Server) URL() string { return "http://" + s.addr }

// Stop closes the UI.
func (s *Server) Stop() { s.ui.Stop() }
