package worker

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/transport"
)

// The cluster file's temporal section gives a TLS configuration that
// completes a mutual-TLS handshake with a frontend requiring client
// certificates, checking the frontend's name; flags override address and
// namespace; bad files are named.
func TestClientOptionsFromTheClusterFile(t *testing.T) {
	dir := t.TempDir()
	ca, err := transport.EnsureDevCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := ca.Issue("frontend", "temporal.test")
	if err != nil {
		t.Fatal(err)
	}
	clientCert, err := ca.Issue("tandem-worker")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "w.pem"), filepath.Join(dir, "w-key.pem")
	writePEM(t, certFile, "CERTIFICATE", clientCert.Certificate[0])
	der, err := x509.MarshalECPrivateKey(clientCert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "EC PRIVATE KEY", der)
	keyPath := filepath.Join(dir, "api-key")
	if err := os.WriteFile(keyPath, []byte("secret-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			peer <- err.Error()
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if err := tc.Handshake(); err != nil {
			peer <- err.Error()
			return
		}
		peer <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	}()

	tcfg := cluster.Temporal{Address: "nowhere.test:7233", Namespace: "tandem", APIKeyFile: keyPath,
		TLS: cluster.TemporalTLS{Enabled: true, CAFile: filepath.Join(dir, "ca", "ca.pem"), CertFile: certFile, KeyFile: keyFile, ServerName: "temporal.test"}}
	opts, err := ClientOptions(tcfg, ln.Addr().String(), "")
	if err != nil {
		t.Fatal(err)
	}
	if opts.HostPort != ln.Addr().String() || opts.Namespace != "tandem" || opts.Credentials == nil {
		t.Fatalf("options: %s %s credentials %v", opts.HostPort, opts.Namespace, opts.Credentials != nil)
	}
	c, err := tls.Dial("tcp", opts.HostPort, opts.ConnectionOptions.TLS)
	if err != nil {
		t.Fatalf("handshake with the frontend: %v", err)
	}
	c.Close()
	if got := <-peer; got != "tandem-worker" {
		t.Fatalf("the frontend saw %q, want the worker's client certificate", got)
	}

	// Without the file: the embedded server's defaults, no TLS.
	plain, err := ClientOptions(cluster.Temporal{}, "", "")
	if err != nil || plain.HostPort != DefaultAddress || plain.Namespace != DefaultNamespace || plain.ConnectionOptions.TLS != nil {
		t.Fatalf("defaults: %+v %v", plain, err)
	}
	// A wrong name for the frontend is refused by the handshake.
	tcfg.TLS.ServerName = "other.test"
	wrong, _ := ClientOptions(tcfg, ln.Addr().String(), "")
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	if c, err := tls.Dial("tcp", wrong.HostPort, wrong.ConnectionOptions.TLS); err == nil {
		c.Close()
		t.Fatal("a frontend certificate for another name was accepted")
	}
	for field, bad := range map[string]cluster.Temporal{
		"temporal.tls.ca_file":   {TLS: cluster.TemporalTLS{Enabled: true, CAFile: filepath.Join(dir, "missing.pem")}},
		"temporal.tls.cert_file": {TLS: cluster.TemporalTLS{Enabled: true, CertFile: keyPath, KeyFile: keyPath}},
		"temporal.api_key_file":  {TLS: cluster.TemporalTLS{Enabled: true}, APIKeyFile: filepath.Join(dir, "missing")},
	} {
		if _, err := ClientOptions(bad, "", ""); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
