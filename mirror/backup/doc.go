// Package backup makes and restores Tandem backups: consistent snapshots of
// a member's store plus the journal archived continuously after them, so a
// tier can be rebuilt as it was at any archived LSN or time (point-in-time
// recovery). Mirroring copies a mistake as faithfully as data; a backup is
// how a hospital undoes one.
//
// # Layout of a backup store (a directory by default)
//
//	snapshots/<lsn 20 digits>/files/...   a Pebble checkpoint of the store, holding every record up to <lsn>
//	snapshots/<lsn 20 digits>/manifest.json   LSN, epoch, time, member, format versions, SHA-256 and size of every file
//	archive/<first>-<last>.chunk          committed journal records <first>..<last> as journal frames (each with its CRC-32C)
//	archive/<first>-<last>.json           the chunk's manifest: LSNs, epochs, record count, SHA-256, archived-at time
//
// A manifest is written after the files it describes, so a crash leaves an
// object without a manifest, which every reader ignores and the next run
// overwrites. Writes are atomic (temporary file, fsync, rename, directory
// fsync).
//
// # Time
//
// Journal frames carry no time. A chunk's ArchivedAt is when the archiver
// read it: every record in it was committed at or before that time. A
// restore "to time T" therefore restores every record archived by T — the
// newest point that is certainly not after T — and says so; its precision
// is the archiving interval (default 1 s).
//
// # A new tier from a backup
//
// Restore keeps the old tier's LSNs (its journal continues after the
// restored one). RestoreNewTier restores to the same point and then writes
// the content as the first history of a new tier: the epoch-1 marker at
// LSN 1, every database's keys and values as data records (encoded by
// journal.EncodeOps), a store recovered from them, and NewTierSeedFile,
// which lets the tier's genesis primary start over that journal. Content
// hashes cover keys and values only, so they equal the plain restore's.
//
// # What it must never do
//
//   - Never produce a silently partial database: a missing, corrupt or
//     non-contiguous snapshot file or chunk stops a restore with an error
//     naming it, and the partial output directory is removed.
//   - Never archive across a fork: before appending, the archiver checks that
//     the source still holds its last archived record byte for byte; after a
//     forced promotion discarded it, archiving stops with an error naming the
//     LSN, and a new snapshot must start a new backup.
//   - Never archive a record that is not committed (acknowledged) on the tier.
package backup
