package node

// Adding an existing database to a running mirror (DESIGN §3 "Adding
// databases"). The database's content — a Tandem store on the primary's
// host: a standalone node's store directory, or one restored from a backup —
// is written through the sequencer and the journal in records of at most
// importMaxPayload, so every member (failover and async, up or catching
// up) gets it the way it gets every write, in order with the writes going
// on meanwhile. Its state lives in the mirrored system database under
// databases/<name>: needs-activation while the import runs, normal once
// its last record is committed, with the source's content hash so any
// member can be checked against it.
//
// Where DESIGN says "a snapshot shipped to each member, which then catches
// up from the snapshot's LSN", this ships the content through the journal:
// one path for every member, no second transfer protocol, at the cost of
// journal space for the database's size (purged like any other record).

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/mirror/store"
)

// importMaxPayload bounds one import record (as a restore into a new tier).
const importMaxPayload = 256 << 10

// DatabaseRecord is a database's entry in the system database
// (databases/<name>).
type DatabaseRecord struct {
	Name         string    `json:"name"`
	State        string    `json:"state"` // needs-activation (importing), normal
	Source       string    `json:"source"`
	SourceDB     string    `json:"source_database"`
	SourceSHA256 string    `json:"source_sha256"`
	Keys         int       `json:"keys"`
	Bytes        int64     `json:"bytes"`
	FirstLSN     uint64    `json:"first_lsn,omitempty"`
	LastLSN      uint64    `json:"last_lsn,omitempty"`
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished,omitempty"`
	By           string    `json:"by,omitempty"`
	Error        string    `json:"error,omitempty"` // the primary's last failure (not journaled)
}

func databaseKey(db string) []byte { return []byte("databases/" + db) }

// importer tracks the imports this primary runs.
type importer struct {
	mu      sync.Mutex
	running map[string]*DatabaseRecord
}

// databaseRecord reads db's record from the system database, if any.
func (n *Node) databaseRecord(db string) (DatabaseRecord, bool) {
	v, ok, err := n.store.Get("system", databaseKey(db))
	var rec DatabaseRecord
	if err != nil || !ok || json.Unmarshal(v, &rec) != nil {
		return rec, false
	}
	return rec, true
}

// startImport checks the request and starts the import of sourceDB from the
// store at dir into db.
func (n *Node) startImport(db, dir, sourceDB, by string) (DatabaseRecord, error) {
	if err := journal.ValidateDatabase(db); err != nil {
		return DatabaseRecord{}, fmt.Errorf("database %q: %w", db, err)
	}
	if db == "local" || slices.Contains(n.cfg.Databases, db) {
		return DatabaseRecord{}, fmt.Errorf("database %q is one of this node's own databases: import into a new name", db)
	}
	if rec, ok := n.databaseRecord(db); ok && rec.State == "normal" {
		return rec, fmt.Errorf("database %q was already added (from %s, %d keys, LSN %d-%d)", db, rec.Source, rec.Keys, rec.FirstLSN, rec.LastLSN)
	}
	if slices.Contains(n.store.Databases(), db) {
		if _, ok := n.databaseRecord(db); !ok {
			return DatabaseRecord{}, fmt.Errorf("database %q already holds data written outside an import: import into a new name", db)
		}
	}
	if !filepath.IsAbs(dir) {
		return DatabaseRecord{}, fmt.Errorf("source_dir %q must be an absolute path on %s's host", dir, n.cfg.Member)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*")); len(m) == 0 {
		return DatabaseRecord{}, fmt.Errorf("source_dir %s is not a store directory (no Pebble MANIFEST): name the store/ directory of a stopped node or of a restore", dir)
	}
	n.imports.mu.Lock()
	defer n.imports.mu.Unlock()
	if n.imports.running == nil {
		n.imports.running = map[string]*DatabaseRecord{}
	}
	if r, ok := n.imports.running[db]; ok && r.Error == "" {
		return *r, fmt.Errorf("database %q is being imported already (%d keys so far)", db, r.Keys)
	}
	rec := &DatabaseRecord{Name: db, State: "needs-activation", Source: dir, SourceDB: sourceDB, Started: time.Now().UTC(), By: by}
	n.imports.running[db] = rec
	n.background(func(ctx context.Context) { n.runImport(ctx, rec) })
	return *rec, nil
}

func (n *Node) setImport(rec *DatabaseRecord, f func(*DatabaseRecord)) {
	n.imports.mu.Lock()
	f(rec)
	n.imports.mu.Unlock()
}

// runImport copies the source database through the journal.
func (n *Node) runImport(ctx context.Context, rec *DatabaseRecord) {
	ctx, cancel := context.WithTimeout(ctx, 6*time.Hour)
	defer cancel()
	fail := func(err error) {
		n.log.Error("database import failed; run it again to finish it (every key is written again)", "database", rec.Name, "source", rec.Source, "err", err)
		n.setImport(rec, func(r *DatabaseRecord) { r.Error = err.Error() })
	}
	// Open a checkpoint-free read of the source: Pebble takes the
	// directory's lock, so a node still running on it is refused here.
	src, err := store.Open(rec.Source, store.Options{Logger: n.log, CacheSize: 8 << 20})
	if err != nil {
		fail(fmt.Errorf("open the source store (stop the node that owns it, or restore a backup): %w", err))
		return
	}
	defer src.Close()
	if !slices.Contains(src.Databases(), rec.SourceDB) {
		fail(fmt.Errorf("the source store has no database %q (it has %v)", rec.SourceDB, src.Databases()))
		return
	}
	sum, err := src.ContentHash(rec.SourceDB)
	if err != nil {
		fail(err)
		return
	}
	n.setImport(rec, func(r *DatabaseRecord) { r.SourceSHA256 = hex.EncodeToString(sum[:]) })
	writeRecord := func(r DatabaseRecord) (uint64, error) {
		r.Error = ""
		v, _ := json.Marshal(r)
		return n.seq.Write(ctx, "system", func(sequencer.View) ([]journal.Op, error) {
			return []journal.Op{{Kind: journal.OpSet, Key: databaseKey(r.Name), Value: v}}, nil
		})
	}
	n.imports.mu.Lock()
	snapshot := *rec
	n.imports.mu.Unlock()
	if _, err := writeRecord(snapshot); err != nil {
		fail(fmt.Errorf("record the import in the system database: %w", err))
		return
	}
	n.log.Warn("database import started", "database", rec.Name, "source", rec.Source, "source_database", rec.SourceDB)
	var batch []journal.Op
	size := journal.OpsHeaderSize
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		ops := batch
		lsn, err := n.seq.Write(ctx, rec.Name, func(sequencer.View) ([]journal.Op, error) { return ops, nil })
		if err != nil {
			return err
		}
		n.setImport(rec, func(r *DatabaseRecord) {
			if r.FirstLSN == 0 {
				r.FirstLSN = lsn
			}
			r.LastLSN = lsn
			r.Keys += len(ops)
			for _, op := range ops {
				r.Bytes += int64(len(op.Key) + len(op.Value))
			}
		})
		batch, size = nil, journal.OpsHeaderSize
		return nil
	}
	var werr error
	err = src.Scan(rec.SourceDB, nil, func(k, v []byte) bool {
		op := journal.Op{Kind: journal.OpSet, Key: slices.Clone(k), Value: slices.Clone(v)}
		if len(batch) > 0 && size+journal.EncodedOpSize(op) > importMaxPayload {
			if werr = flush(); werr != nil {
				return false
			}
		}
		batch = append(batch, op)
		size += journal.EncodedOpSize(op)
		return true
	})
	if err == nil {
		err = werr
	}
	if err == nil {
		err = flush()
	}
	if err != nil {
		fail(err)
		return
	}
	n.imports.mu.Lock()
	rec.State, rec.Finished = "normal", time.Now().UTC()
	snapshot = *rec
	n.imports.mu.Unlock()
	if _, err := writeRecord(snapshot); err != nil {
		n.setImport(rec, func(r *DatabaseRecord) { r.State = "needs-activation" })
		fail(fmt.Errorf("record the finished import: %w", err))
		return
	}
	n.imports.mu.Lock()
	delete(n.imports.running, rec.Name)
	n.imports.mu.Unlock()
	n.log.Warn("database import finished", "database", rec.Name, "keys", snapshot.Keys, "bytes", snapshot.Bytes,
		"first_lsn", snapshot.FirstLSN, "last_lsn", snapshot.LastLSN, "took", snapshot.Finished.Sub(snapshot.Started).Round(time.Millisecond).String())
}

// importState is what this member knows of db's import: its own running
// import (primary), else the mirrored record.
func (n *Node) importState(db string) (DatabaseRecord, bool) {
	n.imports.mu.Lock()
	r, ok := n.imports.running[db]
	var out DatabaseRecord
	if ok {
		out = *r
	}
	n.imports.mu.Unlock()
	if ok {
		return out, true
	}
	return n.databaseRecord(db)
}

// addedDatabases lists the databases added by import, as the system
// database records them.
func (n *Node) addedDatabases() []DatabaseRecord {
	var out []DatabaseRecord
	n.store.Scan("system", []byte("databases/"), func(_, v []byte) bool {
		var rec DatabaseRecord
		if json.Unmarshal(v, &rec) == nil && rec.Name != "" {
			out = append(out, rec)
		}
		return true
	})
	return out
}

func (n *Node) addDatabaseRoutes(mux *http.ServeMux, admin func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("POST /admin/databases/{db}/import", admin(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			SourceDir      string `json:"source_dir"`
			SourceDatabase string `json:"source_database"`
			By             string `json:"by"`
		}
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || req.SourceDir == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be {"source_dir": "/abs/path/to/store", "source_database": "NAME (default: the new name)", "by": "who"}`})
			return
		}
		if !n.IsPrimary() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "not the primary: send the import to the member whose /mirror/primary answers 200 (the source directory must be on its host)"})
			return
		}
		db := r.PathValue("db")
		if req.SourceDatabase == "" {
			req.SourceDatabase = db
		}
		rec, err := n.startImport(db, req.SourceDir, req.SourceDatabase, req.By)
		if err != nil {
			writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "database": rec})
			return
		}
		writeJSON(w, http.StatusAccepted, rec)
	}))
	mux.HandleFunc("GET /admin/databases/{db}/import", admin(func(w http.ResponseWriter, r *http.Request) {
		rec, ok := n.importState(r.PathValue("db"))
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no import of database " + r.PathValue("db") + " is known here"})
			return
		}
		writeJSON(w, http.StatusOK, rec)
	}))
}
