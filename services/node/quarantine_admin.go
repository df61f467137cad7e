package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/statefile"
)

// The quarantine reports on the admin API (RecoverLostJournal reads them):
//
//	GET /admin/quarantine                   the reports, newest first, with their recovery
//	GET /admin/quarantine/{name}            one report and the FHIR resources it lost
//	PUT /admin/quarantine/{name}/recovery   record how the report was recovered (once)
//
// A report is never changed or removed here; its recovery is a separate
// file under quarantine/recovered/.

// LostResource is the net change a quarantined tail made to one FHIR
// resource: what RecoverLostJournal would re-apply on the new primary.
type LostResource struct {
	Type string `json:"resource_type"`
	ID   string `json:"id"`
	// BaseVersion is the version the tail started from: the new primary
	// must still hold exactly it for a re-apply (0: the tail created the
	// resource, the new primary must not hold a live version).
	BaseVersion uint64 `json:"base_version"`
	Version     uint64 `json:"version"` // the last version the tail wrote
	// Interaction is the net change: create, update, delete, or none (the
	// tail created and deleted it again).
	Interaction string          `json:"interaction"`
	LSN         uint64          `json:"lsn"`                // the record of the last version
	Resource    json.RawMessage `json:"resource,omitempty"` // the last version (not for delete)
}

// QuarantineSummary is one report in the listing.
type QuarantineSummary struct {
	Name      string              `json:"name"`
	At        time.Time           `json:"at"`
	AfterLSN  uint64              `json:"kept_up_to_lsn"`
	FirstLSN  uint64              `json:"first_quarantined_lsn"`
	LastLSN   uint64              `json:"last_quarantined_lsn"`
	Records   int                 `json:"records"`
	Databases map[string]int      `json:"records_per_database"`
	Resources int                 `json:"fhir_resources"`
	Recovery  *QuarantineRecovery `json:"recovery,omitempty"`
}

// QuarantineDetail is a report with the resources it lost, the records it
// holds that re-applying FHIR resources does not cover, and its recovery.
type QuarantineDetail struct {
	Name     string              `json:"name"`
	Report   QuarantineReport    `json:"report"`
	Lost     []LostResource      `json:"lost_resources"`
	Other    map[string]int      `json:"other_records_per_database"` // data records outside the fhir database
	Recovery *QuarantineRecovery `json:"recovery,omitempty"`
}

// QuarantineRecovery is what was decided about a report, recorded on the
// member that holds it.
type QuarantineRecovery struct {
	At       time.Time `json:"at"`
	By       string    `json:"by"`
	Workflow string    `json:"workflow,omitempty"` // the run that decided
	Primary  string    `json:"primary"`            // where the resources were re-applied
	Epoch    uint64    `json:"epoch"`
	Applied  int       `json:"applied"`
	Present  int       `json:"already_present"`
	Conflict int       `json:"conflicts"`
	Summary  string    `json:"summary"`
}

var quarantineName = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z-]*$`)

// LostResources is the net change per FHIR resource of a quarantined tail,
// in the order the tail first wrote them. A resource the report names
// without its stored version (an undecodable record) is left out: the
// report keeps its raw payload.
func LostResources(rep QuarantineReport) []LostResource {
	var out []LostResource
	at := map[string]int{}
	for _, rec := range rep.Records {
		for _, op := range rec.Ops {
			r, ok := quarantinedResource(rec.Database, opOf(op))
			if !ok || r.VersionID == 0 {
				continue
			}
			v, err := fhir.DecodeVersion(op.Value)
			if err != nil {
				continue
			}
			ref := r.Type + "/" + r.ID
			i, seen := at[ref]
			if !seen {
				i = len(out)
				at[ref] = i
				out = append(out, LostResource{Type: r.Type, ID: r.ID, BaseVersion: r.VersionID - 1})
			}
			l := &out[i]
			l.Version, l.LSN = r.VersionID, rec.LSN
			l.Resource = nil
			if !v.Deleted() {
				l.Resource = append(json.RawMessage(nil), v.JSON...)
			}
			switch {
			case v.Deleted() && l.BaseVersion == 0:
				l.Interaction = "none"
			case v.Deleted():
				l.Interaction = "delete"
			case l.BaseVersion == 0:
				l.Interaction = "create"
			default:
				l.Interaction = "update"
			}
		}
	}
	return out
}

func (n *Node) quarantineDir() string { return filepath.Join(n.cfg.DataDir, "quarantine") }

// quarantineAlertTTL bounds how often /mirror/status rescans the reports.
const quarantineAlertTTL = 5 * time.Second

// quarantineAlerts names the reports on this member not recovered yet (an
// unacknowledged journal tail an operator should look at), for the
// status's alerts; rescanned at most every quarantineAlertTTL.
func (n *Node) quarantineAlerts() []string {
	q := &n.qalerts
	q.mu.Lock()
	defer q.mu.Unlock()
	if time.Since(q.at) < quarantineAlertTTL {
		return q.alerts
	}
	q.at, q.alerts = time.Now(), nil
	files, _ := filepath.Glob(filepath.Join(n.quarantineDir(), "*.json"))
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		rep, rec, err := n.loadQuarantine(name)
		switch {
		case err != nil:
			q.alerts = append(q.alerts, fmt.Sprintf("quarantine report %s cannot be read (%v): inspect %s", name, err, f))
		case rec == nil:
			q.alerts = append(q.alerts, fmt.Sprintf("this member holds a journal tail it set aside at a rejoin, never acknowledged to a client (report %s: LSN %d-%d, %d FHIR resources): look at it with tandem ctl quarantine %s %s; re-apply it with tandem ctl workflow start recover-lost-journal %s %s",
				name, rep.FirstLSN, rep.LastLSN, rep.Resources, n.cfg.Member, name, n.cfg.Tier, n.cfg.Member))
		}
	}
	return q.alerts
}

// quarantineAlertCache is quarantineAlerts' last scan.
type quarantineAlertCache struct {
	mu     sync.Mutex
	at     time.Time
	alerts []string
}

func (n *Node) loadQuarantine(name string) (QuarantineReport, *QuarantineRecovery, error) {
	var rep QuarantineReport
	if !quarantineName.MatchString(name) {
		return rep, nil, statefile.ErrNotExist
	}
	if err := statefile.Load(filepath.Join(n.quarantineDir(), name+".json"), &rep); err != nil {
		return rep, nil, err
	}
	var rec QuarantineRecovery
	err := statefile.Load(filepath.Join(n.quarantineDir(), "recovered", name+".json"), &rec)
	if errors.Is(err, statefile.ErrNotExist) {
		return rep, nil, nil
	}
	if err != nil {
		return rep, nil, fmt.Errorf("recovery record of %s: %w", name, err)
	}
	return rep, &rec, nil
}

func (n *Node) quarantineRoutes(mux *http.ServeMux, admin func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("GET /admin/quarantine", admin(func(w http.ResponseWriter, r *http.Request) {
		files, err := filepath.Glob(filepath.Join(n.quarantineDir(), "*.json"))
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		out := []QuarantineSummary{}
		for _, f := range files {
			name := strings.TrimSuffix(filepath.Base(f), ".json")
			rep, rec, err := n.loadQuarantine(name)
			if err != nil {
				// A damaged report is named, never skipped.
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": fmt.Sprintf("quarantine report %s: %v", name, err)})
				return
			}
			out = append(out, QuarantineSummary{Name: name, At: rep.At, AfterLSN: rep.AfterLSN, FirstLSN: rep.FirstLSN, LastLSN: rep.LastLSN,
				Records: len(rep.Records), Databases: rep.Databases, Resources: rep.Resources, Recovery: rec})
		}
		sort.Slice(out, func(i, j int) bool { return out[i].At.After(out[j].At) })
		writeJSON(w, http.StatusOK, map[string]any{"member": n.cfg.Member, "reports": out})
	}))
	mux.HandleFunc("GET /admin/quarantine/{name}", admin(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		rep, rec, err := n.loadQuarantine(name)
		if errors.Is(err, statefile.ErrNotExist) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no quarantine report %q on %s: list them with GET /admin/quarantine", name, n.cfg.Member)})
			return
		}
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		d := QuarantineDetail{Name: name, Report: rep, Lost: LostResources(rep), Other: map[string]int{}, Recovery: rec}
		if d.Lost == nil {
			d.Lost = []LostResource{}
		}
		for db, c := range rep.Databases {
			if db != fhir.Database {
				d.Other[db] = c
			}
		}
		writeJSON(w, http.StatusOK, d)
	}))
	mux.HandleFunc("PUT /admin/quarantine/{name}/recovery", admin(func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var in QuarantineRecovery
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err == nil {
			err = json.Unmarshal(body, &in)
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "recovery: " + err.Error()})
			return
		}
		if strings.TrimSpace(in.By) == "" || in.Primary == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "recovery: by and primary are required"})
			return
		}
		_, prev, err := n.loadQuarantine(name)
		if errors.Is(err, statefile.ErrNotExist) {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no quarantine report %q on %s", name, n.cfg.Member)})
			return
		}
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		if prev != nil {
			// The same run recording again (an activity retry) is fine.
			if in.Workflow != "" && prev.Workflow == in.Workflow {
				writeJSON(w, http.StatusOK, prev)
				return
			}
			writeJSON(w, http.StatusConflict, map[string]string{"error": fmt.Sprintf("quarantine report %s was already recovered by %s at %s (%s)", name, prev.By, prev.At.Format(time.RFC3339), prev.Summary)})
			return
		}
		if in.At.IsZero() {
			in.At = time.Now().UTC()
		}
		dir := filepath.Join(n.quarantineDir(), "recovered")
		if err := mkdirDurable(dir); err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		if err := statefile.Save(filepath.Join(dir, name+".json"), in); err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		n.qalerts.mu.Lock()
		n.qalerts.at = time.Time{}
		n.qalerts.mu.Unlock()
		n.log.Info("quarantine report recovered", "report", name, "by", in.By, "workflow", in.Workflow, "primary", in.Primary,
			"applied", in.Applied, "already_present", in.Present, "conflicts", in.Conflict)
		writeJSON(w, http.StatusOK, in)
	}))
}

// opOf is the journal operation a report's operation was copied from.
func opOf(q QuarantineOp) journal.Op {
	if q.Kind == "delete" {
		return journal.Op{Kind: journal.OpDelete, Key: []byte(q.Key)}
	}
	return journal.Op{Kind: journal.OpSet, Key: []byte(q.Key), Value: q.Value}
}
