package workflows

// Config-sync activities (ApplyChange, ConfigSync): the members'
// /admin/config API. Nothing here carries a secret into workflow history:
// documents reach PutDesired already prepared (bcrypt hashes only, see
// configsync.Prepare), and what comes back is digests, versions, item
// names and the diff's change lines (which name items, never secrets).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"go.temporal.io/sdk/temporal"

	configsync "github.com/tandemhealth/tandem/config-sync"
)

// ErrConflict is the type of a non-retryable failure when the desired state
// moved on from the version a change was based on.
const ErrConflict = "Conflict"

// ConfigCategory is one category of a member's config-sync state as the
// workflows see it.
type ConfigCategory struct {
	Category         string   `json:"category"`
	Aligned          bool     `json:"aligned"`
	DesiredVersion   uint64   `json:"desired_version"`
	DesiredDigest    string   `json:"desired_digest"`
	EffectiveVersion uint64   `json:"effective_version"`
	EffectiveDigest  string   `json:"effective_digest"`
	Changes          []string `json:"changes,omitempty"`
	Unalignable      string   `json:"unalignable,omitempty"`
}

// MemberConfig is one member's config-sync state: per category its diff,
// the names of the users it enforces, and the users it enforces that the
// desired state it holds does not list (an apply would remove them).
type MemberConfig struct {
	Member     string           `json:"member"`
	Categories []ConfigCategory `json:"categories,omitempty"`
	Users      []string         `json:"users,omitempty"`
	Removals   []string         `json:"removals,omitempty"`
	// Error is set when the member did not answer.
	Error string `json:"error,omitempty"`
}

// Category returns the member's state of category c.
func (m MemberConfig) Category(c string) (ConfigCategory, bool) {
	for _, x := range m.Categories {
		if x.Category == c {
			return x, true
		}
	}
	return ConfigCategory{}, false
}

// DesiredChange is the desired state of a category after PutDesired.
type DesiredChange struct {
	Category string `json:"category"`
	Version  uint64 `json:"version"`
	Digest   string `json:"digest"`
	Primary  string `json:"primary"`
	// Unchanged: the desired state already was the document; nothing was
	// written (a retried activity, or a change made twice).
	Unchanged bool `json:"unchanged,omitempty"`
}

// ApplyResult is one member's answer to an apply.
type ApplyResult struct {
	Member  string                      `json:"member"`
	Results []configsync.CategoryResult `json:"results,omitempty"`
	// Error is set when the member did not answer or refused (still
	// behind the named versions, a category it cannot load).
	Error string `json:"error,omitempty"`
}

// Aligned reports whether the member now enforces category at version or
// later.
func (r ApplyResult) Aligned(category string, version uint64) bool {
	for _, x := range r.Results {
		if x.Category == category {
			return (x.Result == "applied" || x.Result == "unchanged") && x.Version >= version
		}
	}
	return false
}

// ConfigStates reads every member's config-sync state (diff, effective and
// desired user names). A member that does not answer is reported with
// Error set. Read-only.
func (a *Admin) ConfigStates(ctx context.Context, tier string) ([]MemberConfig, error) {
	t, err := a.tier(tier)
	if err != nil {
		return nil, err
	}
	var out []MemberConfig
	for _, m := range t.Members {
		mc := MemberConfig{Member: m.Name}
		if err := a.memberConfig(ctx, "https://"+m.HTTP, &mc); err != nil {
			mc = MemberConfig{Member: m.Name, Error: err.Error()}
		}
		out = append(out, mc)
	}
	return out, nil
}

func (a *Admin) memberConfig(ctx context.Context, base string, mc *MemberConfig) error {
	var diff struct {
		Categories  []configsync.CategoryDiff `json:"categories"`
		Unalignable map[string]string         `json:"unalignable"`
	}
	if err := a.do(ctx, "GET", base+"/admin/config/diff", nil, &diff); err != nil {
		return err
	}
	for _, c := range diff.Categories {
		mc.Categories = append(mc.Categories, ConfigCategory{Category: c.Category, Aligned: c.Aligned,
			DesiredVersion: c.DesiredVersion, DesiredDigest: c.DesiredDigest, EffectiveVersion: c.EffectiveVersion,
			EffectiveDigest: c.EffectiveDigest, Changes: c.Changes, Unalignable: diff.Unalignable[c.Category]})
	}
	var eff, des configsync.State
	if err := a.do(ctx, "GET", base+"/admin/config/effective", nil, &eff); err != nil {
		return err
	}
	if err := a.do(ctx, "GET", base+"/admin/config/desired", nil, &des); err != nil {
		return err
	}
	mc.Users = userNames(eff)
	want := userNames(des)
	for _, u := range mc.Users {
		if !slices.Contains(want, u) {
			mc.Removals = append(mc.Removals, u)
		}
	}
	return nil
}

// userNames lists the users of a state, sorted; names only.
func userNames(st configsync.State) []string {
	var us []configsync.User
	if d := st[configsync.Users].Doc; len(d) > 0 {
		_ = json.Unmarshal(d, &us)
	}
	out := make([]string, 0, len(us))
	for _, u := range us {
		out = append(out, u.Name)
	}
	slices.Sort(out)
	return out
}

// PutDesired makes doc the tier's desired state of category, on the
// primary (PUT /admin/config/desired/…, the only member that takes it).
// doc must be prepared (configsync.Prepare: hashes, no clear text). With
// ifVersion set, the write is a compare-and-set on that version. A nil doc
// writes nothing and reports the current desired state.
//
// Idempotent: when the desired state already has doc's digest (an earlier
// attempt succeeded and its answer was lost), nothing is written and that
// version is returned.
func (a *Admin) PutDesired(ctx context.Context, tier, category string, doc json.RawMessage, ifVersion *uint64) (DesiredChange, error) {
	if !configsync.KnownCategory(category) {
		return DesiredChange{}, temporal.NewNonRetryableApplicationError(configsync.ErrUnknownCategory.Error(), ErrNotReady, nil)
	}
	primary, base, err := a.primary(ctx, tier)
	if err != nil {
		return DesiredChange{}, err
	}
	var cur configsync.State
	if err := a.do(ctx, "GET", base+"/admin/config/desired", nil, &cur); err != nil {
		return DesiredChange{}, fmt.Errorf("%s: %w", primary, err)
	}
	curDigest, err := configsync.Digest(category, cur[category].Doc)
	if err != nil {
		return DesiredChange{}, err
	}
	ch := DesiredChange{Category: category, Version: cur[category].Version, Digest: curDigest, Primary: primary}
	if doc == nil {
		ch.Unchanged = true
		return ch, nil
	}
	want, err := configsync.Digest(category, doc)
	if err != nil {
		return ch, temporal.NewNonRetryableApplicationError("the document does not parse: "+err.Error(), ErrNotReady, nil)
	}
	if want == curDigest && (ifVersion == nil || cur[category].Version >= *ifVersion) {
		ch.Unchanged = true
		return ch, nil
	}
	path := base + "/admin/config/desired/" + category
	if ifVersion != nil {
		path += fmt.Sprintf("?if_version=%d", *ifVersion)
	}
	var out struct {
		Version uint64 `json:"version"`
		Digest  string `json:"digest"`
	}
	err = a.do(ctx, "PUT", path, doc, &out)
	var he *httpError
	switch {
	case errors.As(err, &he) && he.Code == http.StatusConflict:
		return ch, temporal.NewNonRetryableApplicationError(fmt.Sprintf("desired %s changed meanwhile: %s", category, he.Msg), ErrConflict, nil)
	case errors.As(err, &he) && he.Code == http.StatusBadRequest:
		return ch, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s refused the document: %s", primary, he.Msg), ErrNotReady, nil)
	case err != nil:
		return ch, fmt.Errorf("%s: %w", primary, err)
	}
	ch.Version, ch.Digest, ch.Unchanged = out.Version, out.Digest, false
	return ch, nil
}

// primary finds the member that answers as primary.
func (a *Admin) primary(ctx context.Context, tier string) (name, base string, err error) {
	sts, err := a.TierStatus(ctx, tier)
	if err != nil {
		return "", "", err
	}
	for _, s := range sts {
		if s.Reachable() && s.Status == "primary" {
			base, err := a.memberURL(tier, s.Member)
			return s.Member, base, err
		}
	}
	return "", "", fmt.Errorf("tier %s has no primary that answers", tier)
}

// ApplyConfig makes member enforce the desired state it holds for
// categories (every category when empty), once it holds at least versions
// (it waits up to 5 s for them). A member that does not answer or refuses
// is a result with Error, not a failure: the workflow decides when to try
// again. Idempotent: applying twice changes nothing the second time.
func (a *Admin) ApplyConfig(ctx context.Context, tier, member string, versions map[string]uint64, categories []string) (ApplyResult, error) {
	base, err := a.memberURL(tier, member)
	if err != nil {
		return ApplyResult{}, err
	}
	body, _ := json.Marshal(map[string]any{"versions": versions, "categories": categories})
	var out ApplyResult
	err = a.do(ctx, "POST", base+"/admin/config/apply", body, &out)
	var he *httpError
	if errors.As(err, &he) && he.Code == http.StatusConflict {
		_ = json.Unmarshal(he.Body, &out) // a failed category: results say which
	}
	out.Member = member
	if err != nil {
		out.Error = err.Error()
	}
	return out, nil
}
