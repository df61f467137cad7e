// Package configsync holds the state each member keeps outside the mirror —
// users, roles and security settings (DESIGN §5 "Config-sync") — and the
// operations that keep it aligned: canonical forms, a digest per category,
// Diff and Apply.
//
// Two copies of each category exist. The desired state is a versioned
// document per category in the tier's mirrored "system" database (key
// DesiredKey(category)); it is changed only through the primary's admin API,
// so it travels in the journal like any other write. The effective state is
// what one member enforces: a Local file under the member's data directory
// (never mirrored), replaced atomically and fsynced. Apply moves effective
// toward desired — never the other way, so a member never copies stale state
// from a stale peer — and is idempotent.
//
// Canonical forms exclude host-specific fields (certificate and key paths),
// reduce secrets to hashes of their hashes, and sort every list, so equal
// digests mean the members enforce the same thing.
//
// What it must never do: hold or log a clear-text password or client secret
// (passwords are bcrypt-hashed before they reach a document), import the
// failover core or any service, or read desired state from anywhere but the
// mirrored system database.
package configsync
