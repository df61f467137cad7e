package agent

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/statefile"
	"github.com/tandemhealth/tandem/services/node"
)

// A member process that holds its journal (it is starting and has not
// written its pid file yet) makes the fence fail without marking the data
// directory: the mark is written only while the agent holds the journal,
// so no starting node can read the directory unmarked and then serve.
func TestFenceMarksOnlyWhileHoldingTheJournal(t *testing.T) {
	dir := t.TempDir()
	jdir := filepath.Join(dir, "journal")
	j, err := journal.Open(jdir, journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(context.Background(), journal.TypeEpochMarker, 1, "", journal.EncodeEpochMarker(0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := statefile.Save(filepath.Join(dir, "hardstate.json"), failover.HardState{Epoch: 1, Role: failover.RolePrimary}); err != nil {
		t.Fatal(err)
	}
	s := &Server{log: slog.New(slog.NewTextHandler(io.Discard, nil)), member: cluster.Member{Name: "a", DataDir: dir}, id: "agent-a"}

	if _, err := s.fence(); err == nil || !strings.Contains(err.Error(), "member journal") {
		t.Fatalf("fence with the journal held by a starting node: %v", err)
	}
	if node.FenceMarked(dir) {
		t.Fatal("the data directory was marked while a node held its journal")
	}

	j.Close()
	done, err := s.fence()
	if err != nil {
		t.Fatal(err)
	}
	if !node.FenceMarked(dir) || done.Type != failover.MsgFenceDone || done.Epoch != 1 || len(done.Entries) != 1 {
		t.Fatalf("fence: marked %v, %+v", node.FenceMarked(dir), done)
	}
	// The journal is free again for the member's next start.
	j, err = journal.Open(jdir, journal.Options{})
	if err != nil {
		t.Fatalf("journal still held after the fence: %v", err)
	}
	j.Close()
}
