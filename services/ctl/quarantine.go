package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/tandemhealth/tandem/services/node"
)

// quarantine lists a member's quarantine reports (journal tails it moved
// aside at a rejoin, never acknowledged) or shows one with the FHIR
// resources it lost: what RecoverLostJournal would re-apply.
func quarantine(ctx context.Context, c *Client, rest []string, asJSON bool, stdout io.Writer) error {
	const usage = "usage: tandem ctl quarantine MEMBER [REPORT]"
	switch len(rest) {
	case 1:
		var out struct {
			Member  string                   `json:"member"`
			Reports []node.QuarantineSummary `json:"reports"`
		}
		if err := c.Do(ctx, "GET", rest[0], "/admin/quarantine", nil, &out); err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(stdout).Encode(out)
		}
		if len(out.Reports) == 0 {
			fmt.Fprintf(stdout, "%s holds no quarantine report: no journal tail was moved aside\n", rest[0])
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REPORT\tAT\tKEPT UP TO\tQUARANTINED LSN\tRECORDS\tFHIR RESOURCES\tRECOVERY")
		for _, r := range out.Reports {
			rec := "not recovered: tandem ctl workflow start recover-lost-journal TIER " + rest[0]
			if r.Recovery != nil {
				rec = fmt.Sprintf("by %s at %s: %d applied, %d present, %d conflicts", r.Recovery.By, r.Recovery.At.Format(time.RFC3339), r.Recovery.Applied, r.Recovery.Present, r.Recovery.Conflict)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d-%d\t%d\t%d\t%s\n", r.Name, r.At.Format(time.RFC3339), r.AfterLSN, r.FirstLSN, r.LastLSN, r.Records, r.Resources, rec)
		}
		return tw.Flush()
	case 2:
		var d node.QuarantineDetail
		if err := c.Do(ctx, "GET", rest[0], "/admin/quarantine/"+url.PathEscape(rest[1]), nil, &d); err != nil {
			return err
		}
		if asJSON {
			return json.NewEncoder(stdout).Encode(d)
		}
		fmt.Fprintf(stdout, "report %s on %s: kept up to LSN %d, quarantined LSN %d-%d (%d records)\n", d.Name, rest[0], d.Report.AfterLSN, d.Report.FirstLSN, d.Report.LastLSN, len(d.Report.Records))
		fmt.Fprintf(stdout, "why: %s\n", d.Report.Why)
		if d.Recovery != nil {
			fmt.Fprintf(stdout, "recovered by %s at %s: %s\n", d.Recovery.By, d.Recovery.At.Format(time.RFC3339), d.Recovery.Summary)
		}
		for _, db := range slices.Sorted(maps.Keys(d.Other)) {
			n := d.Other[db]
			fmt.Fprintf(stdout, "database %s: %d records (not FHIR: not re-applied by RecoverLostJournal; their operations are in the report)\n", db, n)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RESOURCE\tNET CHANGE\tFROM VERSION\tTO VERSION\tLSN")
		for _, l := range d.Lost {
			fmt.Fprintf(tw, "%s/%s\t%s\t%d\t%d\t%d\n", l.Type, l.ID, l.Interaction, l.BaseVersion, l.Version, l.LSN)
		}
		return tw.Flush()
	}
	return errors.New(usage)
}
