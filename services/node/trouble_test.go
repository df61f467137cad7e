package node_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/mirror/journal"
	"github.com/tandemhealth/tandem/mirror/sequencer"
	"github.com/tandemhealth/tandem/services/arbiter"
	"github.com/tandemhealth/tandem/services/node"
)

// slowResume is a log handler that takes its time over the "commit-resumed"
// event: the mirror loop logs it after acknowledging the writes that going
// alone allowed, so a slow log (or a loop descheduled there) holds the
// loop between the acknowledgements and the end of its batch.
type slowResume struct{ slog.Handler }

func (h slowResume) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "commit-resumed") {
		time.Sleep(300 * time.Millisecond)
	}
	return h.Handler.Handle(ctx, r)
}

func (h slowResume) WithAttrs(as []slog.Attr) slog.Handler {
	return slowResume{h.Handler.WithAttrs(as)}
}
func (h slowResume) WithGroup(g string) slog.Handler { return slowResume{h.Handler.WithGroup(g)} }

// TestWriterAnsweredAsThePrimaryGoesAloneFindsItPrimary: the backup stops;
// the primary's waiting writes are acknowledged once the arbiter records the
// backup not active. A writer that has its answer finds the member primary
// at once (the handlers refuse a write when the published status is not
// primary): the status is published before the acknowledgements, not after
// the loop's batch.
func TestWriterAnsweredAsThePrimaryGoesAloneFindsItPrimary(t *testing.T) {
	dir := t.TempDir()
	f := benchCluster(t, dir)
	if err := arbiter.Seed(f.Arbiter.DataDir, "records", "a", "b"); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	arb, err := arbiter.New(f, quiet)
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); arb.Run(ctx) }()
	a, err := node.OpenMember(f, "records", "a", slog.New(slowResume{slog.NewTextHandler(io.Discard, nil)}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := node.OpenMember(f, "records", "b", quiet)
	if err != nil {
		t.Fatal(err)
	}
	// Both opened before either runs, as startTierOf does.
	wg.Add(1)
	go func() { defer wg.Done(); a.Run(ctx) }()
	bctx, stopB := context.WithCancel(ctx)
	bDone := make(chan struct{})
	go func() { defer close(bDone); b.Run(bctx) }()
	for deadline := time.Now().Add(20 * time.Second); a.Status().Status != "primary" || a.Status().Transfer == nil || a.Status().Transfer.Status != "active"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("tier not ready: a is %s", a.Status().Status)
		}
	}
	write := func(key string) error {
		_, err := a.Sequencer().Write(context.Background(), "fhir", func(sequencer.View) ([]journal.Op, error) {
			return []journal.Op{{Kind: journal.OpSet, Key: []byte(key), Value: []byte("v")}}, nil
		})
		return err
	}
	if err := write("before"); err != nil {
		t.Fatal(err)
	}

	stopB() // the backup goes away; writes wait for the QoS, then a goes alone
	<-bDone
	b.Close()
	errs := make(chan error, 4)
	for w := range 4 {
		go func() {
			if err := write(fmt.Sprintf("while-alone-%d", w)); err != nil {
				errs <- err
				return
			}
			if st := a.Status().Status; !a.IsPrimary() {
				errs <- fmt.Errorf("write acknowledged, then the member says %s", st)
				return
			}
			errs <- nil
		}()
	}
	for range 4 {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("writes not acknowledged after the backup left")
		}
	}
}
