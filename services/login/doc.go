// Package login is a member's token endpoint, POST /auth/token: people
// and API clients log in with the users the member *enforces* (its
// effective config-sync state, not the desired one) and get a short-lived
// bearer JWT that /fhir and the gateway accept. Every member answers it —
// primary, backup and asyncs — because a failover target must let people
// log in with the state it holds.
//
// # Protocol (RFC 6749 token endpoint)
//
// The body is application/x-www-form-urlencoded; parameters in the query
// string, or named twice, are refused.
//
//	grant_type=password            username, password; optional scope
//	grant_type=client_credentials  client_id + client_secret in HTTP Basic
//	                               (RFC 6749 §2.3.1) or in the form, not
//	                               both; optional scope
//
// Success is 200 {"access_token", "token_type": "Bearer", "expires_in",
// "scope"} with Cache-Control: no-store. Errors follow RFC 6749 §5.2:
// invalid_request 400 (missing or repeated parameter, wrong content type),
// unsupported_grant_type 400, invalid_grant 400 (user name or password
// wrong, user disabled or unknown, or the name is locked out),
// invalid_client 401 (client id or secret wrong, client or its user
// disabled or unknown), invalid_scope 400 (after a correct password: a
// role that defines nothing on this member, no roles, or a requested scope
// not granted). Refusals never say whether the user exists. Without a
// signing key the endpoint answers 501 naming the field to set.
//
// # Roles to scopes
//
// A user's token carries the union of its roles' scopes. A role is looked
// up in the member's effective roles first (config-sync: its scopes;
// its admin rights, finer than the one admin scope a token can carry, are
// not put in the token), then among the built-in roles of access.Roles,
// whose scopes are exactly access.RoleGrant's (clinician, admin;
// patient-app needs a launch patient a login cannot give, so it refuses).
// A role defined nowhere refuses the login: a token is never wider than
// the roles say. An API client gets its user's scopes, restricted to its
// allowed_scope when set. A requested scope narrows the token and may only
// name granted scopes. The token's subject is the user; a client's token
// carries its id as client_id.
//
// # Brute force
//
// LockoutAfter failed attempts of one user name (or client id) within
// LockoutFor refuse that name for LockoutFor, whether it exists or not, on
// this member (in memory; the gateway also rate-limits per address).
// Unknown users are compared against a dummy bcrypt hash, so an answer
// takes as long whether the user exists or not.
//
// Every attempt is logged (constant keys) and handed to Config.Audit (the
// node's FHIR AuditEvent pipeline). The package must never log, audit or
// answer a password, a secret, a hash or a token.
package login
