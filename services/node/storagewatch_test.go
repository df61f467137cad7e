package node_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/services/node"
)

// TestNodeStopsWhenItsDataDirectoryGoes: a node whose data directory is
// removed or replaced while it runs keeps open files that still take
// writes, but nothing written survives a restart. It must stop by itself
// (a mirror partner then takes over) instead of serving on.
func TestNodeStopsWhenItsDataDirectoryGoes(t *testing.T) {
	for _, tc := range []struct {
		name string
		harm func(dir string) error
		want string
	}{
		{"removed", os.RemoveAll, "no such file"},
		{"replaced", func(dir string) error {
			if err := os.Rename(dir, dir+".old"); err != nil {
				return err
			}
			return os.Mkdir(dir, 0o700)
		}, "was replaced"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each waits out the bounded close of a store whose directory is gone
			cfg := node.Config{DataDir: filepath.Join(t.TempDir(), "data"), Listen: "127.0.0.1:0"}
			cfg.SetDefaults()
			n, err := node.Open(cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- n.Run(ctx) }()
			if err := tc.harm(cfg.DataDir); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, node.ErrStorageFailed) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Run returned %v, want a storage failure saying %q", err, tc.want)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the node kept running with its data directory gone")
			}
		})
	}
}
