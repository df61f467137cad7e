package node

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/fhir/access"
	fhirserver "github.com/tandemhealth/tandem/fhir/server"
	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
)

// LoadAccess reads the key files of an access section. It returns a nil
// Verifier when the section names no keys (then only the operator's client
// certificate is accepted on /fhir and the admin API), and every key, for
// signing (tandem token, tandem dev).
func LoadAccess(a cluster.Access) (*access.Verifier, []access.Key, error) {
	if len(a.Keys) == 0 {
		return nil, nil, nil
	}
	var keys []access.Key
	for _, k := range a.Keys {
		key, err := access.LoadKey(k.KID, k.Alg, k.Path)
		if err != nil {
			return nil, nil, err
		}
		keys = append(keys, key)
	}
	v, err := access.NewVerifier(access.Config{Keys: keys, Issuer: a.Issuer, Audience: a.Audience, Leeway: time.Duration(a.Leeway)})
	if err != nil {
		return nil, nil, err
	}
	return v, keys, nil
}

// operatorCert reports whether r came with the operator's client
// certificate from the cluster's CA.
func operatorCert(r *http.Request) bool {
	return r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && r.TLS.PeerCertificates[0].Subject.CommonName == AdminIdentity
}

// fhirHandler serves /fhir: the operator's certificate acts as an admin
// with every scope; anyone else needs a bearer token (when keys are
// configured) checked by the FHIR server.
type fhirHandler struct {
	once sync.Once
	srv  *fhirserver.Server
	err  error
}

func (n *Node) fhir() (*fhirserver.Server, error) {
	n.fhirH.once.Do(func() {
		opts := fhirserver.Options{BasePath: "/fhir", Logger: n.log, Audit: true, ReadBarrier: n.fhirReadBarrier, WriteGuard: n.fhirWriteGuard}
		if n.mirror != nil {
			// AuditEvents of accesses served here while not the primary
			// go to the primary (auditforward.go).
			opts.CanWrite, opts.AuditForward, opts.AuditObserver = n.IsPrimary, newAuditForwarder(n).forward, n.cfg.Member
		}
		if n.verifier != nil {
			opts.Access = n.verifier
		}
		n.fhirH.srv, n.fhirH.err = fhirserver.New(n.seq, n.store, opts)
	})
	return n.fhirH.srv, n.fhirH.err
}

func (n *Node) serveFHIR(srv *fhirserver.Server) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := n.readsRefused(); err != nil {
			w.Header().Set("Content-Type", "application/fhir+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			json.NewEncoder(w).Encode(map[string]any{"resourceType": "OperationOutcome",
				"issue": []map[string]string{{"severity": "error", "code": "transient", "diagnostics": err.Error()}}})
			return
		}
		if operatorCert(r) {
			srv.ServeHTTP(w, r.WithContext(access.NewContext(r.Context(), access.Operator(AdminIdentity))))
			return
		}
		if n.verifier == nil {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "no access keys are configured: /fhir needs the operator's client certificate from this cluster's CA"})
			return
		}
		srv.ServeHTTP(w, r)
	}
}

// adminAllowed: the operator's certificate, or a bearer token with the
// admin scope.
func (n *Node) adminAllowed(r *http.Request) bool {
	if operatorCert(r) {
		return true
	}
	if n.verifier == nil || r.TLS == nil {
		return false
	}
	p, err := n.verifier.Authenticate(r)
	return err == nil && p.Admin
}

// closeFHIR flushes the FHIR server's buffered AuditEvents.
func (n *Node) closeFHIR(ctx context.Context) {
	if n.fhirH.srv != nil {
		if err := n.fhirH.srv.Close(ctx); err != nil {
			n.log.Error("fhir: audit flush at shutdown", "err", err)
		}
	}
}

// fhirWriteGuard refuses a FHIR write on a mirror member that is not the
// primary before anything is sequenced, saying where writes go: a
// reporting async never takes writes (405); any other member may become
// primary later (503, retry against the primary).
// A primary that is in-trouble takes writes: they wait for the backup's
// acks (or the arbiter's consent) like any other.
func (n *Node) fhirWriteGuard(ctx context.Context) error {
	if n.mirror == nil {
		return nil
	}
	if s := n.memberState(); s == string(failover.StatusPrimary) || s == string(failover.StatusInTrouble) {
		return nil
	}
	snap := n.mirror.snapshot()
	where := "send writes to the tier's primary (the member whose /mirror/primary answers 200) or through the gateway"
	if snap.Primary != "" {
		where = fmt.Sprintf("send writes to the primary, member %s", snap.Primary)
		if pm, ok := n.mirror.tier.Member(snap.Primary); ok {
			where += fmt.Sprintf(" (https://%s/fhir)", pm.HTTP)
		}
		where += ", or through the gateway"
	}
	if n.cfg.Role == cluster.RoleReporting {
		return fhir.Errorf(http.StatusMethodNotAllowed, "not-supported",
			fmt.Sprintf("member %s is a read-only reporting member of tier %s and never takes writes: nothing was stored; %s", n.cfg.Member, n.cfg.Tier, where))
	}
	return fhir.Errorf(http.StatusServiceUnavailable, "transient",
		fmt.Sprintf("member %s of tier %s is %s, not the primary: nothing was stored; %s", n.cfg.Member, n.cfg.Tier, n.memberState(), where))
}

func (n *Node) mountFHIR(mux *http.ServeMux) {
	srv, err := n.fhir()
	if err != nil {
		n.log.Error("FHIR server not mounted", "err", err)
		return
	}
	h := n.metrics.instrumentFHIR(srv, n.serveFHIR(srv))
	mux.Handle("/fhir/", h)
	mux.Handle("/fhir", h)
}

// fhirReadBarrier makes FHIR reads on the primary linearizable (see
// ReadBarrier). Other members serve what they have applied: the gateway
// sends reads there only when the client allows staleness
// (X-Tandem-Max-Lag), and the member says how far behind it is in its
// /mirror/status.
func (n *Node) fhirReadBarrier(ctx context.Context) error {
	if n.mirror == nil || !n.IsPrimary() {
		return nil
	}
	return n.ReadBarrier(ctx)
}
