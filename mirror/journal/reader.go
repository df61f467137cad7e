package journal

import (
	"errors"
	"fmt"
	"io"
	"sort"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// errPastLimit means the bytes asked for end past the readable limit.
var errPastLimit = errors.New("journal: read past limit")

// frameReader reads frames from a segment file through a window buffer. It
// never reads at or past limit, so it never sees bytes that are not yet
// durable (a concurrent write may be in progress past it).
type frameReader struct {
	f      io.ReaderAt
	limit  int64
	buf    []byte
	bufOff int64
}

const readWindow = 256 << 10

func newFrameReader(f io.ReaderAt, limit int64) *frameReader {
	return &frameReader{f: f, limit: limit}
}

// peek returns n bytes at off; they alias the window until the next call.
func (r *frameReader) peek(off int64, n int) ([]byte, error) {
	if off < 0 || n < 0 || off+int64(n) > r.limit {
		return nil, errPastLimit
	}
	if off >= r.bufOff && off+int64(n) <= r.bufOff+int64(len(r.buf)) {
		return r.buf[off-r.bufOff : off-r.bufOff+int64(n)], nil
	}
	want := max(n, readWindow)
	if rem := r.limit - off; int64(want) > rem {
		want = int(rem)
	}
	if cap(r.buf) < want {
		r.buf = make([]byte, want)
	}
	r.buf = r.buf[:want]
	got, err := r.f.ReadAt(r.buf, off)
	if got < want {
		r.buf, r.bufOff = r.buf[:0], 0
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	r.bufOff = off
	return r.buf[:n], nil
}

// frameAt decodes the frame at off. A *frameError says the bytes are not a
// frame (incomplete: cut short by the limit); an error is an I/O failure.
// Database and Payload alias the window.
func (r *frameReader) frameAt(off int64) (frame, int, *frameError, error) {
	h, err := r.peek(off, frameHeaderSize)
	if err == errPastLimit {
		return frame{}, 0, &frameError{reason: "incomplete frame header", incomplete: true}, nil
	} else if err != nil {
		return frame{}, 0, nil, err
	}
	n, ferr := frameBodyLen(h)
	if ferr != nil {
		return frame{}, 0, ferr, nil
	}
	b, err := r.peek(off, frameHeaderSize+n)
	if err == errPastLimit {
		return frame{}, 0, &frameError{
			reason:     fmt.Sprintf("incomplete frame: %d of %d bytes", r.limit-off, frameHeaderSize+n),
			incomplete: true}, nil
	} else if err != nil {
		return frame{}, 0, nil, err
	}
	f, size, ferr := decodeFrame(b)
	return f, size, ferr, nil
}

// findFrame scans every offset from off for a valid frame that shows the
// damage before off is not a torn write. next is the LSN the damaged frame
// would have had: a frame with a greater LSN whose commit group began at or
// before next was written in the same unsynced group, so it is skipped; any
// other valid frame is returned. next == 0 returns any valid frame.
func (r *frameReader) findFrame(off int64, next uint64) (int64, *frame, error) {
	for ; off+frameHeaderSize+frameFixedBody <= r.limit; off++ {
		h, err := r.peek(off, frameHeaderSize)
		if err != nil {
			return 0, nil, err
		}
		n, ferr := frameBodyLen(h)
		if ferr != nil || off+int64(frameHeaderSize+n) > r.limit {
			continue
		}
		f, size, ferr, err := r.frameAt(off)
		if err != nil {
			return 0, nil, err
		}
		if ferr != nil {
			continue
		}
		if next != 0 && f.LSN > next && f.group <= next {
			off += int64(size) - 1
			continue
		}
		return off, &f, nil
	}
	return 0, nil, nil
}

// zeroFrom reports whether every byte from off to the limit is zero.
func (r *frameReader) zeroFrom(off int64) (bool, error) {
	for off < r.limit {
		n := int(min(r.limit-off, readWindow))
		b, err := r.peek(off, n)
		if err != nil {
			return false, err
		}
		for _, c := range b {
			if c != 0 {
				return false, nil
			}
		}
		off += int64(n)
	}
	return true, nil
}

// Reader reads durable records in LSN order. It is not safe for concurrent
// use; any number of readers may run concurrently with appends.
type Reader struct {
	j      *Journal
	next   uint64 // LSN of the next record to return
	expect uint64 // LSN of the frame at off
	seg    *segment
	f      vfs.File
	fr     *frameReader
	off    int64
	err    error // sticky
	closed bool
}

// NewReader returns a reader of durable records with LSN >= fromLSN (0 is
// read as 1). It returns ErrPurged if fromLSN is below the first LSN held.
func (j *Journal) NewReader(fromLSN uint64) (*Reader, error) {
	if fromLSN == 0 {
		fromLSN = 1
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil, ErrClosed
	}
	if first := j.segs[0].first; fromLSN < first {
		return nil, fmt.Errorf("%w: LSN %d is below the first held LSN %d", ErrPurged, fromLSN, first)
	}
	return &Reader{j: j, next: fromLSN}, nil
}

// Next returns the next record. It returns io.EOF when it has returned every
// durable record (a later Next may return more), ErrPurged if the segment it
// needs was purged, and a *CorruptionError on damage; errors other than
// io.EOF are sticky. The record's Payload is not shared with the journal.
func (r *Reader) Next() (Record, error) {
	if r.closed {
		return Record{}, ErrClosed
	}
	if r.err != nil {
		return Record{}, r.err
	}
	for {
		durable := r.j.DurableLSN()
		if r.next > durable {
			return Record{}, io.EOF
		}
		if r.seg == nil || r.next > r.seg.last {
			if err := r.position(); err != nil {
				if err == io.EOF {
					return Record{}, io.EOF
				}
				r.err = err
				return Record{}, err
			}
			continue
		}
		f, n, ferr, err := r.fr.frameAt(r.off)
		if err != nil {
			r.err = fmt.Errorf("journal: read %s: %w", r.seg.name, err)
			return Record{}, r.err
		}
		if ferr != nil {
			r.err = &CorruptionError{Segment: r.seg.name, Offset: r.off, Reason: ferr.reason}
			return Record{}, r.err
		}
		if f.LSN != r.expect {
			r.err = &CorruptionError{Segment: r.seg.name, Offset: r.off,
				Reason: fmt.Sprintf("LSN %d where %d was expected", f.LSN, r.expect)}
			return Record{}, r.err
		}
		r.off += int64(n)
		r.expect++
		if f.LSN < r.next {
			continue // scanning forward to fromLSN
		}
		r.next++
		rec := f.Record
		rec.Payload = append([]byte(nil), f.Payload...)
		return rec, nil
	}
}

// position moves the reader to the segment holding r.next (or refreshes the
// durable limit of the current one). io.EOF: nothing durable to read yet.
func (r *Reader) position() error {
	j := r.j
	j.mu.Lock()
	i := sort.Search(len(j.segs), func(i int) bool { return j.segs[i].first > r.next }) - 1
	if i < 0 {
		j.mu.Unlock()
		return fmt.Errorf("%w: LSN %d", ErrPurged, r.next)
	}
	s := j.segs[i]
	snap := &segment{name: s.name, first: s.first, last: s.last, synced: s.synced}
	j.mu.Unlock()
	if r.next > snap.last {
		return io.EOF
	}
	if r.seg != nil && r.seg.name == snap.name {
		r.seg = snap
		r.fr.limit = snap.synced
		return nil
	}
	f, err := j.fs.Open(j.fs.PathJoin(j.dir, snap.name))
	if err != nil {
		if r.j.isPurged(snap.first) {
			return fmt.Errorf("%w: LSN %d", ErrPurged, r.next)
		}
		return fmt.Errorf("journal: open %s: %w", snap.name, err)
	}
	if r.f != nil {
		r.f.Close()
	}
	r.f, r.seg, r.off, r.expect = f, snap, SegmentHeaderSize, snap.first
	r.fr = newFrameReader(f, snap.synced)
	hdr, err := r.fr.peek(0, SegmentHeaderSize)
	if err != nil {
		return &CorruptionError{Segment: snap.name, Offset: 0, Reason: "unreadable header"}
	}
	if first, err := decodeSegmentHeader(hdr); err != nil {
		return &CorruptionError{Segment: snap.name, Offset: 0, Reason: err.Error()}
	} else if first != snap.first {
		return &CorruptionError{Segment: snap.name, Offset: 0, Reason: "header first LSN does not match the file name"}
	}
	return nil
}

func (j *Journal) isPurged(first uint64) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return first < j.segs[0].first
}

// Close releases the reader's file.
func (r *Reader) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.f != nil {
		return r.f.Close()
	}
	return nil
}
