package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

// addDatabase imports an existing database into a running tier (POST
// /admin/databases/{db}/import on the primary, whose host holds the source
// store), follows the import, then checks that every member that answers
// holds the source's content.
func addDatabase(ctx context.Context, c *Client, rest []string, asJSON bool, stdout io.Writer) error {
	fs := flag.NewFlagSet("add-database", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	from := fs.String("from", "", "")
	sourceDB := fs.String("source-db", "", "")
	by := fs.String("by", os.Getenv("USER"), "")
	var pos []string
	for len(rest) > 0 {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		rest = fs.Args()
		if len(rest) > 0 {
			pos, rest = append(pos, rest[0]), rest[1:]
		}
	}
	const usage = "usage: tandem ctl add-database TIER DATABASE --from /abs/path/to/store [--source-db NAME]   (the store directory of a stopped node or of a restore, on the primary's host)"
	if len(pos) != 2 || *from == "" {
		return errors.New(usage)
	}
	tier, db := pos[0], pos[1]
	t, ok := c.File.Tier(tier)
	if !ok {
		return fmt.Errorf("no tier %q in the cluster file", tier)
	}
	primary, err := c.Primary(ctx, tier)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]string{"source_dir": *from, "source_database": *sourceDB, "by": *by})
	if err := c.Do(ctx, "POST", primary, "/admin/databases/"+db+"/import", body, nil); err != nil {
		return err
	}
	if !asJSON {
		fmt.Fprintf(stdout, "%s: importing %s into database %s through the journal\n", primary, *from, db)
	}
	var rec struct {
		State        string `json:"state"`
		SourceSHA256 string `json:"source_sha256"`
		Keys         int    `json:"keys"`
		Bytes        int64  `json:"bytes"`
		FirstLSN     uint64 `json:"first_lsn"`
		LastLSN      uint64 `json:"last_lsn"`
		Error        string `json:"error"`
	}
	last := ""
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
		if err := c.Do(ctx, "GET", primary, "/admin/databases/"+db+"/import", nil, &rec); err != nil {
			return err
		}
		if rec.Error != "" {
			return fmt.Errorf("import of %s failed on %s: %s (run the command again to finish it)", db, primary, rec.Error)
		}
		if line := fmt.Sprintf("  %s: %d keys, %d bytes", rec.State, rec.Keys, rec.Bytes); line != last && !asJSON {
			fmt.Fprintln(stdout, line)
			last = line
		}
		if rec.State == "normal" {
			break
		}
	}
	// Every member converges on the source's content.
	type memberHash struct {
		Member string `json:"member"`
		SHA256 string `json:"sha256"`
		Error  string `json:"error,omitempty"`
	}
	var hashes []memberHash
	deadline := time.Now().Add(2 * time.Minute)
	for _, m := range t.Members {
		h := memberHash{Member: m.Name}
		for {
			var got struct{ SHA256 string }
			err := c.Do(ctx, "GET", m.Name, "/admin/hash/"+db, nil, &got)
			if err == nil && got.SHA256 == rec.SourceSHA256 {
				h.SHA256 = got.SHA256
				break
			}
			if time.Now().After(deadline) {
				h.SHA256 = got.SHA256
				if err != nil {
					h.Error = err.Error()
				} else {
					h.Error = "content differs from the source (still catching up?)"
				}
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		hashes = append(hashes, h)
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(map[string]any{"database": db, "import": rec, "members": hashes})
	}
	bad := 0
	for _, h := range hashes {
		status := "equal to the source"
		if h.Error != "" {
			status, bad = h.Error, bad+1
		}
		fmt.Fprintf(stdout, "  %-12s %.16s  %s\n", h.Member, h.SHA256, status)
	}
	if bad > 0 {
		return fmt.Errorf("%d member(s) do not hold the source's content of %s yet: see tandem ctl status", bad, db)
	}
	fmt.Fprintf(stdout, "database %s added: %d keys at LSN %d-%d, on every member\n", db, rec.Keys, rec.FirstLSN, rec.LastLSN)
	return nil
}
