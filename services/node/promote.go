package node

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/statefile"

	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
)

// DRPromotionFile is the record of a dr member's promotion in its data dir.
const DRPromotionFile = "dr-promotion.json"

// PromotionPreview is what a forced promotion of this member would lose,
// shown to the operator before anything happens (DESIGN §3: "an explicit,
// reported data-loss decision").
type PromotionPreview struct {
	Member string `json:"member"`
	Role   string `json:"role"`
	Status string `json:"status"`
	// NewEpoch is the epoch the promotion would create.
	NewEpoch uint64 `json:"new_epoch"`
	// LossFrom..LossTo is the range of LSNs that may be lost: everything
	// after what this member knows to be committed, up to the last LSN the
	// old primary reported.
	LossFrom uint64 `json:"loss_from"`
	LossTo   uint64 `json:"loss_to"`
	// HeldHere are the records of that range this member holds (they
	// survive, but the old primary's versions may differ), per database.
	HeldHere map[string]int `json:"held_here_per_database"`
	// NeverReceived is how many records of the range this member never
	// received: lost for certain unless the old primary's journal is
	// recovered (RecoverLostJournal).
	NeverReceived uint64 `json:"never_received"`
	Confirm       string `json:"confirm"` // what the operator must send back to proceed
	// NeedsStatement: a dr member is promoted only with the operator's
	// recorded statement that both failover members are gone (DESIGN §3).
	NeedsStatement bool `json:"needs_statement,omitempty"`
}

// DRPromotion is the record a dr member keeps of its promotion
// (<data_dir>/dr-promotion.json): who stated what, and the loss.
type DRPromotion struct {
	At        time.Time        `json:"at"`
	Statement string           `json:"operator_statement"`
	Preview   PromotionPreview `json:"preview"`
}

// Preview computes the promotion preview from the member's measured state.
// tierEpoch is the highest epoch the operator's tool found in the tier.
func (n *Node) Preview(tierEpoch uint64) (PromotionPreview, error) {
	if n.mirror == nil {
		return PromotionPreview{}, fmt.Errorf("not a mirror member")
	}
	snap := n.mirror.snapshot()
	p := PromotionPreview{Member: n.cfg.Member, Role: snap.Role, Status: string(snap.Status),
		NewEpoch: max(snap.Epoch, snap.KnownEpoch, tierEpoch) + 1, HeldHere: map[string]int{}}
	switch {
	case n.cfg.Role == cluster.RoleReporting:
		return p, fmt.Errorf("%s is a reporting member: it is never promoted (promote a dr member or the backup)", n.cfg.Member)
	case n.cfg.Role == cluster.RoleDR && snap.Role == failover.RoleAsync.String():
		p.NeedsStatement = true
	case snap.Role != failover.RoleBackup.String():
		return p, fmt.Errorf("%s is %s: only a backup or a dr member can be force-promoted", n.cfg.Member, snap.Status)
	}
	p.LossFrom = snap.Commit + 1
	p.LossTo = max(snap.PrimaryLast, snap.LastLSN)
	if p.LossTo >= p.LossFrom {
		if snap.LastLSN >= p.LossFrom {
			r, err := n.journal.NewReader(p.LossFrom)
			if err != nil {
				return p, err
			}
			defer r.Close()
			for {
				rec, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					return p, err
				}
				if rec.Type == journal.TypeData {
					p.HeldHere[rec.Database]++
				}
			}
		}
		if p.LossTo > snap.LastLSN {
			p.NeverReceived = p.LossTo - snap.LastLSN
		}
	}
	p.Confirm = fmt.Sprintf("epoch %d, loss %d-%d", p.NewEpoch, p.LossFrom, p.LossTo)
	return p, nil
}

// ForcePromote promotes this backup or dr member if confirm matches the
// preview exactly: a preview that changed since the operator read it is
// refused. A dr member also needs the operator's statement that both
// failover members are gone; it is saved (fsynced) before the promotion.
// A dr member asks the arbiter to record it primary first and promotes
// only on that record, or on the statement alone when the arbiter answers
// none of its requests (about 2 s); a refusal is logged. The promotion
// takes effect after this returns: watch the status.
func (n *Node) ForcePromote(tierEpoch uint64, confirm, statement string) (PromotionPreview, error) {
	p, err := n.Preview(tierEpoch)
	if err != nil {
		return p, err
	}
	if confirm != p.Confirm {
		return p, fmt.Errorf("confirmation %q does not match the current preview %q: read the preview again", confirm, p.Confirm)
	}
	if p.NeedsStatement {
		if strings.TrimSpace(statement) == "" {
			return p, fmt.Errorf("%s is a dr member: its promotion needs the operator's statement that both failover members are gone (field statement)", n.cfg.Member)
		}
		rec := DRPromotion{At: time.Now().UTC(), Statement: statement, Preview: p}
		if err := statefile.Save(filepath.Join(n.cfg.DataDir, DRPromotionFile), rec); err != nil {
			return p, fmt.Errorf("record the operator's statement: %w", err)
		}
		n.log.Warn("dr promotion by the operator's statement that the failover pair is gone", "new_epoch", p.NewEpoch,
			"loss_from", p.LossFrom, "loss_to", p.LossTo, "record", DRPromotionFile)
	}
	n.log.Warn("forced promotion by the operator", "new_epoch", p.NewEpoch, "loss_from", p.LossFrom, "loss_to", p.LossTo, "never_received", p.NeverReceived)
	n.mirror.operator(failover.Message{Type: failover.MsgForcePromote, Epoch: failover.Epoch(tierEpoch)})
	return p, nil
}
