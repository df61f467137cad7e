package recoverlostjournal

import (
	"testing"

	"go.temporal.io/sdk/worker"

	"github.com/tandemhealth/tandem/workflows/tiertest"
)

// TestReplay replays the histories recorded from real runs (testdata/).
func TestReplay(t *testing.T) {
	tiertest.Replay(t, func(r worker.WorkflowReplayer) { Register(r) })
}
