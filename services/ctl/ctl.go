// Package ctl is the administrator's command line (tandem ctl): it reads
// the cluster file, talks to every member over HTTPS with the operator's
// certificate, and prints tables for people or JSON for scripts.
//
// It never changes anything without saying what it changed, and its errors
// say what to do next.
package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/services/node"
)

// Client talks to the members of a cluster as the operator.
type Client struct {
	File *cluster.File
	HTTP *http.Client
}

// NewClient builds an operator client from the cluster file.
func NewClient(f *cluster.File) (*Client, error) {
	return NewClientAs(f, "operator")
}

// NewClientAs builds a client with another identity's certificate (the
// gateway's, for the Mirror Monitor: /mirror/status needs no privilege).
func NewClientAs(f *cluster.File, identity string) (*Client, error) {
	creds, err := f.Credentials(identity)
	if err != nil {
		return nil, fmt.Errorf("%s credentials: %w", identity, err)
	}
	tc := creds.ClientConfig("")
	return &Client{File: f, HTTP: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}}, nil
}

// Load reads a cluster file and builds an operator client for it.
func Load(clusterPath string) (*Client, error) {
	f, err := cluster.Load(clusterPath)
	if err != nil {
		return nil, err
	}
	return NewClient(f)
}

// MemberStatus is one member's /mirror/status plus whether it answered.
type MemberStatus struct {
	Tier   string         `json:"tier"`
	Member string         `json:"member"`
	URL    string         `json:"url"`
	Status map[string]any `json:"status,omitempty"`
	Error  string         `json:"error,omitempty"`
}

// Statuses asks every member of every tier for its status, all at once
// (a member that hangs delays the answer, not the other members' reads),
// in cluster-file order.
func (c *Client) Statuses(ctx context.Context) []MemberStatus {
	var out []MemberStatus
	for _, t := range c.File.Tiers {
		for _, m := range t.Members {
			out = append(out, MemberStatus{Tier: t.Name, Member: m.Name, URL: "https://" + m.HTTP})
		}
	}
	var wg sync.WaitGroup
	for i := range out {
		wg.Add(1)
		go func(ms *MemberStatus) {
			defer wg.Done()
			var st map[string]any
			if err := c.getJSON(ctx, ms.URL+"/mirror/status", &st); err != nil {
				ms.Error = err.Error()
			} else {
				ms.Status = st
			}
		}(&out[i])
	}
	wg.Wait()
	return out
}

// Failover is a failover the tier's primary recorded in its gate log: the
// newest allowed decision that made a member primary.
type Failover struct {
	At        time.Time `json:"at"`
	Operation string    `json:"operation"` // planned_failover, automatic_failover, promote_async
	Target    string    `json:"target"`
}

// LastFailovers reads the gate log of each tier's primary (as sts reports
// it) and returns, per "tier/member", the newest allowed failover to that
// member. A tier whose primary does not answer is left out.
func (c *Client) LastFailovers(ctx context.Context, sts []MemberStatus) map[string]Failover {
	out := map[string]Failover{}
	for _, s := range sts {
		if s.Error != "" || s.Status["status"] != "primary" {
			continue
		}
		var log struct {
			Decisions []struct {
				Failover
				Allowed bool `json:"allowed"`
			} `json:"decisions"`
		}
		if err := c.getJSON(ctx, s.URL+"/admin/gate/log?limit=200", &log); err != nil {
			continue
		}
		for _, d := range log.Decisions {
			switch d.Operation {
			case "planned_failover", "automatic_failover", "promote_async":
			default:
				continue
			}
			k := s.Tier + "/" + d.Target
			if d.Allowed && d.At.After(out[k].At) {
				out[k] = d.Failover
			}
		}
	}
	return out
}

// PrintStatus writes a table per tier.
func PrintStatus(w io.Writer, sts []MemberStatus) {
	PrintStatusTable(w, sts, nil, time.Now())
}

// PrintStatusTable writes a table per tier: member, role, status, epoch,
// transfer, lag (records behind the tier primary's commit LSN), commit
// LSN, alignment (the member's last gate verdict), last failover to the
// member (from last, at now), mode and links.
func PrintStatusTable(w io.Writer, sts []MemberStatus, last map[string]Failover, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	primaryCommit := map[string]float64{}
	for _, s := range sts {
		if s.Error == "" && s.Status["status"] == "primary" {
			j, _ := s.Status["journal"].(map[string]any)
			primaryCommit[s.Tier], _ = j["commit_lsn"].(float64)
		}
	}
	tier := ""
	for _, s := range sts {
		if s.Tier != tier {
			if tier != "" {
				fmt.Fprintln(tw)
			}
			tier = s.Tier
			fmt.Fprintf(tw, "TIER %s\nMEMBER\tROLE\tSTATUS\tEPOCH\tTRANSFER\tLAG\tCOMMIT LSN\tALIGNMENT\tLAST FAILOVER\tMODE\tLINKS\n", tier)
		}
		if s.Error != "" {
			fmt.Fprintf(tw, "%s\t-\tdown\t-\t-\t-\t-\t-\t-\t-\t%s\n", s.Member, shorten(s.Error, 60))
			continue
		}
		j, _ := s.Status["journal"].(map[string]any)
		links := []string{}
		if l, ok := s.Status["links"].(map[string]any); ok {
			for k, v := range l {
				state := "up"
				if v != true {
					state = "down"
				}
				links = append(links, k+":"+state)
			}
			sort.Strings(links)
		}
		transfer := "-"
		if tr, ok := s.Status["transfer"].(map[string]any); ok {
			transfer = fmt.Sprint(tr["status"])
			if n, _ := tr["behind_records"].(float64); n > 0 {
				transfer += fmt.Sprintf(" (%v records", n)
				if sec, _ := tr["behind_seconds"].(float64); sec > 0 {
					transfer += fmt.Sprintf(", %gs", sec)
				}
				transfer += ")"
			}
		}
		lag := "-"
		if pc, ok := primaryCommit[s.Tier]; ok {
			c, _ := j["commit_lsn"].(float64)
			lag = fmt.Sprint(uint64(max(pc-c, 0)))
		}
		mode := "-"
		if m, ok := s.Status["mode"].(string); ok && m != "" {
			mode = m
		}
		fo := "-"
		if f, ok := last[s.Tier+"/"+s.Member]; ok {
			fo = fmt.Sprintf("%s, %s ago", f.Operation, now.Sub(f.At).Round(time.Second))
		}
		fmt.Fprintf(tw, "%s\t%v\t%v\t%v\t%s\t%s\t%v\t%s\t%s\t%s\t%s\n", s.Member, s.Status["role"], s.Status["status"], s.Status["epoch"],
			transfer, lag, j["commit_lsn"], alignment(s.Status), fo, mode, strings.Join(links, " "))
	}
	tw.Flush()
	// Alerts: what an operator must act on (a member needing a rebuild, an
	// async the primary no longer holds the journal for).
	seen := map[string]bool{}
	for _, s := range sts {
		alerts, _ := s.Status["alerts"].([]any)
		for _, a := range alerts {
			line := fmt.Sprintf("ALERT %s/%s: %v", s.Tier, s.Member, a)
			if !seen[line] {
				seen[line] = true
				fmt.Fprintln(w, line)
			}
		}
	}
}

// alignment summarizes the member's last gate verdict (the gate object of
// /mirror/status): aligned, DRIFT with the first reason, or a policy error.
func alignment(st map[string]any) string {
	g, ok := st["gate"].(map[string]any)
	if !ok {
		return "-"
	}
	if e, _ := g["policy_error"].(string); e != "" {
		return "policy error: " + shorten(e, 40)
	}
	if g["aligned"] == true {
		return "aligned"
	}
	if d, _ := g["deny"].([]any); len(d) > 0 {
		return "DRIFT: " + shorten(fmt.Sprint(d[0]), 40)
	}
	return "DRIFT"
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// MemberURL is the HTTPS base of a member.
func (c *Client) MemberURL(name string) (string, error) {
	for _, t := range c.File.Tiers {
		if m, ok := t.Member(name); ok {
			return "https://" + m.HTTP, nil
		}
	}
	return "", fmt.Errorf("no member %q in the cluster file", name)
}

// Primary finds the member of tier that answers /mirror/primary with 200.
func (c *Client) Primary(ctx context.Context, tier string) (string, error) {
	t, ok := c.File.Tier(tier)
	if !ok {
		return "", fmt.Errorf("no tier %q in the cluster file", tier)
	}
	for _, m := range t.Members {
		req, _ := http.NewRequestWithContext(ctx, "GET", "https://"+m.HTTP+"/mirror/primary", nil)
		resp, err := c.HTTP.Do(req)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return m.Name, nil
		}
	}
	return "", fmt.Errorf("no member of tier %q says it is primary: run `tandem ctl status` to see why", tier)
}

// Do sends an admin request to a member and decodes the JSON answer.
func (c *Client) Do(ctx context.Context, method, member, path string, body []byte, out any) error {
	base, err := c.MemberURL(member)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if strings.HasPrefix(path, "/fhir") && len(body) > 0 {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("%s is unreachable: %w", member, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s: %s (HTTP %d)", member, e.Error, resp.StatusCode)
		}
		return fmt.Errorf("%s: HTTP %d: %s", member, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out == nil {
		return nil
	}
	if b, ok := out.(*[]byte); ok {
		*b = data
		return nil
	}
	return json.Unmarshal(data, out)
}

func (c *Client) getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Main runs `tandem ctl ARGS`.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(ctlUsage)
	}
	cmd, args := args[0], args[1:]
	var clusterPath string
	var asJSON, watch bool
	var rest []string
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--confirm" && i+1 < len(args):
			rest = append(rest, "--confirm="+args[i+1])
			i++
		case a == "--stated-gone" && i+1 < len(args):
			rest = append(rest, "--stated-gone="+args[i+1])
			i++
		case a == "--cluster" && i+1 < len(args):
			clusterPath = args[i+1]
			i++
		case strings.HasPrefix(a, "--cluster="):
			clusterPath = strings.TrimPrefix(a, "--cluster=")
		case a == "--json":
			asJSON = true
		case a == "--watch":
			watch = true
		default:
			rest = append(rest, a)
		}
	}
	if cmd == "workflow" { // talks to Temporal, not to the members
		return workflowMain(ctx, rest, clusterPath, asJSON, watch, stdout)
	}
	if clusterPath == "" {
		clusterPath = os.Getenv("TANDEM_CLUSTER")
	}
	if clusterPath == "" {
		return errors.New("--cluster FILE (or TANDEM_CLUSTER) is required; `make dev` writes .tandem/dev/cluster.yaml")
	}
	f, err := cluster.Load(clusterPath)
	if err != nil {
		return err
	}
	c, err := NewClient(f)
	if err != nil {
		return err
	}
	switch cmd {
	case "status":
		for {
			sts := c.Statuses(ctx)
			if asJSON {
				enc := json.NewEncoder(stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(sts); err != nil {
					return err
				}
			} else {
				if watch {
					fmt.Fprint(stdout, "\033[H\033[2J") // clear the terminal
					fmt.Fprintf(stdout, "%s  (every second; Ctrl-C to stop)\n\n", time.Now().Format(time.TimeOnly))
				}
				PrintStatusTable(stdout, sts, c.LastFailovers(ctx, sts), time.Now())
			}
			if !watch {
				return nil
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	case "put": // put TIER DB KEY VALUE
		if len(rest) != 4 {
			return errors.New("usage: tandem ctl put TIER DATABASE KEY VALUE")
		}
		p, err := c.Primary(ctx, rest[0])
		if err != nil {
			return err
		}
		var out map[string]uint64
		if err := c.Do(ctx, "PUT", p, "/admin/kv/"+rest[1]+"/"+rest[2], []byte(rest[3]), &out); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "written on %s at LSN %d\n", p, out["lsn"])
		return nil
	case "get": // get MEMBER DB KEY
		if len(rest) != 3 {
			return errors.New("usage: tandem ctl get MEMBER DATABASE KEY")
		}
		var v []byte
		if err := c.Do(ctx, "GET", rest[0], "/admin/kv/"+rest[1]+"/"+rest[2], nil, &v); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", v)
		return nil
	case "no-failover": // no-failover MEMBER on|off
		if len(rest) != 2 || (rest[1] != "on" && rest[1] != "off") {
			return errors.New("usage: tandem ctl no-failover MEMBER on|off (set it on both failover members)")
		}
		body := []byte(fmt.Sprintf(`{"set": %v}`, rest[1] == "on"))
		if err := c.Do(ctx, "POST", rest[0], "/admin/no-failover", body, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "no-failover %s on %s\n", rest[1], rest[0])
		return nil
	case "fhir": // fhir METHOD TIER PATH [BODYFILE]
		if len(rest) < 3 || len(rest) > 4 {
			return errors.New("usage: tandem ctl fhir METHOD TIER PATH [BODY-FILE]   e.g. tandem ctl fhir GET records /fhir/metadata")
		}
		var body []byte
		if len(rest) == 4 {
			if body, err = os.ReadFile(rest[3]); err != nil {
				return err
			}
		}
		p, err := c.Primary(ctx, rest[1])
		if err != nil {
			return err
		}
		var out []byte
		if err := c.Do(ctx, strings.ToUpper(rest[0]), p, rest[2], body, &out); err != nil {
			return err
		}
		stdout.Write(out)
		fmt.Fprintln(stdout)
		return nil
	case "force-promote": // force-promote MEMBER [--confirm TEXT]
		return forcePromote(ctx, c, rest, stdout)
	case "fence": // fence MEMBER (on the member's host)
		if len(rest) != 1 {
			return errors.New("usage: tandem ctl fence MEMBER   (run it on the member's host: it kills the node and marks its data directory)")
		}
		return fence(c, rest[0], stdout)
	case "config": // config diff|apply|show|set|user|role (config.go)
		return configCmd(ctx, c, rest, asJSON, stdout)
	case "gate": // gate log TIER (config.go)
		return gateCmd(ctx, c, rest, asJSON, stdout)
	case "rebuild": // rebuild MEMBER [--force] (rebuild.go)
		return rebuild(ctx, c, rest, stdout)
	case "add-database": // add-database TIER DB --from DIR (adddb.go)
		return addDatabase(ctx, c, rest, asJSON, stdout)
	case "search-params": // search-params TIER [--disable A,B | --enable-all] (searchparams.go)
		return searchParams(ctx, c, rest, asJSON, stdout)
	case "quarantine": // quarantine MEMBER [REPORT] (quarantine.go)
		return quarantine(ctx, c, rest, asJSON, stdout)
	case "planned-failover": // planned-failover TIER
		if len(rest) != 1 {
			return errors.New("usage: tandem ctl planned-failover TIER")
		}
		p, err := c.Primary(ctx, rest[0])
		if err != nil {
			return err
		}
		if err := c.Do(ctx, "POST", p, "/admin/planned-failover", nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s is draining and will hand over to its backup; watch `tandem ctl status`\n", p)
		return nil
	}
	return fmt.Errorf("unknown ctl command %q\n%s", cmd, ctlUsage)
}

const ctlUsage = `usage: tandem ctl COMMAND --cluster FILE [--json]
  status [--watch]                    a table per tier (--json for scripts, --watch to follow)
  fhir METHOD TIER PATH [BODY-FILE]   a FHIR request to the tier's primary, as the operator
  put TIER DATABASE KEY VALUE         raw write on the tier's primary (tests, benchmarks)
  get MEMBER DATABASE KEY             raw read from one member
  no-failover MEMBER on|off           forbid automatic takeover (maintenance)
  planned-failover TIER               hand the primary role to the backup, zero loss
  force-promote MEMBER [--confirm T]  promote a backup without its primary: shows what may be lost first
     [--stated-gone TEXT]             a dr member (failover pair gone, arbiter silent): your recorded statement that both failover members are gone
  fence MEMBER                        on the member's host: kill its node, mark its data dir (no primary role until it rejoins)
  add-database TIER DB --from DIR [--source-db NAME]
                                      import an existing database (a stopped node's store/, or a restore) on
                                      the primary's host into the running tier, through the journal
  search-params TIER [--disable Type.code,... | --enable-all]
                                      FHIR search parameters not indexed; a change reindexes (journaled)
  quarantine MEMBER [REPORT]          journal tails MEMBER moved aside at a rejoin (never acknowledged), the FHIR
                                      resources they lost; re-apply them with workflow start recover-lost-journal
  rebuild MEMBER [--force]            re-seed a member that needs a rebuild from the primary's snapshot, then follow its catch-up
  rebuild MEMBER --offline            on the host of a member that cannot start (corrupt journal): stage the primary's snapshot; its next start installs it
  config diff|apply|show|set|user|role  users, roles, security: desired vs effective (tandem ctl config for details)
  gate log TIER [--limit N]           the failover gate's recorded decisions
  workflow start|status|approve|schedule ...   the Temporal workflows: mirror-setup, planned-failover, promote-async, rebuild-member, add-database, recover-lost-journal, apply-change, config-sync; the drift-check schedule (tandem ctl workflow)`

func forcePromote(ctx context.Context, c *Client, rest []string, stdout io.Writer) error {
	var member, confirm, statement string
	for _, a := range rest {
		if v, ok := strings.CutPrefix(a, "--confirm="); ok {
			confirm = v
		} else if v, ok := strings.CutPrefix(a, "--stated-gone="); ok {
			statement = v
		} else {
			member = a
		}
	}
	if member == "" {
		return errors.New("usage: tandem ctl force-promote MEMBER [--confirm TEXT] [--stated-gone TEXT]")
	}
	if err := c.checkDRPromotion(ctx, member); err != nil {
		return err
	}
	// The highest epoch anyone reachable knows, so the new epoch is new.
	var tierEpoch uint64
	for _, s := range c.Statuses(ctx) {
		if e, ok := s.Status["epoch"].(float64); ok && uint64(e) > tierEpoch {
			tierEpoch = uint64(e)
		}
	}
	path := fmt.Sprintf("/admin/force-promote?tier_epoch=%d", tierEpoch)
	var p map[string]any
	if err := c.Do(ctx, "GET", member, path, nil, &p); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Forced promotion of %s to epoch %v\n", member, p["new_epoch"])
	if from, to := p["loss_from"].(float64), p["loss_to"].(float64); from > to {
		fmt.Fprintf(stdout, "  records that may be lost: LSN %v to %v: none known (this member holds everything it knows to exist)\n", from, to)
	} else {
		fmt.Fprintf(stdout, "  records that may be lost: LSN %v to %v\n", from, to)
	}
	fmt.Fprintf(stdout, "  of which held here (kept, may differ from the old primary): %v\n", p["held_here_per_database"])
	fmt.Fprintf(stdout, "  never received here (lost unless the old primary's journal is recovered): %v\n", p["never_received"])
	dr := p["needs_statement"] == true
	if dr {
		fmt.Fprintf(stdout, "  %s is a dr member: LSN %v is the last the primary reported to it; the failover pair may have written more\n", member, p["loss_to"])
		fmt.Fprintf(stdout, "  if the arbiter answers, it must record %s as primary first (it refuses while it hears from a failover member);\n  if it does not, your statement is the only authority\n", member)
	}
	if confirm == "" || (dr && strings.TrimSpace(statement) == "") {
		more := ""
		if dr {
			more = ` --stated-gone "<why both failover members are gone>"`
		}
		return fmt.Errorf("nothing done. To accept this loss, run:\n  tandem ctl force-promote %s --confirm %q%s --cluster FILE", member, p["confirm"], more)
	}
	body, _ := json.Marshal(map[string]any{"tier_epoch": tierEpoch, "confirm": confirm, "statement": statement})
	if err := c.Do(ctx, "POST", member, "/admin/force-promote", body, nil); err != nil {
		return err
	}
	if dr {
		// The member asks the arbiter to record it primary first (or gives
		// up on an arbiter that does not answer, after about 2 s).
		deadline := time.Now().Add(15 * time.Second)
		for {
			var st map[string]any
			if c.Do(ctx, "GET", member, "/mirror/status", nil, &st) == nil && st["status"] == "primary" {
				fmt.Fprintf(stdout, "%s is primary of epoch %v (its log says whether the arbiter recorded it)\n", member, st["epoch"])
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s is not primary after 15s: see its log (\"dr promotion refused by the arbiter\"); nothing else was changed", member)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	fmt.Fprintf(stdout, "%s promoted; the loss is recorded in its hard state. Watch `tandem ctl status`.\n", member)
	return nil
}

// checkDRPromotion refuses to promote a dr member while a failover member
// answers (DESIGN §3: a dr member is promoted when the failover pair is
// gone). The member itself has the promotion recorded at the arbiter
// first when the arbiter answers. Other members pass.
func (c *Client) checkDRPromotion(ctx context.Context, member string) error {
	for _, t := range c.File.Tiers {
		m, ok := t.Member(member)
		if !ok || m.Role != cluster.RoleDR {
			continue
		}
		for _, o := range t.Members {
			if o.Role != cluster.RoleFailover {
				continue
			}
			var st map[string]any
			sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			err := c.Do(sctx, "GET", o.Name, "/mirror/status", nil, &st)
			cancel()
			if err == nil {
				return fmt.Errorf("failover member %s answers (%v): a dr member is promoted only when the failover pair is gone; use planned-failover or force-promote the backup", o.Name, st["status"])
			}
		}
	}
	return nil
}

func fence(c *Client, member string, stdout io.Writer) error {
	var dataDir string
	for _, t := range c.File.Tiers {
		if m, ok := t.Member(member); ok {
			dataDir = m.DataDir
		}
	}
	if dataDir == "" {
		return fmt.Errorf("no member %q in the cluster file", member)
	}
	if _, err := os.Stat(dataDir); err != nil {
		return fmt.Errorf("%s is not on this host (%v): run tandem ctl fence on %s's host", dataDir, err, member)
	}
	killed, err := node.KillMember(dataDir, member, 10*time.Second)
	if err != nil {
		return err
	}
	if err := node.WriteFenceMark(dataDir, node.FenceMark{At: time.Now().UTC(), By: "operator"}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s fenced (process killed: %v); it will rejoin as backup when started\n", member, killed)
	return nil
}
