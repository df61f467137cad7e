package wire

import (
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/transport"
)

// MaxAppendBody bounds the encoded body of one message so that its frame
// (tier, sender and the frame's own fields besides) stays within
// transport.MaxBody.
const MaxAppendBody = transport.MaxBody - 1<<9

// EncodeSplit encodes m like Encode, splitting an append whose body would
// not fit in one frame into consecutive appends: each part continues the
// previous one (its PrevLSN and PrevEpoch are the previous part's last
// entry), and carries the same commit point, last LSN and mode, so the
// receiver applies them exactly as one append and answers each. A single
// entry always fits (a journal record is at most journal.MaxPayload plus
// its header). Without this, a backlog of large records would exceed the
// frame limit at every retry and the partner could never catch up.
func EncodeSplit(tier string, m failover.Message) ([]transport.Message, error) {
	return encodeSplit(tier, m, MaxAppendBody)
}

func encodeSplit(tier string, m failover.Message, limit int) ([]transport.Message, error) {
	tm, err := Encode(tier, m)
	if err != nil {
		return nil, err
	}
	if len(tm.Payload) <= limit || m.Type != failover.MsgAppend || len(m.Entries) < 2 {
		return []transport.Message{tm}, nil
	}
	h := len(m.Entries) / 2
	first, second := m, m
	first.Entries = m.Entries[:h]
	second.Entries = m.Entries[h:]
	last := m.Entries[h-1]
	second.PrevLSN, second.PrevEpoch = last.LSN, last.Epoch
	a, err := encodeSplit(tier, first, limit)
	if err != nil {
		return nil, err
	}
	b, err := encodeSplit(tier, second, limit)
	if err != nil {
		return nil, err
	}
	return append(a, b...), nil
}
