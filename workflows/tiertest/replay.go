package tiertest

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
)

// Replay replays every history recorded from real runs in the calling
// package's testdata/ (written by go test ./cmd/tandem -run
// TestWorkflowsOnARealTier -args -update-histories) against the workflows
// register adds: a change that would make a running workflow take another
// path fails here.
func Replay(t *testing.T, register func(worker.WorkflowReplayer)) {
	t.Helper()
	files, _ := filepath.Glob("testdata/*.json")
	if len(files) == 0 {
		t.Fatal("no recorded histories in testdata/")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			register(r)
			quiet := log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err := r.ReplayWorkflowHistoryFromJSONFile(quiet, f); err != nil {
				t.Fatal(err)
			}
		})
	}
}
