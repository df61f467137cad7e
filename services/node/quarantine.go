package node

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/tandemhealth/tandem/fhir"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/statefile"
)

// QuarantineRecord is one journal record moved aside at a rejoin: never
// acknowledged to a client, not in the tier's history, kept so an operator
// (or RecoverLostJournal) can look at it and decide.
type QuarantineRecord struct {
	LSN      uint64         `json:"lsn"`
	Epoch    uint64         `json:"epoch"`
	Type     string         `json:"type"`
	Database string         `json:"database,omitempty"`
	Ops      []QuarantineOp `json:"ops,omitempty"`
	// Resources are the FHIR resources the record wrote (fhir database).
	Resources []QuarantineResource `json:"resources,omitempty"`
	Raw       []byte               `json:"raw_payload,omitempty"`
	Marker    *json.RawMessage     `json:"marker,omitempty"`
}

// QuarantineResource is one FHIR resource version a quarantined record
// wrote: what an operator looks up to decide whether to re-apply it.
type QuarantineResource struct {
	Type        string `json:"resource_type"`
	ID          string `json:"id"`
	VersionID   uint64 `json:"version_id,omitempty"`
	Interaction string `json:"interaction"` // create, update or delete
}

// QuarantineOp is one key/value operation of a quarantined record.
type QuarantineOp struct {
	Kind  string `json:"kind"`
	Key   string `json:"key"`
	Value []byte `json:"value,omitempty"`
}

// QuarantineReport is the file written to <data_dir>/quarantine/ (a
// statefile, so statefile.Load reads it).
type QuarantineReport struct {
	Member    string             `json:"member"`
	Tier      string             `json:"tier"`
	At        time.Time          `json:"at"`
	AfterLSN  uint64             `json:"kept_up_to_lsn"`
	FirstLSN  uint64             `json:"first_quarantined_lsn"`
	LastLSN   uint64             `json:"last_quarantined_lsn"`
	Databases map[string]int     `json:"records_per_database"`
	Resources int                `json:"fhir_resources"` // resource versions in the records
	Records   []QuarantineRecord `json:"records"`
	Why       string             `json:"why"`
}

// quarantineTail copies the journal records after lsn into a report file
// and returns its path. It is written and fsynced before the journal is cut.
func quarantineTail(dataDir, tier, member string, j *journal.Journal, after uint64) (string, error) {
	rep := QuarantineReport{Member: member, Tier: tier, At: time.Now().UTC(), AfterLSN: after, Databases: map[string]int{},
		Why: "this member's journal forked from the tier's history after kept_up_to_lsn (it was primary or received records that the new primary never had); these records were never acknowledged to a client"}
	r, err := j.NewReader(after + 1)
	if err != nil {
		return "", err
	}
	defer r.Close()
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", err
		}
		q := QuarantineRecord{LSN: rec.LSN, Epoch: rec.Epoch, Database: rec.Database}
		if rec.Type == journal.TypeEpochMarker {
			q.Type = "epoch-marker"
		} else {
			q.Type = "data"
			rep.Databases[rec.Database]++
			if ops, err := journal.DecodeOps(rec.Payload); err == nil {
				for _, op := range ops {
					kind := "set"
					if op.Kind == journal.OpDelete {
						kind = "delete"
					}
					q.Ops = append(q.Ops, QuarantineOp{Kind: kind, Key: string(op.Key), Value: op.Value})
					if r, ok := quarantinedResource(rec.Database, op); ok {
						q.Resources = append(q.Resources, r)
						rep.Resources++
					}
				}
			} else {
				q.Raw = rec.Payload
			}
		}
		if rep.FirstLSN == 0 {
			rep.FirstLSN = rec.LSN
		}
		rep.LastLSN = rec.LSN
		rep.Records = append(rep.Records, q)
	}
	dir := filepath.Join(dataDir, "quarantine")
	if err := mkdirDurable(dir); err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-lsn-%d-%d.json", rep.At.Format("20060102T150405Z"), rep.FirstLSN, rep.LastLSN))
	return path, statefile.Save(path, rep)
}

// quarantinedResource names the FHIR resource version an operation wrote:
// the set of its current-version key (fhir database) carries type, id and
// version.
func quarantinedResource(db string, op journal.Op) (QuarantineResource, bool) {
	if db != fhir.Database || op.Kind == journal.OpDelete {
		return QuarantineResource{}, false
	}
	typ, id, ok := fhir.ParseCurrentKey(op.Key)
	if !ok {
		return QuarantineResource{}, false
	}
	r := QuarantineResource{Type: typ, ID: id, Interaction: "update"}
	if v, err := fhir.DecodeVersion(op.Value); err == nil {
		r.VersionID = v.VersionID
		switch v.Kind {
		case fhir.KindCreated:
			r.Interaction = "create"
		case fhir.KindDeleted:
			r.Interaction = "delete"
		}
	}
	return r, true
}
