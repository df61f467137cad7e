package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// searchParams shows (or, with --disable / --enable-all, sets) the FHIR
// search parameters a tier does not index; a change runs a journaled
// reindex of the affected types on the primary.
func searchParams(ctx context.Context, c *Client, rest []string, asJSON bool, stdout io.Writer) error {
	const usage = "usage: tandem ctl search-params TIER [--disable Type.code,Type.code ... | --enable-all]"
	if len(rest) == 0 {
		return errors.New(usage)
	}
	tier, args := rest[0], rest[1:]
	primary, err := c.Primary(ctx, tier)
	if err != nil {
		return err
	}
	var out struct {
		Disabled  []string `json:"disabled"`
		Reindexed *int     `json:"reindexed,omitempty"`
	}
	switch {
	case len(args) == 0:
		err = c.Do(ctx, "GET", primary, "/admin/search/disabled", nil, &out)
	case len(args) == 1 && args[0] == "--enable-all":
		err = c.Do(ctx, "PUT", primary, "/admin/search/disabled", []byte(`{"disabled":[]}`), &out)
	case len(args) == 2 && args[0] == "--disable":
		body, _ := json.Marshal(map[string][]string{"disabled": strings.Split(args[1], ",")})
		err = c.Do(ctx, "PUT", primary, "/admin/search/disabled", body, &out)
	default:
		return errors.New(usage)
	}
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(out)
	}
	if len(out.Disabled) == 0 {
		fmt.Fprintf(stdout, "tier %s: every search parameter is indexed\n", tier)
	} else {
		fmt.Fprintf(stdout, "tier %s: not indexed: %s\n", tier, strings.Join(out.Disabled, ", "))
	}
	if out.Reindexed != nil {
		fmt.Fprintf(stdout, "reindexed %d resources on %s (journaled: every member follows)\n", *out.Reindexed, primary)
	}
	return nil
}
