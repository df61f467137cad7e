package gateway

import (
	"sort"
	"time"
)

// MemberStatus is what the gateway read from one member's /mirror/status
// (only the fields routing needs), or why it could not.
type MemberStatus struct {
	Member   string    `json:"member"`
	Role     string    `json:"role"`
	URL      string    `json:"url"`
	Status   string    `json:"status"`
	Epoch    uint64    `json:"epoch"`
	Transfer *Transfer `json:"transfer,omitempty"`
	PolledAt time.Time `json:"polled_at"`
	Err      string    `json:"error,omitempty"`
}

// Transfer is the journal transfer part of a member's status.
type Transfer struct {
	Status        string  `json:"status"`
	BehindSeconds float64 `json:"behind_seconds"`
}

// TierView is the gateway's routing decision for one tier.
type TierView struct {
	Tier string `json:"tier"`
	// Epoch is the highest epoch this gateway has seen for the tier.
	Epoch uint64 `json:"epoch"`
	// Primary is the member proven primary at Epoch; empty when none.
	Primary    string `json:"primary,omitempty"`
	PrimaryURL string `json:"-"`
	// Since is when this gateway first saw Primary at Epoch.
	Since time.Time `json:"since,omitzero"`
	// Reason says why there is no primary.
	Reason  string         `json:"reason,omitempty"`
	Members []MemberStatus `json:"members"`
}

// Decide is the routing core: from the members' statuses and the highest
// epoch seen before, the new view. A member is primary only if it says so
// at the highest epoch known (its own report may raise it) and no other
// member says so at that epoch. It is pure: no I/O, no clock.
func Decide(tier string, members []MemberStatus, highest uint64) TierView {
	v := TierView{Tier: tier, Epoch: highest, Members: members}
	for _, m := range members {
		if m.Err == "" && m.Epoch > v.Epoch {
			v.Epoch = m.Epoch
		}
	}
	var claim []MemberStatus
	for _, m := range members {
		if m.Err == "" && m.Status == "primary" {
			claim = append(claim, m)
		}
	}
	var proven []MemberStatus
	for _, m := range claim {
		if m.Epoch == v.Epoch {
			proven = append(proven, m)
		}
	}
	switch {
	case len(proven) == 1:
		v.Primary, v.PrimaryURL = proven[0].Member, proven[0].URL
	case len(proven) > 1:
		v.Reason = "more than one member claims primary at the highest epoch; routing no writes"
	case len(claim) > 0:
		v.Reason = "a member claims primary below the highest epoch seen; routing no writes to it"
	default:
		v.Reason = "no member answers as primary"
	}
	return v
}

// Async is a member that may serve reads allowing staleness.
type Async struct {
	Member string
	URL    string
	Lag    time.Duration // reported lag plus the age of the reading
}

// ReadTarget picks, for a read accepting maxLag of staleness, the async
// (dr or reporting) with the least lag within the bound: it must be
// following at the view's epoch, connected, and its reported lag plus the
// age of the gateway's reading at now must be within maxLag. ok is false
// when none qualifies (the read goes to the primary).
func (v TierView) ReadTarget(maxLag time.Duration, now time.Time) (Async, bool) {
	var cands []Async
	for _, m := range v.Members {
		if m.Err != "" || (m.Role != "dr" && m.Role != "reporting") || m.Status != "async" || m.Epoch != v.Epoch || m.Transfer == nil {
			continue
		}
		var lag time.Duration
		switch m.Transfer.Status {
		case "caught-up", "active":
		case "behind":
			lag = time.Duration(m.Transfer.BehindSeconds * float64(time.Second))
		default: // disconnected or unknown: its lag cannot be bounded
			continue
		}
		lag += max(now.Sub(m.PolledAt), 0)
		if lag <= maxLag {
			cands = append(cands, Async{Member: m.Member, URL: m.URL, Lag: lag})
		}
	}
	if len(cands) == 0 {
		return Async{}, false
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].Lag != cands[j].Lag {
			return cands[i].Lag < cands[j].Lag
		}
		return cands[i].Member < cands[j].Member
	})
	return cands[0], true
}
