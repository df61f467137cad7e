package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemhealth/tandem/mirror/backup"
	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
)

// TestNewTierSeed: a `tandem restore --new-tier` directory starts the
// genesis only on the tier's first failover member, and only while its
// journal is the one epoch-1 history the restore wrote.
func TestNewTierSeed(t *testing.T) {
	dir := t.TempDir()
	ids := []failover.ID{"a", "b"}
	a := cluster.Member{Name: "a", Role: cluster.RoleFailover}
	restored := []failover.Entry{{Epoch: 1, LSN: 1, Marker: true}, {Epoch: 1, LSN: 2}, {Epoch: 1, LSN: 3}}
	if ok, err := newTierSeed(dir, restored, a, ids); ok || err != nil {
		t.Fatalf("without the seed file: %v %v", ok, err)
	}
	if err := os.WriteFile(filepath.Join(dir, backup.NewTierSeedFile), []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ok, err := newTierSeed(dir, restored, a, ids); !ok || err != nil {
		t.Fatalf("genesis primary with a restored journal: %v %v", ok, err)
	}
	if _, err := newTierSeed(dir, restored, cluster.Member{Name: "b", Role: cluster.RoleFailover}, ids); err == nil || !strings.Contains(err.Error(), "data dir of a") {
		t.Fatalf("second member: %v", err)
	}
	written := append(restored[:3:3], failover.Entry{Epoch: 2, LSN: 4, Marker: true})
	if _, err := newTierSeed(dir, written, a, ids); err == nil {
		t.Fatal("a journal with a later epoch was taken as a new tier")
	}
}
