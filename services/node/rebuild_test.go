package node

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemhealth/tandem/mirror/backup"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/statefile"
)

// snapshotTar builds a re-seed stream: the manifest, then files (name ->
// content as sent; the manifest describes want).
func snapshotTar(t *testing.T, man RebuildManifest, sent map[string]string, order []string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	mj, _ := json.Marshal(man)
	tw.WriteHeader(&tar.Header{Name: rebuildManifest, Mode: 0o600, Size: int64(len(mj)), Typeflag: tar.TypeReg})
	tw.Write(mj)
	for _, name := range order {
		c := sent[name]
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(c)), Typeflag: tar.TypeReg})
		tw.Write([]byte(c))
	}
	tw.Close()
	return b.Bytes()
}

func sum(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

// TestReceiveSnapshotChecksEveryFile: sizes, SHA-256, missing and
// unexpected files are errors naming the file.
func TestReceiveSnapshotChecksEveryFile(t *testing.T) {
	files := map[string]string{"000001.sst": "table one", "MANIFEST-000001": "pebble manifest"}
	man := RebuildManifest{Version: 1, Tier: "records", Source: "a", LSN: 9, BaseEpoch: 1, Epoch: 2}
	for _, name := range []string{"000001.sst", "MANIFEST-000001"} {
		man.Files = append(man.Files, backup.FileSum{Name: name, Size: int64(len(files[name])), SHA256: sum(files[name])})
	}
	all := []string{"000001.sst", "MANIFEST-000001"}
	damaged := map[string]string{"000001.sst": "table 0ne", "MANIFEST-000001": files["MANIFEST-000001"]}
	extra := map[string]string{"000001.sst": files["000001.sst"], "MANIFEST-000001": files["MANIFEST-000001"], "evil": "x"}
	for _, c := range []struct {
		name   string
		stream []byte
		want   string
	}{
		{"complete", snapshotTar(t, man, files, all), ""},
		{"damaged file", snapshotTar(t, man, damaged, all), "000001.sst: SHA-256"},
		{"missing file", snapshotTar(t, man, files, all[:1]), "MANIFEST-000001 is in the manifest but not in the stream"},
		{"unexpected file", snapshotTar(t, man, extra, append(all, "evil")), `unexpected entry "evil"`},
		{"cut stream", snapshotTar(t, man, files, all)[:1500], "stream broken"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			got, err := receiveSnapshot(bytes.NewReader(c.stream), dir)
			if c.want == "" {
				if err != nil || got.LSN != 9 {
					t.Fatalf("got %+v, %v", got, err)
				}
				b, _ := os.ReadFile(filepath.Join(dir, "000001.sst"))
				if string(b) != files["000001.sst"] {
					t.Fatalf("file content %q", b)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("want an error containing %q, got %v", c.want, err)
			}
		})
	}
}

// TestInstallRebuildIsResumable: a staged re-seed is installed at start —
// an empty journal from L+1 with its base, the re-seeded hard state, the
// catch-up mark — and a swap a crash interrupted is finished at the next
// start; the replaced files are kept aside.
func TestInstallRebuildIsResumable(t *testing.T) {
	for _, crashAt := range []int{-1, 0, 2, 4} { // -1: no crash
		data := t.TempDir()
		for _, d := range []string{"store", "journal"} {
			os.MkdirAll(filepath.Join(data, d), 0o700)
			os.WriteFile(filepath.Join(data, d, "old"), []byte("old "+d), 0o600)
		}
		old := failover.HardState{Epoch: 1, Role: failover.RoleAsync, NeedsRebuild: true, ArbiterSession: 3}
		if err := statefile.Save(filepath.Join(data, "hardstate.json"), old); err != nil {
			t.Fatal(err)
		}
		staged := filepath.Join(data, rebuildStagedDir)
		os.MkdirAll(filepath.Join(staged, "store"), 0o700)
		os.WriteFile(filepath.Join(staged, "store", "new"), []byte("new store"), 0o600)
		man := RebuildManifest{Version: 1, Tier: "records", Source: "a", LSN: 41, BaseEpoch: 2, Epoch: 3}
		statefile.Save(filepath.Join(staged, rebuildManifest), man)
		log := slog.New(slog.DiscardHandler)
		if crashAt >= 0 {
			// a first start that prepared everything, moved crashAt items and died
			installCrashAt = crashAt
			_, err := installRebuild(data, true, log)
			installCrashAt = -1
			if err != errInstallCrash {
				t.Fatalf("crash at %d: %v", crashAt, err)
			}
		}
		ok, err := installRebuild(data, true, log)
		if err != nil || !ok {
			t.Fatalf("crash at %d, install: %v %v", crashAt, ok, err)
		}
		if b, _ := os.ReadFile(filepath.Join(data, "store", "new")); string(b) != "new store" {
			t.Fatalf("store not installed")
		}
		j, err := journal.Open(filepath.Join(data, "journal"), journal.Options{})
		if err != nil {
			t.Fatal(err)
		}
		base, entries, err := ReadMemberJournal(data, j)
		j.Close()
		if err != nil || base != (failover.Base{LSN: 41, Epoch: 2}) || len(entries) != 0 {
			t.Fatalf("journal base %v, %d entries, %v", base, len(entries), err)
		}
		var hs failover.HardState
		statefile.Load(filepath.Join(data, "hardstate.json"), &hs)
		if hs.Epoch != 3 || hs.Role != failover.RoleAsync || hs.NeedsRebuild || hs.ArbiterSession != 3 {
			t.Fatalf("hard state %+v", hs)
		}
		if c, err := loadCatchup(data); err != nil || c == nil || c.LSN != 41 {
			t.Fatalf("catch-up mark %+v %v", c, err)
		}
		if olds, _ := filepath.Glob(filepath.Join(data, "rebuild-old-*", "store", "old")); len(olds) != 1 {
			t.Fatalf("the replaced store is not kept aside: %v", olds)
		}
		if _, err := os.Stat(staged); !os.IsNotExist(err) {
			t.Fatalf("staged dir left behind: %v", err)
		}
		if ok, err := installRebuild(data, true, log); ok || err != nil {
			t.Fatalf("a second start installs nothing: %v %v", ok, err)
		}
	}
}
