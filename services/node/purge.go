package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/tandemhealth/tandem/mirror/cluster"
	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/statefile"
	"github.com/tandemhealth/tandem/mirror/wire"
)

// Journal purge (DESIGN §3 "Journal purge"). Every journal.purge_interval
// a member flushes its store (FlushDurable: with the WAL off, only flushed
// records survive a crash without the journal) and then, in its loop,
// removes the whole segments below min(what its failover core allows, what
// the store has durably flushed). The primary's core allows what is
// committed, durably held by the backup and by every async it still holds;
// the shell decides which asyncs it releases (disconnected longer than
// journal.async_retention, or needing more than journal.max_bytes). Other
// members purge what the primary confirmed committed.

// journalBaseFile records the journal's base (failover.Base): the last LSN
// it no longer holds and that record's epoch. It is saved before the
// journal's start moves (a purge, a re-seed), because a journal that holds
// no record cannot tell the epoch at its base.
const journalBaseFile = "journal-base.json"

// journalBase is journalBaseFile's content.
type journalBase struct {
	LSN   uint64 `json:"lsn"`
	Epoch uint64 `json:"epoch"`
}

func saveJournalBase(dataDir string, b failover.Base) error {
	return statefile.Save(filepath.Join(dataDir, journalBaseFile), journalBase{LSN: uint64(b.LSN), Epoch: uint64(b.Epoch)})
}

// ReadMemberJournal reads a member's journal as its failover core sees it:
// the base it starts after and the entries. A member's agent reads it so
// too when it hands the journal over after a fence.
func ReadMemberJournal(dataDir string, j *journal.Journal) (failover.Base, []failover.Entry, error) {
	var rec *failover.Base
	var jb journalBase
	switch err := statefile.Load(filepath.Join(dataDir, journalBaseFile), &jb); {
	case err == nil:
		rec = &failover.Base{LSN: failover.LSN(jb.LSN), Epoch: failover.Epoch(jb.Epoch)}
	case !errors.Is(err, statefile.ErrNotExist):
		return failover.Base{}, nil, err
	}
	return wire.ReadJournal(j, rec)
}

// flushLoop makes the store durable every purge interval and hands the
// flushed LSN to the loop, which purges up to it at most.
func (m *mirror) flushLoop(ctx context.Context) {
	t := time.NewTicker(time.Duration(m.file.Journal.PurgeInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if len(m.j.Segments()) < 2 {
			continue // the active segment is never purged: nothing to flush for
		}
		flushed, err := m.st.FlushDurable()
		if err != nil {
			m.log.Error("store flush before journal purge failed: not purging", "err", err)
			continue
		}
		select {
		case m.purgeReq <- flushed:
		default: // the loop has not taken the last one yet
		}
	}
}

// purge removes the journal's whole segments below min(what the core
// allows, flushed) and tells the core. Loop only.
func (m *mirror) purge(ctx context.Context, flushed uint64) error {
	// Pipelined output (mirror.handle) goes first: its messages were made
	// before the core's base moves, and may ship records the purge is
	// about to remove (hydrate reads them from the journal).
	if err := m.flushStages(ctx, true); err != nil {
		return err
	}
	released := m.releasedAsyncs()
	m.releaseArchivers()
	allowed := uint64(m.core.PurgeableUpTo(released))
	target := min(allowed, flushed, m.j.DurableLSN(), m.pins.limit(time.Now()))
	segs := m.j.Segments()
	start := segs[0].FirstLSN
	for i := 0; i+1 < len(segs) && segs[i+1].FirstLSN <= target+1; i++ {
		start = segs[i+1].FirstLSN
	}
	if start <= segs[0].FirstLSN {
		return m.handle(ctx, []failover.Ready{m.core.Purged(m.core.Base().LSN, released)})
	}
	base := failover.Base{LSN: failover.LSN(start - 1), Epoch: failover.Epoch(m.epochAt(start - 1))}
	if err := saveJournalBase(filepath.Dir(m.hsPath), base); err != nil {
		m.log.Error("journal purge: could not record the journal's new base: not purging", "err", err)
		return nil
	}
	removed, err := m.j.Purge(start)
	if err != nil {
		if m.j.Err() != nil {
			return m.fatal("journal purge failed", err)
		}
		m.log.Error("journal purge failed", "err", err, "removed_segments", removed)
	}
	if got := m.j.StartLSN(); got != start {
		m.log.Error("journal purge stopped early", "first_lsn", got, "wanted_first_lsn", start)
		return nil
	}
	m.log.Info("journal purged", "removed_segments", removed, "first_lsn", start, "allowed_lsn", allowed, "store_flushed_lsn", flushed)
	return m.handle(ctx, []failover.Ready{m.core.Purged(base.LSN, released)})
}

// releaseArchivers lets go of the backup archivers the journal is held for
// (each at the last LSN it fetched, see GET /admin/backup/records) that
// were silent for longer than journal.async_retention or would need more
// than journal.max_bytes: like an async, an archiver never fills the disk.
// Its archive then has a gap it reports on its next fetch (HTTP 410: take
// a new snapshot). Each release is logged.
func (m *mirror) releaseArchivers() {
	pol := m.file.Journal
	live, expired := m.pins.holds(time.Now())
	for _, name := range expired {
		m.log.Error("backup archiver released: it fetched nothing for longer than journal.async_retention; the journal is no longer held for it, its archive will need a new snapshot",
			"archiver", name, "async_retention", time.Duration(pol.AsyncRetention).String())
	}
	if pol.MaxBytes <= 0 {
		return
	}
	for name, lsn := range live {
		if b := m.journalBytesAfter(lsn); b > pol.MaxBytes {
			m.pins.drop(name)
			m.log.Error("backup archiver released: it would need more journal than journal.max_bytes; its archive will need a new snapshot",
				"archiver", name, "from_lsn", lsn+1, "bytes", b, "max_bytes", pol.MaxBytes)
		}
	}
}

// releasedAsyncs are, on the primary, the asyncs it no longer holds the
// journal for: silent for longer than journal.async_retention, or further
// behind than journal.max_bytes. Each release is logged once.
func (m *mirror) releasedAsyncs() []failover.ID {
	if !m.core.IsPrimary() {
		clear(m.released) // only a primary holds the journal for asyncs
		return nil
	}
	pol := m.file.Journal
	now := m.now()
	match := m.core.AsyncMatch()
	var out []failover.ID
	for id, heard := range m.core.AsyncsHeard() {
		why := ""
		if silent := time.Duration(now-heard) * cluster.TickInterval; silent > time.Duration(pol.AsyncRetention) {
			why = fmt.Sprintf("disconnected for %s, longer than journal.async_retention (%s)", silent.Round(time.Second), time.Duration(pol.AsyncRetention))
		} else if pol.MaxBytes > 0 {
			if b := m.journalBytesAfter(uint64(match[id])); b > pol.MaxBytes {
				why = fmt.Sprintf("needs %d journal bytes, more than journal.max_bytes (%d)", b, pol.MaxBytes)
			}
		}
		if why == "" {
			delete(m.released, id)
			continue
		}
		out = append(out, id)
		if _, ok := m.released[id]; !ok {
			m.log.Warn("async no longer held: the journal it needs may be purged, and then it needs a rebuild", "async", string(id), "reason", why)
		}
		m.released[id] = why
	}
	slices.Sort(out)
	return out
}

// journalBytesAfter is the size of the segments holding records after lsn.
func (m *mirror) journalBytesAfter(lsn uint64) int64 {
	var n int64
	for _, s := range m.j.Segments() {
		if s.LastLSN > lsn {
			n += s.Size
		}
	}
	return n
}

// alerts are what an operator must act on, for /mirror/status and ctl
// status. Loop only.
func (m *mirror) alerts() []string {
	var out []string
	if m.core.Status() == failover.StatusNeedsRebuild {
		out = append(out, fmt.Sprintf("this member needs a rebuild: the journal it needs to catch up was purged (or its history cannot be bridged); it acknowledges nothing and serves no reads; run: tandem ctl rebuild %s", m.me.Name))
	}
	gone := m.core.PeersNeedingRebuild()
	for _, id := range gone {
		out = append(out, fmt.Sprintf("member %s needs a rebuild: records it needs were purged here; run: tandem ctl rebuild %s", id, id))
	}
	ids := make([]string, 0, len(m.released))
	for id := range m.released {
		if !slices.Contains(gone, id) {
			ids = append(ids, string(id))
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		out = append(out, fmt.Sprintf("async %s is no longer held (%s): once the journal it needs is purged it needs a rebuild", id, m.released[failover.ID(id)]))
	}
	return out
}
