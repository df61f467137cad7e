package node

import (
	"fmt"
	"io"

	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
)

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
	if snap.Role != failover.RoleBackup.String() {
		return p, fmt.Errorf("%s is %s: only a backup can be force-promoted", n.cfg.Member, snap.Status)
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

// ForcePromote promotes this backup if confirm matches the preview exactly:
// a preview that changed since the operator read it is refused.
func (n *Node) ForcePromote(tierEpoch uint64, confirm string) (PromotionPreview, error) {
	p, err := n.Preview(tierEpoch)
	if err != nil {
		return p, err
	}
	if confirm != p.Confirm {
		return p, fmt.Errorf("confirmation %q does not match the current preview %q: read the preview again", confirm, p.Confirm)
	}
	n.log.Warn("forced promotion by the operator", "new_epoch", p.NewEpoch, "loss_from", p.LossFrom, "loss_to", p.LossTo, "never_received", p.NeverReceived)
	n.mirror.operator(failover.Message{Type: failover.MsgForcePromote, Epoch: failover.Epoch(tierEpoch)})
	return p, nil
}
