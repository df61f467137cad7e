package worker

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"

	"go.temporal.io/sdk/client"

	"github.com/tandemhealth/tandem/mirror/cluster"
)

// ClientOptions says where and how to reach Temporal: address and
// namespace from the flags when given, else from the cluster file's
// temporal section, else the embedded server (DefaultAddress, "default");
// TLS and an API key from the cluster file. Every Temporal client of Tandem
// (worker, `tandem ctl workflow`, the gateway's monitor) connects this way.
func ClientOptions(t cluster.Temporal, address, namespace string) (client.Options, error) {
	opts := client.Options{HostPort: cmp.Or(address, t.Address, DefaultAddress), Namespace: cmp.Or(namespace, t.Namespace, DefaultNamespace)}
	if t.TLS.Enabled {
		host, _, err := net.SplitHostPort(opts.HostPort)
		if err != nil {
			return opts, fmt.Errorf("temporal address %q: %w", opts.HostPort, err)
		}
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cmp.Or(t.TLS.ServerName, host)}
		if t.TLS.CAFile != "" {
			pem, err := os.ReadFile(t.TLS.CAFile)
			if err != nil {
				return opts, fmt.Errorf("field temporal.tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return opts, fmt.Errorf("field temporal.tls.ca_file: %s holds no PEM certificate", t.TLS.CAFile)
			}
		}
		if t.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.TLS.CertFile, t.TLS.KeyFile)
			if err != nil {
				return opts, fmt.Errorf("field temporal.tls.cert_file/key_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts.ConnectionOptions.TLS = tc
	}
	if t.APIKeyFile != "" {
		key, err := os.ReadFile(t.APIKeyFile)
		if err != nil {
			return opts, fmt.Errorf("field temporal.api_key_file: %w", err)
		}
		k := strings.TrimSpace(string(key))
		if k == "" {
			return opts, fmt.Errorf("field temporal.api_key_file: %s is empty", t.APIKeyFile)
		}
		opts.Credentials = client.NewAPIKeyStaticCredentials(k)
	}
	return opts, nil
}
