package recoverlostjournal

import "go.temporal.io/sdk/workflow"

func workflowOptions() workflow.RegisterOptions { return workflow.RegisterOptions{Name: Name} }

// Register adds the workflow to a worker (or replayer) under Name.
func Register(r interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}) {
	r.RegisterWorkflowWithOptions(Workflow, workflowOptions())
}
