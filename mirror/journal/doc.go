// Package journal is a node's write-ahead journal: every change to a mirrored
// database is one record, appended in LSN order, made durable by a group
// committer (one fdatasync for every record queued meanwhile), read back by
// the store's crash recovery and shipped to the other members.
//
// # What it must never do
//
//   - Never skip a corrupt record. Damage other than a torn tail stops Open
//     (or a Reader) with a *CorruptionError naming the segment and offset;
//     nothing at or after it is returned.
//   - Never retry a failed fsync or write. After one, the journal is unusable
//     forever: Err(), every pending Wait and every later call return an error
//     wrapping ErrUnusable, and the member must step down.
//   - Never acknowledge a record (Pending.Wait returning nil) before it and
//     every record before it are fsynced, together with the directory entry
//     of the segment holding it.
//   - Never hand a reader a byte that is not durable, and never panic on any
//     input: every length is bounded before anything is allocated.
//   - Never put record contents (PHI) in an error.
//
// # Files
//
// A journal is a directory of segment files named by the first LSN they hold,
// 20 decimal digits and ".journal" (00000000000000000001.journal), plus a
// LOCK file. Only the last segment is appended to; a segment rolls over when
// its size reaches Options.SegmentSize. A new segment is created, its header
// written and synced and the directory synced before any record in it is
// acknowledged; the previous segment is synced first. Purge removes whole
// segments from the oldest.
//
// # Group commit
//
// Enqueue assigns the LSN, encodes and checksums the frame (copying the
// payload) into the open commit group under the journal's lock and returns;
// it never waits for I/O. One committer goroutine, owned by the Journal and
// stopped by Close, takes the whole group, writes it with one write per
// segment touched, issues one fdatasync and wakes every waiter of the group.
// It lets a group fill for at most half an fdatasync (Options.MaxCommitDelay)
// when the writers it just woke are expected back, so closed-loop writers
// share fsyncs fully. The active segment's space is allocated in 4 MiB
// steps ahead of the writes, never past the rollover threshold, as zeros
// that extend the file (fallocate mode 0), so an fdatasync rarely has to
// allocate blocks or commit a new file size.
//
// # Byte layout (format version 1; all integers little-endian)
//
// The constants in format.go are the format: changing one needs a new
// FormatVersion.
//
// Segment header, 24 bytes (SegmentHeaderSize):
//
//	| offset | size | field          | value                                         |
//	|--------|------|----------------|-----------------------------------------------|
//	| 0      | 8    | magic          | "TNDMJRNL"                                    |
//	| 8      | 4    | format version | 1 (FormatVersion)                             |
//	| 12     | 8    | first LSN      | uint64, equal to the LSN in the file name     |
//	| 20     | 4    | header CRC     | CRC-32C (Castagnoli) of bytes 0..19           |
//
// Then frames, back to back, one per record:
//
//	| offset  | size | field          | value                                                |
//	|---------|------|----------------|------------------------------------------------------|
//	| 0       | 4    | length         | uint32 L = size of the body (bytes 8..8+L), 30..L_max |
//	| 4       | 4    | CRC            | CRC-32C (Castagnoli) of bytes 0..3 then 8..8+L        |
//	| 8       | 1    | type           | 1 = data, 2 = epoch marker                           |
//	| 9       | 8    | epoch          | uint64, never lower than the previous record's       |
//	| 17      | 8    | LSN            | uint64, previous record's LSN + 1                    |
//	| 25      | 8    | group LSN      | uint64, first LSN of the commit group written with it |
//	| 33      | 1    | database len D | 0..64 (MaxDatabaseName); 0 for an epoch marker       |
//	| 34      | D    | database       | [a-z0-9_-]                                           |
//	| 34+D    | 4    | payload len P  | uint32, = L - 30 - D, <= MaxPayload (64 MiB)         |
//	| 38+D    | P    | payload        | see below                                            |
//
// L_max = 30 + 64 + MaxPayload. The CRC covers the length and every header
// field, so a flipped bit anywhere in a frame is detected.
//
// After the last frame, zero bytes to the end of the file may follow: space
// allocated ahead of writes. A length of 0 is never a frame, so they cannot
// be mistaken for one. Only the last segment normally has them (a segment
// that rolls over ends at its last frame), but any segment may.
//
// Data payload (EncodeOps), version 1:
//
//	| size | field                                                        |
//	|------|--------------------------------------------------------------|
//	| 1    | payload version = 1 (PayloadVersion)                         |
//	| 4    | op count N                                                   |
//	| N ×  | kind (1: 1 = set, 2 = delete), key len (4, <= 64 KiB), key, |
//	|      | set only: value len (4, <= MaxPayload), value                |
//
// Epoch-marker payload (EncodeEpochMarker), 17 bytes: version = 1 (1),
// previous epoch (8), last LSN of the previous epoch (8).
//
// # Recovery: torn tail versus corruption
//
// The committer writes a commit group only after the previous group in the
// same file was fsynced, and stamps every frame with the group's first LSN.
// Open scans every segment:
//
//   - Zeros from the end of a segment's last valid frame to the end of the
//     file are allocated space, kept as they are (Recovery reports them as
//     PreallocatedBytes), in any segment: a lost end of an earlier segment
//     still shows as a gap before the next one.
//   - Any other bad or incomplete frame at the end of the last segment,
//     followed by nothing that is a valid frame of a later commit group, is
//     a torn tail:
//     the segment is cut back to the last valid frame (by rewriting its valid
//     prefix to a temporary file and renaming it over the segment) and
//     Recovery() reports the segment, offset and bytes removed. Valid frames
//     of the same, never-acknowledged group after the tear are dropped too.
//   - A bad frame in any other segment, a bad frame followed by a valid frame
//     of a later group, a bad header (except a last segment holding no frame:
//     a crash while creating it), or a gap, a repeated LSN or a lower epoch
//     anywhere is a *CorruptionError (errors.Is(err, ErrCorrupt)).
//
// A segment whose header has a valid checksum but another format version is
// ErrFormatVersion: left alone, never truncated.
//
// Open then fsyncs the last segment and the directory, so every recovered
// record is durable.
package journal
