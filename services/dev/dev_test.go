package dev

import (
	"path/filepath"
	"testing"

	"github.com/tandemhealth/tandem/mirror/cluster"
)

// The dev cluster file for one and for several tiers loads (the loader
// refuses duplicate names and addresses), and the first tier keeps the
// names and ports it had before tiers existed, so old data dirs still fit.
func TestClusterFileForTiers(t *testing.T) {
	for _, n := range []int{1, 3, MaxTiers} {
		dir := t.TempDir()
		path := filepath.Join(dir, "cluster.yaml")
		if err := writeClusterFile(path, dir, 7401, n); err != nil {
			t.Fatal(err)
		}
		f, err := cluster.Load(path)
		if err != nil {
			t.Fatalf("%d tiers: %v", n, err)
		}
		if len(f.Tiers) != n || f.Tiers[0].Name != "records" || f.Tiers[0].Members[0].Name != "a" || f.Tiers[0].Members[0].HTTP != "127.0.0.1:7401" {
			t.Fatalf("%d tiers: first tier %+v", n, f.Tiers[0])
		}
		if n > 1 {
			if m := f.Tiers[1].Members[2]; f.Tiers[1].Name != "records2" || m.Name != "c2" || m.Role != cluster.RoleDR || m.HTTP != "127.0.0.1:7503" {
				t.Fatalf("second tier %s, member %+v", f.Tiers[1].Name, m)
			}
		}
		if got := len(listenAddrs(f)); got != 1+9*n {
			t.Fatalf("%d tiers: %d listen addresses", n, got)
		}
	}
}
