package node

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/tandemhealth/tandem/mirror/backup"
)

// Headers of the backup routes.
const (
	HeaderLSN     = "X-Tandem-LSN"
	HeaderEpoch   = "X-Tandem-Epoch"
	HeaderRecords = "X-Tandem-Records"
)

// backupSource is what the backup routes read: committed records only (the
// store applies nothing beyond the commit point).
func (n *Node) backupSource() *backup.Local {
	return &backup.Local{Member: n.cfg.Member, Store: n.store, Journal: n.journal}
}

// backupRoutes serve `tandem backup` (operator only):
//
//	POST /admin/backup/snapshot          a tar of a consistent store checkpoint; its LSN and epoch in headers
//	GET  /admin/backup/records?from=N&max=M   committed records from LSN N as journal frames back to back
func (n *Node) backupRoutes(mux *http.ServeMux, admin func(http.HandlerFunc) http.HandlerFunc) {
	mux.HandleFunc("POST /admin/backup/snapshot", admin(func(w http.ResponseWriter, r *http.Request) {
		tmp, err := os.MkdirTemp(n.cfg.DataDir, "backup-snapshot-")
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		defer os.RemoveAll(tmp)
		dir := filepath.Join(tmp, "store")
		lsn, epoch, err := n.backupSource().Snapshot(r.Context(), dir)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/x-tar")
		w.Header().Set(HeaderLSN, strconv.FormatUint(lsn, 10))
		w.Header().Set(HeaderEpoch, strconv.FormatUint(epoch, 10))
		if err := writeTar(w, dir); err != nil {
			// Headers are gone: the client sees a broken tar and fails.
			n.log.Error("backup snapshot stream failed", "err", err)
		}
		n.log.Info("backup snapshot served", "lsn", lsn, "epoch", epoch)
	}))
	mux.HandleFunc("GET /admin/backup/records", admin(func(w http.ResponseWriter, r *http.Request) {
		from, err1 := strconv.ParseUint(r.URL.Query().Get("from"), 10, 64)
		max, err2 := strconv.Atoi(r.URL.Query().Get("max"))
		if err1 != nil || err2 != nil || from == 0 || max <= 0 || max > 100000 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "query parameters from (LSN >= 1) and max (1..100000) are required"})
			return
		}
		if name := r.URL.Query().Get("archiver"); name != "" && len(name) <= 256 && n.mirror != nil {
			// This archiver holds everything it has not fetched yet, for up
			// to journal.async_retention after this fetch (purge.go).
			n.mirror.pins.hold(name, from-1, time.Now().Add(time.Duration(n.mirror.file.Journal.AsyncRetention)))
		}
		frames, err := n.backupSource().Records(r.Context(), from, max)
		if errors.Is(err, backup.ErrPurged) {
			writeJSON(w, http.StatusGone, map[string]string{"error": err.Error()})
			return
		}
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set(HeaderRecords, strconv.Itoa(len(frames)))
		for _, f := range frames {
			if _, err := w.Write(f); err != nil {
				return
			}
		}
	}))
}

func writeTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o640, Size: st.Size(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := io.Copy(tw, f); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
