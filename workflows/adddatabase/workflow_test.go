package adddatabase

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/mock"

	"github.com/tandemhealth/tandem/workflows"
	"github.com/tandemhealth/tandem/workflows/tiertest"
)

var act *workflows.Admin

func hashes(sha string, members ...string) []workflows.HashReport {
	var out []workflows.HashReport
	for _, m := range members {
		out = append(out, workflows.HashReport{Member: m, Database: "labs", SHA256: sha, AppliedLSN: 9})
	}
	return out
}

func TestAddDatabase(t *testing.T) {
	in := Input{Tier: "records", Database: "labs", SourceDir: "/srv/old-node/store", By: "ops"}
	t.Run("the primary imports, every member converges on the source's content, recorded", func(t *testing.T) {
		env := tiertest.NewEnv()
		Register(env)
		recs := &tiertest.Records{}
		recs.Mock(env, "records")
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(tiertest.Healthy(1), nil)
		env.OnActivity(act.RequestImport, mock.Anything, "records", "a", "labs", "/srv/old-node/store", "", "ops").Return(nil).Once()
		polls := 0
		env.OnActivity(act.ImportState, mock.Anything, "records", "a", "labs").Return(func(context.Context, string, string, string) (workflows.DatabaseImport, error) {
			polls++
			if polls < 3 {
				return workflows.DatabaseImport{Name: "labs", State: "needs-activation", Keys: 100 * polls, SourceSHA256: "src"}, nil
			}
			return workflows.DatabaseImport{Name: "labs", State: "normal", Keys: 4000, FirstLSN: 10, LastLSN: 40, SourceSHA256: "src"}, nil
		})
		hashPolls := 0
		env.OnActivity(act.ContentHashes, mock.Anything, "records", []string{"a", "b"}, []string{"labs"}).Return(func(context.Context, string, []string, []string) ([]workflows.HashReport, error) {
			hashPolls++
			if hashPolls == 1 { // b still applying
				return append(hashes("src", "a"), hashes("older", "b")...), nil
			}
			return hashes("src", "a", "b"), nil
		})
		env.ExecuteWorkflow(Name, in)
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		var res Result
		env.GetWorkflowResult(&res)
		if res.Keys != 4000 || res.FirstLSN != 10 || res.LastLSN != 40 || len(res.Members) != 2 || hashPolls != 2 {
			t.Fatalf("result %+v after %d hash reads", res, hashPolls)
		}
		if recs.Events() != "requested,done" {
			t.Fatalf("records %s", recs.Events())
		}
	})
	t.Run("a failed import ends the workflow with the primary's reason", func(t *testing.T) {
		env := tiertest.NewEnv()
		Register(env)
		recs := &tiertest.Records{}
		recs.Mock(env, "records")
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(tiertest.Healthy(1), nil)
		env.OnActivity(act.RequestImport, mock.Anything, "records", "a", "labs", "/srv/old-node/store", "", "ops").Return(nil)
		env.OnActivity(act.ImportState, mock.Anything, "records", "a", "labs").Return(workflows.DatabaseImport{Name: "labs", State: "needs-activation",
			Error: "open the source store (stop the node that owns it, or restore a backup): lock held"}, nil)
		env.ExecuteWorkflow(Name, in)
		err := env.GetWorkflowError()
		if tiertest.ErrType(err) != workflows.ErrNotReady || !strings.Contains(err.Error(), "lock held") {
			t.Fatalf("error %v", err)
		}
		if recs.Events() != "requested,import" {
			t.Fatalf("records %s", recs.Events())
		}
		env.AssertNotCalled(t, "ContentHashes", mock.Anything, mock.Anything, mock.Anything, mock.Anything)
	})
	t.Run("no primary: nothing is asked", func(t *testing.T) {
		env := tiertest.NewEnv()
		Register(env)
		env.OnActivity(act.TierStatus, mock.Anything, "records").Return(tiertest.Switched(2)[:1], nil)
		env.ExecuteWorkflow(Name, in)
		if err := env.GetWorkflowError(); tiertest.ErrType(err) != workflows.ErrNotReady || !strings.Contains(err.Error(), "no primary") {
			t.Fatalf("error %v", err)
		}
		env.AssertNotCalled(t, "RequestImport", mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything, mock.Anything)
	})
}
