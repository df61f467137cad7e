package node

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	configsync "github.com/tandemhealth/tandem/config-sync"
	"github.com/tandemhealth/tandem/fhir/access"
	fhirserver "github.com/tandemhealth/tandem/fhir/server"
	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/services/login"
)

// gatewayIdentity is the certificate identity of `tandem gateway` (as
// gateway.Identity): its X-Forwarded-For names the client of a login.
const gatewayIdentity = "gateway"

// LoginSigner returns the key the access section's signing_key names (the
// zero Key when it names none), or an error naming the field when that key
// cannot sign. keys are LoadAccess's.
func LoginSigner(a cluster.Access, keys []access.Key) (access.Key, error) {
	if a.SigningKey == "" {
		return access.Key{}, nil
	}
	k, err := access.Signer(keys, a.SigningKey)
	if err != nil {
		return access.Key{}, fmt.Errorf("field access.signing_key: %w (name an HS256 key or a PEM private key)", err)
	}
	return k, nil
}

// openLogin prepares the member's token endpoint (POST /auth/token,
// package login) on its effective config-sync users.
func (n *Node) openLogin(a cluster.Access, keys []access.Key) error {
	k, err := LoginSigner(a, keys)
	if err != nil {
		return err
	}
	cfg := login.Config{
		Key:           k,
		NotConfigured: "this member has no key to sign login tokens with: set access.signing_key in the cluster file to the kid of an HS256 key or a PEM private key of access.keys, and restart it",
		Issuer:        a.Issuer,
		Audience:      a.Audience,
		TTL:           time.Duration(a.TokenTTL),
		LockoutAfter:  a.LockoutAfter,
		LockoutFor:    time.Duration(a.LockoutFor),
		State: func() configsync.State {
			st, _ := n.EffectiveConfig()
			return st
		},
		Audit:         n.auditLogin,
		ClientAddress: loginClientAddress,
		Log:           n.log,
	}
	h, err := login.New(cfg)
	if err != nil {
		return fmt.Errorf("field access.signing_key: %w", err)
	}
	n.login = h
	return nil
}

// auditLogin writes a login attempt's AuditEvent through the FHIR
// server's audit. The audit lives in the mirrored fhir database: a member
// that is not the primary forwards it to the primary (auditforward.go).
func (n *Node) auditLogin(a login.Attempt) {
	srv, err := n.fhir()
	if err != nil {
		return
	}
	srv.AuditLogin(fhirserver.Login{User: a.User, ClientID: a.ClientID, Address: a.Address, Status: a.Status, Detail: a.Detail, At: a.At})
}

// loginClientAddress is the client's address: the one the gateway saw
// (the last X-Forwarded-For entry) when the request came with the
// gateway's certificate, else the connection's.
func loginClientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && r.TLS.PeerCertificates[0].Subject.CommonName == gatewayIdentity {
		xff := r.Header.Get("X-Forwarded-For")
		if i := strings.LastIndexByte(xff, ','); i >= 0 {
			xff = xff[i+1:]
		}
		if xff = strings.TrimSpace(xff); xff != "" {
			return xff
		}
	}
	return host
}
