package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tandemhealth/tandem/services/node"
)

// rebuild re-seeds a member that needs a rebuild from the tier's primary
// (POST /admin/rebuild on the member, which fetches, verifies and installs
// a snapshot) and follows it until its databases are normal again.
func rebuild(ctx context.Context, c *Client, rest []string, stdout io.Writer) error {
	force := slices.Contains(rest, "--force")
	offline := slices.Contains(rest, "--offline")
	rest = slices.DeleteFunc(slices.Clone(rest), func(s string) bool { return s == "--force" || s == "--offline" })
	if len(rest) != 1 {
		return errors.New("usage: tandem ctl rebuild MEMBER [--force | --offline]   (re-seed a member that needs a rebuild from the tier's primary; --offline: on the host of a member that cannot start, e.g. a corrupt journal)")
	}
	member := rest[0]
	tier := c.tierOf(member)
	if tier == "" {
		return fmt.Errorf("no member %q in the cluster file", member)
	}
	primary, err := c.Primary(ctx, tier)
	if err != nil {
		return err
	}
	if primary == member {
		return fmt.Errorf("refused: %s is the primary of tier %s; a primary is never re-seeded (hand the role over first: tandem ctl planned-failover %s)", member, tier, tier)
	}
	if offline {
		return rebuildOffline(ctx, c, tier, member, primary, stdout)
	}
	var before map[string]any
	if err := c.Do(ctx, "GET", member, "/mirror/status", nil, &before); err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{"source": primary, "force": force})
	if err := c.Do(ctx, "POST", member, "/admin/rebuild", body, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: re-seeding from %s (was %v)\n", member, primary, before["status"])
	deadline := time.Now().Add(30 * time.Minute)
	last := ""
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		var st map[string]any
		if err := c.Do(ctx, "GET", member, "/mirror/status", nil, &st); err != nil {
			continue // restarting to install the snapshot
		}
		rb, _ := st["rebuild"].(map[string]any)
		if rb != nil && rb["state"] == "failed" {
			return fmt.Errorf("%s: re-seed failed, nothing installed: %v", member, rb["error"])
		}
		dbs := dbStates(st)
		line := fmt.Sprintf("%s: %v, databases %s", member, st["status"], dbs)
		if rb != nil {
			line += fmt.Sprintf(", re-seed %v", rb["state"])
		}
		if line != last {
			fmt.Fprintln(stdout, line)
			last = line
		}
		restarted := st["started_at"] != before["started_at"]
		if restarted && (st["status"] == "backup" || st["status"] == "async") && dbs == "normal" {
			j, _ := st["journal"].(map[string]any)
			fmt.Fprintf(stdout, "%s rebuilt from %s and caught up (applied to LSN %v)\n", member, primary, j["commit_lsn"])
			return nil
		}
	}
	return fmt.Errorf("%s has not caught up after 30 minutes: see tandem ctl status", member)
}

// dbStates summarizes the databases' statuses: one word when they agree.
func dbStates(st map[string]any) string {
	dbs, _ := st["databases"].([]any)
	var states []string
	for _, d := range dbs {
		m, _ := d.(map[string]any)
		s := fmt.Sprint(m["status"])
		if !slices.Contains(states, s) {
			states = append(states, s)
		}
	}
	return strings.Join(states, "/")
}

// rebuildOffline stages the primary's snapshot in the data directory of a
// member that is not running (it refuses to start: a corrupt journal), on
// its host; its next start installs it and catches up.
func rebuildOffline(ctx context.Context, c *Client, tier, member, primary string, stdout io.Writer) error {
	t, _ := c.File.Tier(tier)
	m, _ := t.Member(member)
	src, _ := t.Member(primary)
	if _, err := os.Stat(m.DataDir); err != nil {
		return fmt.Errorf("%s is not on this host (%v): run tandem ctl rebuild %s --offline on %s's host", m.DataDir, err, member, member)
	}
	tr, ok := c.HTTP.Transport.(*http.Transport)
	if !ok {
		return errors.New("the operator client has no TLS transport")
	}
	fmt.Fprintf(stdout, "%s: fetching a snapshot from %s into %s\n", member, primary, m.DataDir)
	man, err := node.StageOfflineReseed(ctx, m.DataDir, tier, member, src, tr.TLSClientConfig)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: snapshot of %s at LSN %d (epoch %d, %d files) verified and staged; start %s's node: it installs the snapshot in place of its journal and store, then catches up from %s (watch tandem ctl status)\n",
		member, primary, man.LSN, man.Epoch, len(man.Files), member, primary)
	return nil
}
