// Package backupd wires backups (package mirror/backup) to a running
// cluster: a backup Source that reads a member through its admin API, and
// the `tandem backup`, `tandem restore` and `tandem ctl backup` commands.
package backupd

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/tandemhealth/tandem/mirror/backup"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/services/ctl"
	"github.com/tandemhealth/tandem/services/node"
)

// Remote is a backup Source over a member's admin API (operator mTLS).
type Remote struct {
	Client *ctl.Client
	Member string
	// Archiver names this archive to the member, which then holds its
	// journal from the last LSN fetched (journal.async_retention at most)
	// so that a purge leaves no gap in the archive. "" for one-off reads.
	Archiver string
}

var _ backup.Source = (*Remote)(nil)

// Name implements backup.Source.
func (r *Remote) Name() string { return r.Member }

// stream is the operator client without the short request timeout: a
// snapshot takes as long as the store is big; ctx bounds it.
func (r *Remote) stream() *http.Client {
	return &http.Client{Transport: r.Client.HTTP.Transport}
}

// Snapshot implements backup.Source: the member checkpoints its store and
// streams it as a tar, unpacked into dir.
func (r *Remote) Snapshot(ctx context.Context, dir string) (uint64, uint64, error) {
	base, err := r.Client.MemberURL(r.Member)
	if err != nil {
		return 0, 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/admin/backup/snapshot", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := r.stream().Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("%s is unreachable: %w", r.Member, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, 0, fmt.Errorf("%s: snapshot refused: HTTP %d: %s", r.Member, resp.StatusCode, data)
	}
	lsn, err1 := strconv.ParseUint(resp.Header.Get(node.HeaderLSN), 10, 64)
	epoch, err2 := strconv.ParseUint(resp.Header.Get(node.HeaderEpoch), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("%s: snapshot without LSN/epoch headers", r.Member)
	}
	if err := untar(resp.Body, dir); err != nil {
		return 0, 0, fmt.Errorf("%s: snapshot stream: %w", r.Member, err)
	}
	return lsn, epoch, nil
}

func untar(rd io.Reader, dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tr := tar.NewReader(rd)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if h.Typeflag != tar.TypeReg || !filepath.IsLocal(h.Name) {
			return fmt.Errorf("unexpected entry %q in the snapshot", h.Name)
		}
		p := filepath.Join(dir, filepath.FromSlash(h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return err
		}
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
}

// Records implements backup.Source.
func (r *Remote) Records(ctx context.Context, from uint64, max int) ([][]byte, error) {
	base, err := r.Client.MemberURL(r.Member)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/admin/backup/records?from=%d&max=%d&archiver=%s", base, from, max, url.QueryEscape(r.Archiver)), nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.stream().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s is unreachable: %w", r.Member, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusGone {
		return nil, fmt.Errorf("%w (%s)", backup.ErrPurged, r.Member)
	}
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("%s: HTTP %d: %s", r.Member, resp.StatusCode, data)
	}
	want, err := strconv.Atoi(resp.Header.Get(node.HeaderRecords))
	if err != nil {
		return nil, fmt.Errorf("%s: answer without a record count", r.Member)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.Member, err)
	}
	var frames [][]byte
	for off := 0; off < len(data); {
		_, n, err := journal.DecodeShippedPrefix(data[off:])
		if err != nil {
			return nil, fmt.Errorf("%s: record %d of the answer: %w", r.Member, len(frames)+1, err)
		}
		frames = append(frames, data[off:off+n])
		off += n
	}
	if len(frames) != want {
		return nil, fmt.Errorf("%s: answer holds %d records, says %d", r.Member, len(frames), want)
	}
	return frames, nil
}

// archiverName names an archive to the member it reads from: this host and
// the archive's absolute path.
func archiverName(to string) string {
	host, _ := os.Hostname()
	if abs, err := filepath.Abs(to); err == nil {
		to = abs
	}
	return host + ":" + to
}

// Backup runs `tandem backup`.
func Backup(ctx context.Context, args []string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	clusterPath := fs.String("cluster", "", "cluster file")
	member := fs.String("member", "", "member to read from (prefer the backup or an async member)")
	to := fs.String("to", "", "backup directory")
	once := fs.Bool("once", false, "archive up to now and exit (takes a first snapshot if none)")
	snapshot := fs.Bool("snapshot", false, "take a new snapshot first")
	interval := fs.Duration("interval", time.Second, "archiving interval (the precision of a restore to a time)")
	every := fs.Duration("snapshot-every", 24*time.Hour, "take a new snapshot this often (0: never)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *clusterPath == "" || *member == "" || *to == "" {
		return errors.New("--cluster, --member and --to are required")
	}
	c, err := ctl.Load(*clusterPath)
	if err != nil {
		return err
	}
	if _, err := c.MemberURL(*member); err != nil {
		return fmt.Errorf("field --member: %w", err)
	}
	a := &backup.Archiver{Source: &Remote{Client: c, Member: *member, Archiver: archiverName(*to)}, Store: backup.Dir{Root: *to}, Log: log, TempDir: *to}
	if err := os.MkdirAll(*to, 0o750); err != nil {
		return err
	}
	cat, err := backup.ReadCatalog(a.Store)
	if err != nil {
		return err
	}
	if *snapshot || len(cat.Snapshots) == 0 {
		m, err := a.Snapshot(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "snapshot at LSN %d (epoch %d) from %s\n", m.LSN, m.Epoch, m.Member)
	}
	if *once {
		n, err := a.ArchiveOnce(ctx)
		if err != nil {
			return err
		}
		cat, err := backup.ReadCatalog(a.Store)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "archived %d records; the archive ends at LSN %d\n", n, cat.ArchivedLSN())
		return nil
	}
	log.Info("backup archiving", "member", *member, "to", *to, "interval", interval.String())
	return a.Run(ctx, *interval, *every)
}

// Restore runs `tandem restore`.
func Restore(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	from := fs.String("from", "", "backup directory")
	dest := fs.String("data", "", "new data directory to create")
	toLSN := fs.Uint64("to-lsn", 0, "restore every record up to this LSN")
	toTime := fs.String("to-time", "", "restore every record archived by this time (RFC 3339)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	newTier := fs.Bool("new-tier", false, "make the restored content the first history of a NEW tier: a journal from LSN 1 in epoch 1, to be the data dir of the new tier's first failover member (its partner starts empty and catches up)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *from == "" || *dest == "" {
		return errors.New("--from and --data are required")
	}
	var target backup.Target
	target.LSN = *toLSN
	if *toTime != "" {
		t, err := time.Parse(time.RFC3339Nano, *toTime)
		if err != nil {
			return fmt.Errorf("field --to-time: %w (use RFC 3339, e.g. 2026-11-26T09:30:00Z)", err)
		}
		target.Time = t
	}
	restore := backup.Restore
	if *newTier {
		restore = backup.RestoreNewTier
	}
	rep, err := restore(ctx, backup.Dir{Root: *from}, target, *dest)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rep)
	}
	fmt.Fprintf(stdout, "restored to LSN %d (epoch %d): snapshot %d + %d archived records in %s\n", rep.LSN, rep.Epoch, rep.SnapshotLSN, rep.Replayed, rep.Took.Round(time.Millisecond))
	if !rep.ArchivedBy.IsZero() {
		fmt.Fprintf(stdout, "every record archived by %s is included (the archiving interval bounds how much earlier the last one was committed)\n", rep.ArchivedBy.Format(time.RFC3339Nano))
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DATABASE\tCONTENT SHA-256")
	for db, h := range rep.Hashes {
		fmt.Fprintf(tw, "%s\t%s\n", db, h)
	}
	tw.Flush()
	if nt := rep.NewTier; nt != nil {
		fmt.Fprintf(stdout, "new tier: epoch %d, LSNs %d-%d (the epoch marker, then %d keys in %d records); the old tier's LSNs and epochs are not kept\n",
			nt.Epoch, nt.FirstLSN, nt.LastLSN, nt.Keys, nt.DataRecords)
		fmt.Fprintf(stdout, "start it: make %s the data_dir of the new tier's first failover member, `tandem arbiter seed` the tier with it as --primary, start its partner with an empty data_dir (it catches up)\n", *dest)
		return nil
	}
	fmt.Fprintf(stdout, "start it: tandem node --config FILE with data_dir: %s\n", *dest)
	return nil
}

// Ctl runs `tandem ctl backup list|verify|prune --from DIR`.
func Ctl(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: tandem ctl backup list|verify|prune --from DIR [--json] [--keep N]")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("ctl backup "+cmd, flag.ContinueOnError)
	from := fs.String("from", "", "backup directory")
	asJSON := fs.Bool("json", false, "JSON output")
	keep := fs.Int("keep", 0, "prune: snapshots to keep (the newest)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *from == "" {
		return errors.New("--from DIR is required")
	}
	if _, err := os.Stat(*from); err != nil {
		return fmt.Errorf("field --from: %w", err)
	}
	st := backup.Dir{Root: *from}
	switch cmd {
	case "list":
		cat, err := backup.ReadCatalog(st)
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(cat)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SNAPSHOT LSN\tEPOCH\tTAKEN\tMEMBER\tFILES")
		for _, s := range cat.Snapshots {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%d\n", s.LSN, s.Epoch, s.TakenAt.Format(time.RFC3339), s.Member, len(s.Files))
		}
		tw.Flush()
		if n := len(cat.Chunks); n > 0 {
			var recs int
			for _, c := range cat.Chunks {
				recs += c.Records
			}
			fmt.Fprintf(stdout, "\narchive: %d chunks, %d records, LSN %d-%d, last archived %s\n", n, recs, cat.Chunks[0].FirstLSN, cat.Chunks[n-1].LastLSN, cat.Chunks[n-1].ArchivedAt.Format(time.RFC3339))
		} else {
			fmt.Fprintln(stdout, "\narchive: empty")
		}
		return nil
	case "verify":
		rep, err := backup.Verify(st)
		if err != nil {
			return err
		}
		if *asJSON {
			if err := json.NewEncoder(stdout).Encode(rep); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(stdout, "%d snapshots, %d chunks, %d records checked; restorable LSNs %d-%d\n", rep.Snapshots, rep.Chunks, rep.Records, rep.FirstLSN, rep.LastLSN)
			for _, p := range rep.Problems {
				fmt.Fprintf(stdout, "PROBLEM %s: %s\n", p.Object, p.Error)
			}
		}
		if len(rep.Problems) > 0 {
			return fmt.Errorf("%d problems: the archive cannot restore across them; take a new snapshot (tandem backup --snapshot)", len(rep.Problems))
		}
		return nil
	case "prune":
		if *keep < 1 {
			return errors.New("field --keep: give the number of newest snapshots to keep (>= 1)")
		}
		s, c, err := backup.Prune(st, *keep)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted %d snapshots and %d chunks\n", s, c)
		return nil
	}
	return fmt.Errorf("unknown backup command %q: list, verify or prune", cmd)
}
