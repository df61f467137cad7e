package node

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tandemhealth/tandem/mirror/backup"
	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/statefile"
)

// Rebuild (re-seed): a member that needs a rebuild (the journal it needs
// was purged, or its history cannot be bridged) is given a consistent
// snapshot by the current primary and catches up from it (DESIGN §3,
// `tandem ctl rebuild MEMBER`).
//
//  1. The member (POST /admin/rebuild, operator) fetches from the primary
//     GET /admin/rebuild/snapshot over mTLS with its own certificate: a tar
//     whose first entry is the manifest (LSN L, the epoch of the record at
//     L, the primary's epoch, every file's size and SHA-256), then a Pebble
//     checkpoint of the store at applied LSN L. The primary holds its
//     journal from L on for the next rebuildPin.
//  2. Every file is written under rebuildTmpDir and checked against the
//     manifest (names, sizes, SHA-256, none missing); only a complete,
//     verified copy is renamed to rebuildStagedDir. A failure leaves the
//     member as it was.
//  3. The node stops and opens again (Run returns ErrRestart; the command
//     loop reopens it). Opening installs the staged copy first: a new empty
//     journal starting at L+1 with its base (L, epoch) recorded, the hard
//     state of a fresh backup/async of the primary's epoch
//     (failover.Reseeded), and a catch-up mark. The swap is resumable: a
//     crash during it is finished at the next start. The replaced store
//     and journal are kept in rebuild-old-<time> for the operator.
//  4. The member catches up from the primary's journal; its databases show
//     needs-catchup (nothing heard yet), catchup-running, then normal.

// ErrRestart is returned by Run when the node must be opened again to
// install a staged re-seed (see OpenMember).
var ErrRestart = errors.New("node: restarting to install a re-seed")

const (
	rebuildTmpDir    = "rebuild.tmp"    // being fetched: removed on failure or at start
	rebuildStagedDir = "rebuild-staged" // complete and verified: installed at start
	rebuildManifest  = "MANIFEST.json"
	rebuildInstall   = "INSTALL.json" // the swap has begun: finish it
	catchupFile      = "CATCHUP.json" // re-seeded, not yet caught up
	rebuildPin       = 10 * time.Minute
)

// RebuildManifest describes a re-seed snapshot.
type RebuildManifest struct {
	Version int    `json:"manifest_version"`
	Tier    string `json:"tier"`
	Source  string `json:"source"`
	// LSN is the store's applied LSN: every record up to it is in the
	// snapshot; the journal continues at LSN+1. BaseEpoch is the epoch of
	// the record at LSN, Epoch the source primary's epoch.
	LSN           uint64           `json:"lsn"`
	BaseEpoch     uint64           `json:"base_epoch"`
	Epoch         uint64           `json:"epoch"`
	TakenAt       time.Time        `json:"taken_at"`
	JournalFormat uint32           `json:"journal_format"`
	PayloadFormat int              `json:"payload_format"`
	Files         []backup.FileSum `json:"files"`
}

// RebuildStatus is the last re-seed this process ran, in /mirror/status.
type RebuildStatus struct {
	State  string    `json:"state"` // fetching, staged, failed; installed (this process started on it)
	Source string    `json:"source"`
	LSN    uint64    `json:"lsn,omitempty"`
	Error  string    `json:"error,omitempty"`
	At     time.Time `json:"at"`
}

// rebuilder is the member's re-seed in progress (one at a time).
type rebuilder struct {
	mu      sync.Mutex
	st      *RebuildStatus
	restart chan struct{} // closed when a staged re-seed waits for the restart
	once    sync.Once
}

func (r *rebuilder) status() *RebuildStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st == nil {
		return nil
	}
	s := *r.st
	return &s
}

func (r *rebuilder) set(s RebuildStatus) {
	r.mu.Lock()
	r.st = &s
	r.mu.Unlock()
}

// purgePin holds the journal from an LSN on: a re-seed taken there while it
// is installed and catches up (add, by LSN, until a time), and each backup
// archiver at the last LSN it fetched (hold, by name: every fetch replaces
// the archiver's pin and pushes its end out).
type purgePin struct {
	mu    sync.Mutex
	pins  map[uint64]time.Time // LSN -> until
	named map[string]namedPin  // archiver -> its pin
}

type namedPin struct {
	lsn   uint64
	until time.Time
}

func (p *purgePin) add(lsn uint64, until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pins == nil {
		p.pins = map[uint64]time.Time{}
	}
	p.pins[lsn] = until
}

// hold sets name's pin to lsn until until.
func (p *purgePin) hold(name string, lsn uint64, until time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.named == nil {
		p.named = map[string]namedPin{}
	}
	p.named[name] = namedPin{lsn: lsn, until: until}
}

// drop removes name's pin.
func (p *purgePin) drop(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.named, name)
}

// holds returns the named pins that have not expired, and removes and
// returns the names of those that have.
func (p *purgePin) holds(now time.Time) (live map[string]uint64, expired []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	live = map[string]uint64{}
	for name, np := range p.named {
		if now.After(np.until) {
			delete(p.named, name)
			expired = append(expired, name)
			continue
		}
		live[name] = np.lsn
	}
	return live, expired
}

// limit is the highest LSN a purge may reach under the pins (math.MaxUint64-ish when none).
func (p *purgePin) limit(now time.Time) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	lim := ^uint64(0)
	for lsn, until := range p.pins {
		if now.After(until) {
			delete(p.pins, lsn)
			continue
		}
		lim = min(lim, lsn)
	}
	for _, np := range p.named {
		if !now.After(np.until) {
			lim = min(lim, np.lsn)
		}
	}
	return lim
}

// peerMember is the name in a client certificate from the cluster's CA
// when it names a member of this node's tier.
func (n *Node) peerMember(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return ""
	}
	name := r.TLS.PeerCertificates[0].Subject.CommonName
	if _, ok := n.mirror.tier.Member(name); ok {
		return name
	}
	return ""
}

func (n *Node) rebuildRoutes(mux *http.ServeMux, admin func(http.HandlerFunc) http.HandlerFunc) {
	// The primary's side: a member of the tier (its own certificate) or the
	// operator fetches a snapshot.
	mux.HandleFunc("GET /admin/rebuild/snapshot", func(w http.ResponseWriter, r *http.Request) {
		who := n.peerMember(r)
		if who == "" && !operatorCert(r) {
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "a re-seed snapshot is served only to a member of tier " + n.cfg.Tier + " (its client certificate) or the operator"})
			return
		}
		if !n.IsPrimary() {
			writeJSON(w, http.StatusConflict, map[string]string{"error": n.cfg.Member + " is not the primary: fetch the snapshot from the member whose /mirror/primary answers 200"})
			return
		}
		if err := n.serveRebuildSnapshot(w, r, who); err != nil {
			n.log.Error("re-seed snapshot not served", "to", who, "err", err)
		}
	})
	// The rebuilt member's side.
	mux.HandleFunc("POST /admin/rebuild", admin(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Source string `json:"source"`
			Force  bool   `json:"force"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Source == "" {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": `body must be {"source": "<the primary's member name>", "force": false}`})
			return
		}
		if err := n.startRebuild(req.Source, req.Force); err != nil {
			writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
			return
		}
		writeJSON(w, http.StatusAccepted, map[string]string{"status": "fetching a snapshot from " + req.Source + "; then this member restarts, installs it and catches up (watch tandem ctl status)"})
	}))
}

// serveRebuildSnapshot streams a manifest and a store checkpoint.
func (n *Node) serveRebuildSnapshot(w http.ResponseWriter, r *http.Request, who string) error {
	// Hold the journal from the store's applied LSN (<= the checkpoint's)
	// before the checkpoint: the member continues from there.
	n.mirror.pins.add(n.store.AppliedLSN(), time.Now().Add(rebuildPin))
	tmp, err := os.MkdirTemp(n.cfg.DataDir, "rebuild-snapshot-")
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return err
	}
	defer os.RemoveAll(tmp)
	dir := filepath.Join(tmp, "store")
	lsn, baseEpoch, err := n.store.Checkpoint(dir)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return err
	}
	if first := n.journal.StartLSN(); first > lsn+1 {
		err := fmt.Errorf("the journal here starts at %d, after the snapshot's LSN %d", first, lsn)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return err
	}
	man := RebuildManifest{Version: 1, Tier: n.cfg.Tier, Source: n.cfg.Member, LSN: lsn, BaseEpoch: baseEpoch,
		Epoch: n.mirror.snapshot().Epoch, TakenAt: time.Now().UTC(), JournalFormat: journal.FormatVersion, PayloadFormat: journal.PayloadVersion}
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		sum, size, err := fileSHA256(p)
		if err != nil {
			return err
		}
		man.Files = append(man.Files, backup.FileSum{Name: filepath.ToSlash(rel), Size: size, SHA256: sum})
		return nil
	})
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return err
	}
	mj, _ := json.MarshalIndent(man, "", "  ")
	w.Header().Set("Content-Type", "application/x-tar")
	tw := tar.NewWriter(w)
	if err := tw.WriteHeader(&tar.Header{Name: rebuildManifest, Mode: 0o640, Size: int64(len(mj)), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := tw.Write(mj); err != nil {
		return err
	}
	for _, f := range man.Files {
		if err := tarFile(tw, filepath.Join(dir, filepath.FromSlash(f.Name)), f.Name, f.Size); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	n.log.Info("re-seed snapshot served", "to", who, "lsn", lsn, "base_epoch", baseEpoch, "files", len(man.Files))
	return nil
}

func tarFile(tw *tar.Writer, path, name string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o640, Size: size, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, size); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// startRebuild checks that a re-seed makes sense and starts fetching.
func (n *Node) startRebuild(source string, force bool) error {
	snap := n.mirror.snapshot()
	switch {
	case source == n.cfg.Member:
		return fmt.Errorf("%s cannot be re-seeded from itself: name the tier's primary", source)
	case snap.Role == failover.RolePrimary.String() && snap.Status != failover.StatusNeedsRebuild:
		return fmt.Errorf("refused: %s is in the primary role (status %s); a primary is never re-seeded — hand the role over first (tandem ctl planned-failover)", n.cfg.Member, snap.Status)
	case snap.Status != failover.StatusNeedsRebuild && !force:
		return fmt.Errorf("refused: %s does not need a rebuild (status %s; it catches up from the primary's journal); add --force to re-seed it anyway", n.cfg.Member, snap.Status)
	}
	if _, ok := n.mirror.tier.Member(source); !ok {
		return fmt.Errorf("%s is not a member of tier %s", source, n.cfg.Tier)
	}
	n.rb.mu.Lock()
	busy := n.rb.st != nil && (n.rb.st.State == "fetching" || n.rb.st.State == "staged")
	if !busy {
		n.rb.st = &RebuildStatus{State: "fetching", Source: source, At: time.Now().UTC()}
	}
	n.rb.mu.Unlock()
	if busy {
		return errors.New("a re-seed is already in progress on " + n.cfg.Member)
	}
	n.log.Warn("re-seed started: fetching a snapshot", "source", source, "force", force, "status", string(snap.Status))
	n.background(func(ctx context.Context) { n.fetchRebuild(ctx, source) })
	return nil
}

// fetchRebuild fetches, verifies and stages a snapshot, then asks Run to
// restart the node so that OpenMember installs it.
func (n *Node) fetchRebuild(ctx context.Context, source string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	man, err := n.fetchSnapshot(ctx, source)
	if err != nil {
		os.RemoveAll(filepath.Join(n.cfg.DataDir, rebuildTmpDir))
		n.log.Error("re-seed failed: nothing installed, the member is as it was", "source", source, "err", err)
		n.rb.set(RebuildStatus{State: "failed", Source: source, Error: err.Error(), At: time.Now().UTC()})
		return
	}
	n.rb.set(RebuildStatus{State: "staged", Source: source, LSN: man.LSN, At: time.Now().UTC()})
	n.log.Warn("re-seed staged: restarting to install it", "source", source, "lsn", man.LSN, "epoch", man.Epoch)
	n.rb.once.Do(func() { close(n.rb.restart) })
}

func (n *Node) fetchSnapshot(ctx context.Context, source string) (RebuildManifest, error) {
	src, ok := n.mirror.tier.Member(source)
	if !ok {
		return RebuildManifest{}, fmt.Errorf("no member %q in tier %s", source, n.cfg.Tier)
	}
	return stageSnapshot(ctx, n.cfg.DataDir, n.cfg.Tier, src, n.mirror.creds.ClientConfig(""), n.mirror.snapshot().Epoch)
}

// stageSnapshot fetches a re-seed snapshot from src (the tier's primary)
// with tlsConf, verifies every file, and stages it in dataDir, where the
// member's next start installs it (installRebuild). A snapshot from an
// epoch older than minEpoch is refused.
func stageSnapshot(ctx context.Context, dataDir, tier string, src cluster.Member, tlsConf *tls.Config, minEpoch uint64) (RebuildManifest, error) {
	var man RebuildManifest
	source := src.Name
	tmp := filepath.Join(dataDir, rebuildTmpDir)
	if err := os.RemoveAll(tmp); err != nil {
		return man, err
	}
	if err := mkdirDurable(filepath.Join(tmp, "store")); err != nil {
		return man, err
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConf}}
	req, err := http.NewRequestWithContext(ctx, "GET", "https://"+src.HTTP+"/admin/rebuild/snapshot", nil)
	if err != nil {
		return man, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return man, fmt.Errorf("%s is unreachable: %w", source, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return man, fmt.Errorf("%s refused the snapshot (HTTP %d): %s", source, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	man, err = receiveSnapshot(resp.Body, filepath.Join(tmp, "store"))
	if err != nil {
		return man, fmt.Errorf("snapshot from %s: %w", source, err)
	}
	switch {
	case man.Tier != tier || man.Source != source:
		return man, fmt.Errorf("snapshot is of %s/%s, not %s/%s", man.Tier, man.Source, tier, source)
	case man.JournalFormat != journal.FormatVersion || man.PayloadFormat != journal.PayloadVersion:
		return man, fmt.Errorf("snapshot formats journal %d / payload %d; this member reads %d / %d", man.JournalFormat, man.PayloadFormat, journal.FormatVersion, journal.PayloadVersion)
	case man.Epoch < minEpoch:
		return man, fmt.Errorf("snapshot from epoch %d, older than this member's epoch %d: %s is not the current primary", man.Epoch, minEpoch, source)
	}
	if err := statefile.Save(filepath.Join(tmp, rebuildManifest), man); err != nil {
		return man, err
	}
	if err := syncDir(tmp); err != nil {
		return man, err
	}
	staged := filepath.Join(dataDir, rebuildStagedDir)
	if err := os.RemoveAll(staged); err != nil {
		return man, err
	}
	if err := os.Rename(tmp, staged); err != nil {
		return man, err
	}
	return man, syncDir(dataDir)
}

// StageOfflineReseed re-seeds a member that is not running — one whose
// journal is corrupt refuses to start, so it cannot fetch a snapshot
// itself: on the member's host, it fetches the primary's snapshot with
// tlsConf (the operator's or the member's certificate), verifies it and
// stages it in the member's data directory. Its next start installs it
// (the corrupt journal is replaced, the hard state re-seeded) and catches
// up from the primary as a rebuilt member does. Refused while the member's
// node runs.
func StageOfflineReseed(ctx context.Context, dataDir, tier string, member string, src cluster.Member, tlsConf *tls.Config) (RebuildManifest, error) {
	if pid, running := memberRunning(dataDir, member); running {
		return RebuildManifest{}, fmt.Errorf("%s's node runs (pid %d): an offline re-seed is for a member that cannot start; for a running one use tandem ctl rebuild %s [--force]", member, pid, member)
	}
	var hs failover.HardState
	if err := statefile.Load(filepath.Join(dataDir, "hardstate.json"), &hs); err != nil && !errors.Is(err, statefile.ErrNotExist) {
		hs = failover.HardState{} // unreadable: the install starts from an empty one, and says so
	}
	return stageSnapshot(ctx, dataDir, tier, src, tlsConf, uint64(hs.Epoch))
}

// receiveSnapshot reads the manifest and the files of a re-seed tar into
// dir, checking each file's size and SHA-256, and that none is missing or
// unexpected.
func receiveSnapshot(r io.Reader, dir string) (RebuildManifest, error) {
	var man RebuildManifest
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err != nil || h.Name != rebuildManifest {
		return man, fmt.Errorf("the stream does not begin with %s: %v", rebuildManifest, err)
	}
	dec := json.NewDecoder(io.LimitReader(tr, 16<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&man); err != nil {
		return man, fmt.Errorf("manifest: %w", err)
	}
	if man.Version != 1 {
		return man, fmt.Errorf("manifest version %d is not 1", man.Version)
	}
	want := map[string]backup.FileSum{}
	for _, f := range man.Files {
		if !fs.ValidPath(f.Name) || f.Name == "." {
			return man, fmt.Errorf("manifest names a file outside the snapshot: %q", f.Name)
		}
		want[f.Name] = f
	}
	got := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return man, fmt.Errorf("stream broken after %d of %d files: %w", len(got), len(want), err)
		}
		f, ok := want[h.Name]
		if !ok || got[h.Name] || h.Typeflag != tar.TypeReg {
			return man, fmt.Errorf("unexpected entry %q in the snapshot", h.Name)
		}
		if h.Size != f.Size {
			return man, fmt.Errorf("%s: %d bytes in the stream, the manifest says %d", f.Name, h.Size, f.Size)
		}
		if err := receiveFile(tr, filepath.Join(dir, filepath.FromSlash(f.Name)), f); err != nil {
			return man, err
		}
		got[h.Name] = true
	}
	for name := range want {
		if !got[name] {
			return man, fmt.Errorf("%s is in the manifest but not in the stream", name)
		}
	}
	return man, syncDir(dir)
}

func receiveFile(r io.Reader, path string, want backup.FileSum) error {
	if err := mkdirDurable(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		return fmt.Errorf("%s: %w", want.Name, err)
	}
	if n != want.Size {
		return fmt.Errorf("%s: received %d bytes, the manifest says %d", want.Name, n, want.Size)
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != want.SHA256 {
		return fmt.Errorf("%s: SHA-256 %s, the manifest says %s", want.Name, sum, want.SHA256)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// installCrashAt stops installRebuild before swapping item i, as a crash
// would (TEST ONLY; -1 = never).
var (
	installCrashAt  = -1
	errInstallCrash = errors.New("node: simulated crash during a re-seed install (test)")
)

// installState is rebuildInstall's content: where the replaced files go.
type installState struct {
	OldDir string `json:"old_dir"`
}

// installRebuild installs a staged re-seed before the node opens its
// storage (see the top of this file). It removes a partial fetch, and
// finishes a swap a crash interrupted. It reports whether it installed.
func installRebuild(dataDir string, async bool, log interface{ Warn(string, ...any) }) (bool, error) {
	if err := os.RemoveAll(filepath.Join(dataDir, rebuildTmpDir)); err != nil {
		return false, err
	}
	staged := filepath.Join(dataDir, rebuildStagedDir)
	var man RebuildManifest
	if err := statefile.Load(filepath.Join(staged, rebuildManifest), &man); errors.Is(err, statefile.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("node: staged re-seed %s: %w", staged, err)
	}
	var ist installState
	switch err := statefile.Load(filepath.Join(staged, rebuildInstall), &ist); {
	case errors.Is(err, statefile.ErrNotExist):
		// Prepare next to the store: an empty journal from L+1, its base,
		// the re-seeded hard state, the catch-up mark.
		if err := os.RemoveAll(filepath.Join(staged, "journal")); err != nil {
			return false, err
		}
		j, err := journal.Open(filepath.Join(staged, "journal"), journal.Options{StartLSN: man.LSN + 1})
		if err != nil {
			return false, fmt.Errorf("node: re-seed journal: %w", err)
		}
		if err := j.Close(); err != nil {
			return false, err
		}
		base := failover.Base{LSN: failover.LSN(man.LSN), Epoch: failover.Epoch(man.BaseEpoch)}
		if err := saveJournalBase(staged, base); err != nil {
			return false, err
		}
		var old failover.HardState
		if err := statefile.Load(filepath.Join(dataDir, "hardstate.json"), &old); err != nil && !errors.Is(err, statefile.ErrNotExist) {
			log.Warn("re-seed: the old hard state is unreadable; starting from an empty one", "err", err)
			old = failover.HardState{}
		}
		hs, err := failover.Reseeded(old, failover.Epoch(man.Epoch), async)
		if err != nil {
			return false, fmt.Errorf("node: staged re-seed: %w; fetch a new one (tandem ctl rebuild)", err)
		}
		if err := statefile.Save(filepath.Join(staged, "hardstate.json"), hs); err != nil {
			return false, err
		}
		if err := statefile.Save(filepath.Join(staged, catchupFile), catchupMark{LSN: man.LSN, Source: man.Source, At: time.Now().UTC()}); err != nil {
			return false, err
		}
		ist = installState{OldDir: "rebuild-old-" + time.Now().UTC().Format("20060102T150405Z")}
		if err := statefile.Save(filepath.Join(staged, rebuildInstall), ist); err != nil {
			return false, err
		}
	case err != nil:
		return false, fmt.Errorf("node: staged re-seed %s: %w", staged, err)
	}
	// The swap: each item moves the current one aside, then the staged one
	// in. Resumable: an item already moved is not in staged any more.
	old := filepath.Join(dataDir, ist.OldDir)
	if err := mkdirDurable(old); err != nil {
		return false, err
	}
	for i, item := range []string{"store", "journal", journalBaseFile, "hardstate.json", catchupFile} {
		if i == installCrashAt {
			return false, errInstallCrash
		}
		from := filepath.Join(staged, item)
		if _, err := os.Stat(from); errors.Is(err, os.ErrNotExist) {
			continue
		}
		cur := filepath.Join(dataDir, item)
		if _, err := os.Stat(cur); err == nil {
			if err := os.Rename(cur, filepath.Join(old, item)); err != nil {
				return false, err
			}
		}
		if err := os.Rename(from, cur); err != nil {
			return false, err
		}
		if err := syncDir(dataDir); err != nil {
			return false, err
		}
		if err := syncDir(old); err != nil {
			return false, err
		}
	}
	if err := os.RemoveAll(staged); err != nil {
		return false, err
	}
	if err := syncDir(dataDir); err != nil {
		return false, err
	}
	log.Warn("re-seed installed: the journal starts after the snapshot; catching up from the primary",
		"lsn", man.LSN, "base_epoch", man.BaseEpoch, "epoch", man.Epoch, "source", man.Source, "replaced_files_kept_in", old)
	return true, nil
}

// catchupMark is catchupFile's content: the member was re-seeded at LSN
// and has not caught up with the primary since.
type catchupMark struct {
	LSN    uint64    `json:"lsn"`
	Source string    `json:"source"`
	At     time.Time `json:"at"`
}

// catchupRead is the primary's commit LSN and when watchCatchup began
// the read that found it.
type catchupRead struct {
	lsn   uint64
	asked time.Time
}

// catchupState is what the loop measures of a re-seeded member: the
// database status (needs-catchup until the primary is heard,
// catchup-running while behind, "" once caught up, when the mark goes).
// Caught up means applied up to the primary's commit LSN as read after
// the primary was last heard again (see mirror.catchupTarget): the loop's
// own view of the primary and an older target both lag when the link has
// just come back, and the member said "normal" with ~200 records still to apply
// (CI, TestPurgedAsyncNeedsRebuildAndIsReseeded).
func (m *mirror) catchupState() string {
	if m.catchup == nil {
		return ""
	}
	tr := m.core.Transfer()
	if m.core.PrimaryLast() == 0 {
		return "needs-catchup"
	}
	if tr.Status == "disconnected" {
		m.catchupHeard = time.Time{} // what it hears first when the link is back is stale
		return "catchup-running"
	}
	if m.catchupHeard.IsZero() {
		m.catchupHeard = time.Now()
	}
	t := m.catchupTarget.Load()
	if t == nil || t.asked.Before(m.catchupHeard) || m.st.AppliedLSN() < t.lsn || tr.Behind > 0 {
		return "catchup-running"
	}
	if err := os.Remove(filepath.Join(filepath.Dir(m.hsPath), catchupFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		m.log.Error("could not remove the catch-up mark", "err", err)
		return "catchup-running"
	}
	m.log.Info("caught up after the re-seed", "snapshot_lsn", m.catchup.LSN, "applied_lsn", m.st.AppliedLSN(), "primary_commit_lsn", t.lsn)
	m.catchup = nil
	m.catchupDone.Store(true)
	return ""
}

// watchCatchup reads, every half second until the re-seeded member has
// caught up, the tier primary's commit LSN from its status: the member is
// caught up once it has applied that much. (Its own view of the primary's
// journal can be stale: appends queued before a link broke arrive first
// when it comes back.)
func (m *mirror) watchCatchup(ctx context.Context) {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: m.creds.ClientConfig("")}}
	defer client.CloseIdleConnections()
	for !m.catchupDone.Load() {
		for _, o := range m.tier.Members {
			if o.Name == m.me.Name {
				continue
			}
			asked := time.Now()
			req, err := http.NewRequestWithContext(ctx, "GET", "https://"+o.HTTP+"/mirror/status", nil)
			if err != nil {
				continue
			}
			resp, err := client.Do(req)
			if err != nil {
				continue
			}
			var st Status
			err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st)
			resp.Body.Close()
			if err == nil && st.Status == string(failover.StatusPrimary) && st.Epoch >= m.snapshot().Epoch {
				m.catchupTarget.Store(&catchupRead{lsn: st.Journal.CommitLSN, asked: asked})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func loadCatchup(dataDir string) (*catchupMark, error) {
	var c catchupMark
	switch err := statefile.Load(filepath.Join(dataDir, catchupFile), &c); {
	case errors.Is(err, statefile.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, err
	}
	return &c, nil
}

// asyncRole says whether a member of the cluster file is an async.
func asyncRole(me cluster.Member) bool { return me.Role != cluster.RoleFailover }
