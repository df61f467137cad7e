//go:build deps

// This file pins the modules the policy and gateway packages are built on
// while those packages are written; it is never compiled. (The Temporal
// modules are imported by workflows/... and services/worker now.)
package workflows

import (
	_ "github.com/alicebob/miniredis/v2"
	_ "github.com/golang-jwt/jwt/v5"
	_ "github.com/open-policy-agent/opa/v1/rego"
	_ "github.com/redis/go-redis/v9"
)
