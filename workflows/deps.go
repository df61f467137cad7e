//go:build deps

// This file pins the modules the workflow, policy and gateway packages are
// built on while those packages are written; it is never compiled.
package workflows

import (
	_ "github.com/alicebob/miniredis/v2"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/open-policy-agent/opa/v1/rego"
	_ "github.com/redis/go-redis/v9"
	_ "go.temporal.io/sdk/client"
	_ "go.temporal.io/sdk/testsuite"
	_ "go.temporal.io/sdk/worker"
	_ "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	_ "go.temporal.io/server/temporal"
)
