package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// rebuild re-seeds a member that needs a rebuild from the tier's primary
// (POST /admin/rebuild on the member, which fetches, verifies and installs
// a snapshot) and follows it until its databases are normal again.
func rebuild(ctx context.Context, c *Client, rest []string, stdout io.Writer) error {
	force := slices.Contains(rest, "--force")
	rest = slices.DeleteFunc(slices.Clone(rest), func(s string) bool { return s == "--force" })
	if len(rest) != 1 {
		return errors.New("usage: tandem ctl rebuild MEMBER [--force]   (re-seed a member that needs a rebuild from the tier's primary)")
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
