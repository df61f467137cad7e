package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	configsync "github.com/tandemhealth/tandem/config-sync"
)

const configUsage = `usage:
  tandem ctl config diff [--json]                        desired vs effective, per member and category
  tandem ctl config apply [--member M]                   effective <- desired on M (default: every member)
  tandem ctl config show TIER                            the tier's desired state (from its primary)
  tandem ctl config set TIER CATEGORY FILE               replace a category's desired document (users, roles, security)
  tandem ctl config user add TIER NAME --password P [--role R,R]
  tandem ctl config user disable|enable TIER NAME
  tandem ctl config role set TIER NAME --scopes S,S [--admin A,A]`

// MemberDiff is one member's answer to /admin/config/diff.
type MemberDiff struct {
	Tier        string                    `json:"tier"`
	Member      string                    `json:"member"`
	Categories  []configsync.CategoryDiff `json:"categories,omitempty"`
	Unalignable map[string]string         `json:"unalignable,omitempty"`
	Error       string                    `json:"error,omitempty"`
}

// ConfigDiff asks every member for its diff.
func (c *Client) ConfigDiff(ctx context.Context) []MemberDiff {
	var out []MemberDiff
	for _, t := range c.File.Tiers {
		for _, m := range t.Members {
			md := MemberDiff{Tier: t.Name, Member: m.Name}
			if err := c.Do(ctx, "GET", m.Name, "/admin/config/diff", nil, &md); err != nil {
				md.Error = err.Error()
			}
			md.Tier, md.Member = t.Name, m.Name
			out = append(out, md)
		}
	}
	return out
}

// PrintConfigDiff writes one row per member and category.
func PrintConfigDiff(w io.Writer, ds []MemberDiff) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIER\tMEMBER\tCATEGORY\tALIGNED\tDESIRED\tEFFECTIVE\tDIFFERENCES")
	for _, d := range ds {
		if d.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t-\t?\t-\t-\t%s\n", d.Tier, d.Member, shorten(d.Error, 70))
			continue
		}
		for _, c := range d.Categories {
			aligned := "yes"
			if !c.Aligned {
				aligned = "NO"
			}
			what := strings.Join(c.Changes, "; ")
			if why, ok := d.Unalignable[c.Category]; ok {
				what = "cannot apply: " + why
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\tv%d %s\tv%d %s\t%s\n", d.Tier, d.Member, c.Category, aligned,
				c.DesiredVersion, short(c.DesiredDigest), c.EffectiveVersion, short(c.EffectiveDigest), what)
		}
	}
	tw.Flush()
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func configCmd(ctx context.Context, c *Client, rest []string, asJSON bool, stdout io.Writer) error {
	if len(rest) == 0 {
		return errors.New(configUsage)
	}
	sub, args := rest[0], rest[1:]
	flags, pos := splitFlags(args)
	switch sub {
	case "diff":
		ds := c.ConfigDiff(ctx)
		if asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(ds)
		}
		PrintConfigDiff(stdout, ds)
		return nil
	case "apply":
		var members []string
		if m := flags["member"]; m != "" {
			members = []string{m}
		} else {
			for _, t := range c.File.Tiers {
				for _, m := range t.Members {
					members = append(members, m.Name)
				}
			}
		}
		// The desired versions of each tier, from its primary: members still
		// behind wait for them instead of applying an older state.
		versions := map[string][]byte{}
		for _, t := range c.File.Tiers {
			if st, _, err := c.desired(ctx, t.Name); err == nil {
				v := map[string]uint64{}
				for cat, d := range st {
					v[cat] = d.Version
				}
				versions[t.Name], _ = json.Marshal(map[string]any{"versions": v})
			}
		}
		var errs []error
		for _, m := range members {
			var out struct {
				Results []configsync.CategoryResult `json:"results"`
			}
			err := c.Do(ctx, "POST", m, "/admin/config/apply", versions[c.tierOf(m)], &out)
			for _, r := range out.Results {
				line := fmt.Sprintf("%s\t%s\t%s\tv%d", m, r.Category, r.Result, r.Version)
				if r.Error != "" {
					line += "\t" + r.Error
				}
				fmt.Fprintln(stdout, line)
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	case "show":
		if len(pos) != 1 {
			return errors.New(configUsage)
		}
		st, _, err := c.desired(ctx, pos[0])
		if err != nil {
			return err
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	case "set":
		if len(pos) != 3 {
			return errors.New(configUsage)
		}
		doc, err := os.ReadFile(pos[2])
		if err != nil {
			return err
		}
		return c.setDesired(ctx, pos[0], pos[1], doc, -1, stdout)
	case "user":
		if len(pos) != 3 {
			return errors.New(configUsage)
		}
		return c.editUser(ctx, pos[0], pos[1], pos[2], flags, stdout)
	case "role":
		if len(pos) != 3 || pos[0] != "set" {
			return errors.New(configUsage)
		}
		return c.setRole(ctx, pos[1], pos[2], flags, stdout)
	}
	return errors.New(configUsage)
}

// splitFlags separates --name value (or --name=value) from positional args.
func splitFlags(args []string) (map[string]string, []string) {
	flags := map[string]string{}
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if name, ok := strings.CutPrefix(a, "--"); ok {
			if k, v, ok := strings.Cut(name, "="); ok {
				flags[k] = v
			} else if i+1 < len(args) {
				flags[name] = args[i+1]
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return flags, pos
}

func (c *Client) desired(ctx context.Context, tier string) (configsync.State, string, error) {
	p, err := c.Primary(ctx, tier)
	if err != nil {
		return nil, "", err
	}
	var st configsync.State
	if err := c.Do(ctx, "GET", p, "/admin/config/desired", nil, &st); err != nil {
		return nil, "", err
	}
	return st, p, nil
}

func (c *Client) setDesired(ctx context.Context, tier, category string, doc []byte, ifVersion int64, stdout io.Writer) error {
	p, err := c.Primary(ctx, tier)
	if err != nil {
		return err
	}
	path := "/admin/config/desired/" + category
	if ifVersion >= 0 {
		path += fmt.Sprintf("?if_version=%d", ifVersion)
	}
	var out struct {
		Version uint64 `json:"version"`
		Digest  string `json:"digest"`
		LSN     uint64 `json:"lsn"`
	}
	if err := c.Do(ctx, "PUT", p, path, doc, &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "desired %s is now version %d (digest %s, LSN %d on %s); members enforce it after `tandem ctl config apply`\n",
		category, out.Version, short(out.Digest), out.LSN, p)
	return nil
}

// editUser adds, disables or enables one user, as a compare-and-set on the
// version it read.
func (c *Client) editUser(ctx context.Context, verb, tier, name string, flags map[string]string, stdout io.Writer) error {
	st, _, err := c.desired(ctx, tier)
	if err != nil {
		return err
	}
	cur := st[configsync.Users]
	var users []configsync.User
	if len(cur.Doc) > 0 {
		if err := json.Unmarshal(cur.Doc, &users); err != nil {
			return err
		}
	}
	i := -1
	for j := range users {
		if users[j].Name == name {
			i = j
		}
	}
	switch verb {
	case "add":
		if i >= 0 {
			return fmt.Errorf("user %s exists already", name)
		}
		if flags["password"] == "" {
			return errors.New("user add needs --password")
		}
		u := configsync.User{Name: name, Password: flags["password"], Enabled: true}
		if r := flags["role"]; r != "" {
			u.Roles = strings.Split(r, ",")
		}
		users = append(users, u)
	case "disable", "enable":
		if i < 0 {
			return fmt.Errorf("no user %s in the desired state of tier %s", name, tier)
		}
		users[i].Enabled = verb == "enable"
	default:
		return errors.New(configUsage)
	}
	doc, _ := json.Marshal(users)
	return c.setDesired(ctx, tier, configsync.Users, doc, int64(cur.Version), stdout)
}

func (c *Client) setRole(ctx context.Context, tier, name string, flags map[string]string, stdout io.Writer) error {
	st, _, err := c.desired(ctx, tier)
	if err != nil {
		return err
	}
	cur := st[configsync.Roles]
	var roles []configsync.Role
	if len(cur.Doc) > 0 {
		if err := json.Unmarshal(cur.Doc, &roles); err != nil {
			return err
		}
	}
	r := configsync.Role{Name: name}
	if s := flags["scopes"]; s != "" {
		r.Scopes = strings.Split(s, ",")
	}
	if a := flags["admin"]; a != "" {
		r.Admin = strings.Split(a, ",")
	}
	replaced := false
	for i := range roles {
		if roles[i].Name == name {
			roles[i], replaced = r, true
		}
	}
	if !replaced {
		roles = append(roles, r)
	}
	doc, _ := json.Marshal(roles)
	return c.setDesired(ctx, tier, configsync.Roles, doc, int64(cur.Version), stdout)
}

// gateCmd: gate log TIER [--member M] [--limit N].
func gateCmd(ctx context.Context, c *Client, rest []string, asJSON bool, stdout io.Writer) error {
	flags, pos := splitFlags(rest)
	if len(pos) != 2 || pos[0] != "log" {
		return errors.New("usage: tandem ctl gate log TIER [--member M] [--limit N] [--json]")
	}
	m := flags["member"]
	if m == "" {
		p, err := c.Primary(ctx, pos[1])
		if err != nil {
			return err
		}
		m = p
	}
	path := "/admin/gate/log"
	if l := flags["limit"]; l != "" {
		path += "?limit=" + l
	}
	var out struct {
		Decisions []struct {
			At          time.Time `json:"at"`
			Operation   string    `json:"operation"`
			Target      string    `json:"target"`
			Allowed     bool      `json:"allowed"`
			Deny        []string  `json:"deny"`
			Warn        []string  `json:"warn"`
			PolicyHash  string    `json:"policy_hash"`
			InputDigest string    `json:"input_digest"`
			EvaluatedBy string    `json:"evaluated_by"`
		} `json:"decisions"`
	}
	if err := c.Do(ctx, "GET", m, path, nil, &out); err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out.Decisions)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tOPERATION\tTARGET\tBY\tRESULT\tPOLICY\tINPUT\tMESSAGES")
	for _, d := range out.Decisions {
		res := "allowed"
		if !d.Allowed {
			res = "REFUSED"
		}
		msgs := append(append([]string{}, d.Deny...), prefixAll("warn: ", d.Warn)...)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.At.Format(time.RFC3339), d.Operation, d.Target, d.EvaluatedBy, res,
			short(d.PolicyHash), short(d.InputDigest), strings.Join(msgs, " | "))
	}
	return tw.Flush()
}

func prefixAll(p string, s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = p + x
	}
	return out
}

func (c *Client) tierOf(member string) string {
	for _, t := range c.File.Tiers {
		if _, ok := t.Member(member); ok {
			return t.Name
		}
	}
	return ""
}
