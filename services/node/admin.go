package node

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/tandemhealth/tandem/fhir/access"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
)

// AdminIdentity is the certificate identity allowed on the admin API (the
// operator's client certificate, as issued by the cluster's CA).
const AdminIdentity = "operator"

// adminRoutes serves the admin API of a mirror member. Every route needs a
// client certificate from the cluster's CA naming the operator, or (over
// HTTPS, when access keys are configured) a bearer token with the admin
// scope (access.AdminScope).
func (n *Node) adminRoutes(mux *http.ServeMux) {
	admin := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !n.adminAllowed(r) {
				writeJSON(w, http.StatusForbidden, map[string]string{"error": "the admin API needs the operator's client certificate from this cluster's CA or a bearer token with the " + access.AdminScope + " scope"})
				return
			}
			h(w, r)
		}
	}
	n.backupRoutes(mux, admin)
	n.rebuildRoutes(mux, admin)     // tandem ctl rebuild (rebuild.go)
	n.addDatabaseRoutes(mux, admin) // tandem ctl add-database (adddb.go)
	n.quarantineRoutes(mux, admin)  // RecoverLostJournal, tandem ctl quarantine (quarantine_admin.go)
	// Raw key/value writes through the sequencer and the journal: for tests,
	// storage benchmarks and operators, until FHIR is mounted.
	mux.HandleFunc("PUT /admin/kv/{db}/{key...}", admin(func(w http.ResponseWriter, r *http.Request) {
		db, key := r.PathValue("db"), r.PathValue("key")
		value, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 16<<20))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "value larger than 16 MiB"})
			return
		}
		if !n.IsPrimary() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not the primary: send writes to the member whose /mirror/primary answers 200"})
			return
		}
		lsn, err := n.seq.Write(r.Context(), db, func(sequencer.View) ([]journal.Op, error) {
			return []journal.Op{{Kind: journal.OpSet, Key: []byte(key), Value: value}}, nil
		})
		if err != nil {
			code := http.StatusServiceUnavailable
			if errors.Is(err, journal.ErrBadDatabase) {
				code = http.StatusBadRequest
			}
			writeJSON(w, code, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]uint64{"lsn": lsn})
	}))
	// ?primary=1 asks for a linearizable read: only the primary answers,
	// after its read barrier (lease + every journaled record applied).
	mux.HandleFunc("GET /admin/kv/{db}/{key...}", admin(func(w http.ResponseWriter, r *http.Request) {
		if err := n.readsRefused(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
			return
		}
		if r.URL.Query().Get("primary") == "1" {
			if err := n.ReadBarrier(r.Context()); err != nil {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
				return
			}
		}
		v, ok, err := n.store.Get(r.PathValue("db"), []byte(r.PathValue("key")))
		switch {
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		case !ok:
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such key"})
		default:
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Write(v)
		}
	}))
	mux.HandleFunc("GET /admin/hash/{db}", admin(func(w http.ResponseWriter, r *http.Request) {
		h, err := n.store.ContentHash(r.PathValue("db"))
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"database": r.PathValue("db"), "sha256": hex.EncodeToString(h[:]), "applied_lsn": n.store.DatabaseLSNs()[r.PathValue("db")]})
	}))
	// FHIR R4 on this member: bearer tokens with SMART scopes (when access
	// keys are configured) or the operator's client certificate.
	n.mountFHIR(mux)
	n.configSyncRoutes(mux, admin)  // /admin/config/*, /admin/gate/* (configsync.go)
	n.searchParamRoutes(mux, admin) // /admin/search/disabled (searchparams.go)
	mux.HandleFunc("POST /admin/no-failover", admin(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Set bool `json:"set"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be {"set": true|false}`})
			return
		}
		n.mirror.operator(failover.Message{Type: failover.MsgSetNoFailover, Flag: req.Set})
		writeJSON(w, http.StatusAccepted, map[string]bool{"no_failover": req.Set})
	}))
	// Forced promotion of a backup: the preview states exactly what may be
	// lost; the promotion needs that statement sent back unchanged.
	mux.HandleFunc("GET /admin/force-promote", admin(func(w http.ResponseWriter, r *http.Request) {
		tierEpoch, _ := strconv.ParseUint(r.URL.Query().Get("tier_epoch"), 10, 64)
		p, err := n.Preview(tierEpoch)
		if err != nil {
			writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "preview": p})
			return
		}
		writeJSON(w, http.StatusOK, p)
	}))
	mux.HandleFunc("POST /admin/force-promote", admin(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			TierEpoch uint64 `json:"tier_epoch"`
			Confirm   string `json:"confirm"`
			Statement string `json:"statement"` // a dr member: the operator's statement that the failover pair is gone
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Confirm == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be {"tier_epoch": N, "confirm": "<the preview's confirm string>"}`})
			return
		}
		p, err := n.ForcePromote(req.TierEpoch, req.Confirm, req.Statement)
		if err != nil {
			writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "preview": p})
			return
		}
		writeJSON(w, http.StatusAccepted, p)
	}))
	mux.HandleFunc("POST /admin/planned-failover", admin(func(w http.ResponseWriter, r *http.Request) {
		if !n.IsPrimary() {
			writeJSON(w, http.StatusConflict, map[string]string{"error": "planned failover starts on the primary"})
			return
		}
		if !n.gatePlannedFailover(w, r) { // the policy gate first (configsync.go)
			return
		}
		n.mirror.operator(failover.Message{Type: failover.MsgPlannedFailover})
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "draining; the backup takes over once it has everything"})
	}))
}

// readsRefused: a member that needs a rebuild serves no reads (its content
// is a history the tier cannot continue, or too old to catch up).
func (n *Node) readsRefused() error {
	if n.mirror != nil && n.mirror.snapshot().Status == failover.StatusNeedsRebuild {
		return fmt.Errorf("member %s needs a rebuild and serves no reads: run tandem ctl rebuild %s", n.cfg.Member, n.cfg.Member)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
