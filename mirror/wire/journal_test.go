package wire

import (
	"context"
	"strings"
	"testing"

	"github.com/tandemhealth/tandem/mirror/failover"
	"github.com/tandemhealth/tandem/mirror/journal"
)

// TestReadJournalBase: a journal that starts after LSN 1 (purged, or
// re-seeded from a snapshot) tells its base epoch from its first record; an
// empty one needs the base its shell recorded, and says so without it.
func TestReadJournalBase(t *testing.T) {
	ctx := context.Background()
	open := func(t *testing.T, start uint64) *journal.Journal {
		j, err := journal.Open(t.TempDir(), journal.Options{StartLSN: start})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { j.Close() })
		return j
	}
	t.Run("from LSN 1", func(t *testing.T) {
		j := open(t, 0)
		j.Append(ctx, journal.TypeEpochMarker, 1, "", journal.EncodeEpochMarker(0, 0))
		b, es, err := ReadJournal(j, nil)
		if err != nil || b != (failover.Base{}) || len(es) != 1 {
			t.Fatalf("base %v, %d entries, %v", b, len(es), err)
		}
	})
	t.Run("data record first", func(t *testing.T) {
		j := open(t, 11)
		j.Append(ctx, journal.TypeData, 3, "fhir", journal.EncodeOps([]journal.Op{{Kind: journal.OpSet, Key: []byte("k"), Value: []byte("v")}}))
		b, es, err := ReadJournal(j, nil)
		if err != nil || b != (failover.Base{LSN: 10, Epoch: 3}) || len(es) != 1 || es[0].LSN != 11 {
			t.Fatalf("base %v, %d entries, %v", b, len(es), err)
		}
		if _, _, err := ReadJournal(j, &failover.Base{LSN: 10, Epoch: 2}); err == nil {
			t.Fatal("a recorded base that disagrees with the journal was accepted")
		}
	})
	t.Run("epoch marker first", func(t *testing.T) {
		j := open(t, 11)
		j.Append(ctx, journal.TypeEpochMarker, 4, "", journal.EncodeEpochMarker(2, 10))
		b, _, err := ReadJournal(j, nil)
		if err != nil || b != (failover.Base{LSN: 10, Epoch: 2}) {
			t.Fatalf("base %v, %v", b, err)
		}
	})
	t.Run("empty after a re-seed", func(t *testing.T) {
		j := open(t, 21)
		b, es, err := ReadJournal(j, &failover.Base{LSN: 20, Epoch: 5})
		if err != nil || b != (failover.Base{LSN: 20, Epoch: 5}) || len(es) != 0 {
			t.Fatalf("base %v, %d entries, %v", b, len(es), err)
		}
		if _, _, err := ReadJournal(j, nil); err == nil || !strings.Contains(err.Error(), "no base was recorded") {
			t.Fatalf("an empty journal without a recorded base must be an error, got %v", err)
		}
		if _, _, err := ReadJournal(j, &failover.Base{LSN: 19, Epoch: 5}); err == nil {
			t.Fatal("a recorded base for another LSN was accepted")
		}
	})
}
