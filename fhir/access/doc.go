// Package access decides who may do what on Tandem's FHIR data path: it
// verifies bearer JWTs, reads their SMART scopes and patient context into a
// Principal, maps FHIR interactions to SMART permission letters, and
// evaluates the patient compartment (R4 CompartmentDefinition "patient").
// Every node and the gateway enforce access through this one package.
//
// Tokens are JWTs signed with HS256, RS256 or ES256 under a key id (kid);
// several keys may be trusted at once so keys can be rotated. Only the
// algorithm configured for a kid is accepted for it, so "alg":"none" and
// algorithm confusion (an RSA public key used as an HMAC secret) are
// refused. exp is required; exp, nbf, iss and aud are checked with a small
// leeway.
//
// Claims read: sub, client_id (or azp), scope (space separated), patient
// (the SMART launch context), iss, aud, exp, nbf.
//
// Scopes (SMART App Launch v2, with v1 forms mapped):
//
//	patient/Observation.rs   read+search Observations in the token's patient compartment
//	user/*.cruds             everything on every type, as the signed-in user
//	system/Patient.r         read any Patient, as a backend service
//	patient/*.read           v1: same as patient/*.rs
//	user/*.write             v1: same as user/*.cud
//	user/*.*                 v1: same as user/*.cruds
//	system/tandem.admin      AdminScope: the admin API and the audit store
//
// Scopes with a query suffix (v2 "?category=...") grant nothing: they are
// not evaluated, so they are ignored rather than over-granted. A patient/
// scope grants nothing without a patient claim.
//
// The package must never log, and its errors must never carry token
// contents or resource contents: they name only what was wrong.
package access
