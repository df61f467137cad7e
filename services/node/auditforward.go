package node

// AuditEvents of a member that is not the primary (DESIGN §4 "Access on
// the data path": every access to clinical data is audited, wherever it is
// served). The FHIR server of a backup or async — serving reads that allow
// staleness, or answering logins — and of a primary that has just stepped
// down forwards its buffered AuditEvents here: to POST /mirror/audit on the
// tier's primary, over mutual TLS with this member's certificate. The
// primary journals them before it answers, so the sender drops them only
// once they are durable; until then it keeps them and tries again at its
// next flush (fhir/server audit_forward.go).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	fhirserver "github.com/tandemhealth/tandem/fhir/server"
	"github.com/tandemhealth/tandem/mirror/cluster"
)

// auditPath is where a primary takes forwarded AuditEvents.
const auditPath = "/mirror/audit"

// maxForwardedAuditBytes bounds one forwarded batch.
const maxForwardedAuditBytes = 64 << 20

type auditForwarder struct {
	n      *Node
	client *http.Client
	mu     sync.Mutex
	last   string // the member that took the last batch: tried first
}

func newAuditForwarder(n *Node) *auditForwarder {
	return &auditForwarder{n: n, client: &http.Client{Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: n.mirror.creds.ClientConfig("")}}}
}

type forwardedBatch struct {
	From   string                      `json:"from"`
	Events []fhirserver.ForwardedAudit `json:"events"`
}

// forward sends evs to whichever other member of the tier is the primary.
func (f *auditForwarder) forward(ctx context.Context, evs []fhirserver.ForwardedAudit) error {
	body, err := json.Marshal(forwardedBatch{From: f.n.cfg.Member, Events: evs})
	if err != nil {
		return err
	}
	f.mu.Lock()
	last := f.last
	f.mu.Unlock()
	var others []cluster.Member
	for _, m := range f.n.mirror.tier.Members {
		if m.Name != f.n.cfg.Member {
			others = append(others, m)
		}
	}
	slices.SortStableFunc(others, func(a, b cluster.Member) int {
		switch {
		case a.Name == last:
			return -1
		case b.Name == last:
			return 1
		}
		return 0
	})
	var errs []error
	for _, m := range others {
		req, err := http.NewRequestWithContext(ctx, "POST", "https://"+m.HTTP+auditPath, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := f.client.Do(req)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
			continue
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			f.mu.Lock()
			f.last = m.Name
			f.mu.Unlock()
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: HTTP %d %s", m.Name, resp.StatusCode, bytes.TrimSpace(msg)))
	}
	return fmt.Errorf("no member of tier %s took %d audit events: %w", f.n.mirror.tier.Name, len(evs), errors.Join(errs...))
}

// serveForwardedAudit is POST /mirror/audit: only another member of this
// tier (its cluster certificate), only on the primary.
func (n *Node) serveForwardedAudit(w http.ResponseWriter, r *http.Request) {
	from := ""
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		from = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	if _, ok := n.mirror.tier.Member(from); !ok || from == n.cfg.Member {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "only another member of tier " + n.mirror.tier.Name + " (its cluster certificate) may forward audit events"})
		return
	}
	if !n.IsPrimary() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not the primary: send audit events to the tier's primary"})
		return
	}
	var b forwardedBatch
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxForwardedAuditBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
		return
	}
	for i := range b.Events {
		if b.Events[i].Observer != from {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("events[%d].observer: %q is not the sending member %q", i, b.Events[i].Observer, from)})
			return
		}
	}
	srv, err := n.fhir()
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	if err := srv.StoreForwardedAudit(r.Context(), b.Events); err != nil {
		status := http.StatusServiceUnavailable
		if !n.IsPrimary() {
			err = fmt.Errorf("stepped down: %w", err)
		} else if errors.Is(err, context.Canceled) {
			status = http.StatusRequestTimeout
		} else if n.healthErr() == nil {
			status = http.StatusBadRequest // the batch itself was refused
		}
		writeJSON(w, status, map[string]string{"error": err.Error()})
		return
	}
	n.log.Info("stored audit events forwarded by a member", "from", from, "events", len(b.Events))
	writeJSON(w, http.StatusOK, map[string]int{"stored": len(b.Events)})
}
