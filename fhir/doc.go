// Package fhir holds what Tandem knows about FHIR R4 that does not depend on
// HTTP: the storage layout of clinical data in the mirrored "fhir" database,
// the parsing and validation of resource bodies with github.com/google/fhir/go
// (R4, UTC), the final JSON form of a stored version, reference rewriting, and
// user-facing errors mapped once to an HTTP status and an OperationOutcome.
// The HTTP interactions that use it live in fhir/server.
//
// This package must never do I/O, log, or put resource content (PHI) into an
// error: errors name the location of a problem (a FHIRPath-like expression)
// and a fixed description, never a value taken from a resource.
//
// # Storage layout (database "fhir")
//
// Every key below lives in the mirrored "fhir" database. Every interaction
// (or a whole transaction bundle) writes all of its keys in one sequencer
// Write, which is one journal record, so resource, history, indexes and
// idempotency result are atomic and mirrored together.
//
//	c/<Type>/<id>                  current version of a resource: Version record
//	v/<Type>/<id>/<^vid>           an older version (moved here when superseded): Version record
//	h/<^seq>                       system history: <Type>/<id> 0x00 <vid: 8 BE> <lastUpdated ms: 8 BE>
//	t/<Type>/<^seq>                type history:   <id> 0x00 <vid: 8 BE> <lastUpdated ms: 8 BE>
//	i/<Type>/<system>0x00<value>0x00<id>  identifier index, exact system: empty value
//	j/<Type>/<value>0x00<id>       identifier index, any system: empty value
//	n/<Type>/<system>0x00<value>   legacy identifier index, exact system: ids, '\n'-separated, sorted (read, never added to)
//	m/<Type>/<value>               legacy identifier index, any system: the same
//	s                              last history sequence number: 8 bytes BE
//	k/<hex sha256 of key>          Idempotency-Key result: Idempotent record (JSON)
//	~a/..., x/p/<Type>/<id>        AuditEvents and their indexes (server.Options.Audit; layout in fhir/server/audit.go)
//	r/<Type>/<id>                  search: forward record, every index entry of the current version
//	p/<patient id>/<Type>/<id>     search: the same forward record, under each patient compartment it is in
//	x/<Type>/<param>0x00<value>0x00<id>  search: inverted index (string, token, reference, uri), empty value
//
// The search keys, their value encodings and how queries use them are
// specified in package fhir/search; they are written in the same Write as
// the version they index.
//
// <^n> is the 8-byte big-endian encoding of ^n (bitwise not), so a prefix
// scan returns the newest first. Resource types are [A-Za-z]+ and ids are
// [A-Za-z0-9.-]{1,64}, so '/' never appears inside a component.
//
// The c/<Type>/ prefix is the type index: listing the resources of a type
// (search by type) is a prefix scan over current versions, skipping
// tombstones.
//
// Version ids are decimal, start at 1 and grow by one per change of the
// resource, deletes included; they are never reused, also after a delete.
//
// # Version record
//
//	offset  size  field
//	0       1     format (= VersionFormat, 1)
//	1       1     kind: 1 created (POST), 2 updated (PUT), 3 deleted (tombstone)
//	2       8     versionId, big-endian
//	10      8     lastUpdated, Unix milliseconds, big-endian
//	18      8     history sequence number, big-endian
//	26      ...   final JSON of the version (empty for a tombstone)
//
// The JSON is the exact bytes served by a read: compact, with resourceType,
// id and meta (versionId, lastUpdated, then the client's other meta
// elements) first, then the client's elements in their order. A read is a
// key lookup plus a copy, never a re-marshal.
package fhir
