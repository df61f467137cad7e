// Package search is Tandem's FHIR R4 search model: the R4 SearchParameter
// definitions (an embedded copy of the HL7 4.0.1 set), a small FHIRPath
// evaluator of our own for their expressions, the index entries a stored
// resource yields, their key layout in the mirrored "fhir" database, and the
// parsing and in-memory matching of search queries.
//
// It must never do I/O, log, or put resource content into an error or a
// reported message: Query.Ignored names parameters, never their values.
// The HTTP side (plans, paging, includes, $everything) lives in fhir/server;
// the keys are written by the server's transaction code in the same
// sequencer Write (one journal record) as the resource version they index.
//
// # Supported parameters
//
// A parameter is supported when its type is string, token, reference, uri,
// date, quantity or number and its expression compiles in the FHIRPath
// subset (see fhirpath.go); composite and special parameters are not.
// _id and _lastUpdated are common to every type. Registry.Params reports
// each parameter and, when unsupported, why.
//
// # Key layout (database "fhir")
//
//	r/<Type>/<id>                                forward record: every entry of the current version
//	x/<Type>/<param>0x00<value>0x00<id>          inverted index (string, token, reference, uri), empty value
//
// A forward record is a format byte (RecordFormat, 1) followed by entries,
// sorted by parameter then value:
//
//	uvarint len, param name, kind byte, uvarint len, value
//
// Values never contain 0x00 (such values, and values over MaxValueBytes,
// are not indexed). Value encodings by kind:
//
//	's' string     normalized (lower case, Latin accents folded) 0x01 original
//	't' token      code 0x01 system (booleans "true"/"false")
//	'r' reference  id 0x01 Type for [base/]Type/id[/_history/n]; the whole reference 0x01 otherwise
//	'u' uri        the uri
//	'd' date       [lo, hi) in Unix ms, 2 x 8 bytes big-endian, sign bit flipped
//	'n' number     8 bytes: IEEE 754 made byte-sortable
//	'q' quantity   number (8 bytes) system 0x01 code 0x01 unit
//
// Reference parameters also yield "<param>:identifier" token entries from
// Reference.identifier. Every resource has a "_lastUpdated" date entry.
// Only kinds s, t, r, u get inverted-index keys: a query lists candidates
// from the most selective of those terms (a prefix scan), and every term is
// then checked against each candidate's forward record; a query without
// such a term scans the type's forward records. On update and delete the
// old version's keys, found through its forward record, are deleted in the
// same record.
package search
