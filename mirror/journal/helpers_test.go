package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

const testDir = "/j"

// syncHookFS calls hook right before and right after every Sync/SyncData of
// any file or directory it opened.
type syncHookFS struct {
	vfs.FS
	hook func(path string, after bool)
}

type syncHookFile struct {
	vfs.File
	path string
	fs   *syncHookFS
}

func (fs *syncHookFS) wrap(path string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	return &syncHookFile{File: f, path: path, fs: fs}, nil
}

func (fs *syncHookFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *syncHookFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.Open(name, opts...)
	return fs.wrap(name, f, err)
}

func (fs *syncHookFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

func (fs *syncHookFS) OpenDir(name string) (vfs.File, error) {
	f, err := fs.FS.OpenDir(name)
	return fs.wrap(name, f, err)
}

func (f *syncHookFile) Sync() error {
	f.fs.hook(f.path, false)
	err := f.File.Sync()
	f.fs.hook(f.path, true)
	return err
}

func (f *syncHookFile) SyncData() error {
	f.fs.hook(f.path, false)
	err := f.File.SyncData()
	f.fs.hook(f.path, true)
	return err
}

func mustOpen(tb testing.TB, fs vfs.FS, opts Options) *Journal {
	tb.Helper()
	opts.FS = fs
	j, err := Open(testDir, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	return j
}

func mustAppend(tb testing.TB, j *Journal, db string, payload []byte) uint64 {
	tb.Helper()
	lsn, err := j.Append(context.Background(), TypeData, 1, db, payload)
	if err != nil {
		tb.Fatalf("Append: %v", err)
	}
	return lsn
}

// readAll reads every durable record from fromLSN.
func readAll(tb testing.TB, j *Journal, fromLSN uint64) []Record {
	tb.Helper()
	recs, err := tryReadAll(j, fromLSN)
	if err != nil {
		tb.Fatalf("read from %d: %v", fromLSN, err)
	}
	return recs
}

func tryReadAll(j *Journal, fromLSN uint64) ([]Record, error) {
	r, err := j.NewReader(fromLSN)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	var out []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}

func payloadFor(lsnHint, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(lsnHint*31 + i*7)
	}
	return b
}

func sameRecord(a, b Record) error {
	if a.Type != b.Type || a.Epoch != b.Epoch || a.LSN != b.LSN || a.Database != b.Database || !bytes.Equal(a.Payload, b.Payload) {
		return fmt.Errorf("record differs: got {%v e%d lsn%d %q %dB} want {%v e%d lsn%d %q %dB}",
			a.Type, a.Epoch, a.LSN, a.Database, len(a.Payload), b.Type, b.Epoch, b.LSN, b.Database, len(b.Payload))
	}
	return nil
}

// segmentBytes returns the frames of a segment (header included) without
// the zeros allocated after them, checking that those are all zero.
func segmentBytes(tb testing.TB, fs vfs.FS, seg SegmentInfo) []byte {
	tb.Helper()
	b := readFile(tb, fs, fs.PathJoin(testDir, seg.Name))
	if int64(len(b)) < seg.Size {
		tb.Fatalf("segment %s is %d bytes, %d durable", seg.Name, len(b), seg.Size)
	}
	if i := bytes.IndexFunc(b[seg.Size:], func(r rune) bool { return r != 0 }); i >= 0 {
		tb.Fatalf("segment %s: byte %d after the last frame is not zero", seg.Name, seg.Size+int64(i))
	}
	return b[:seg.Size]
}

// readFile and writeFile give tests raw access to segment bytes.
func readFile(tb testing.TB, fs vfs.FS, path string) []byte {
	tb.Helper()
	f, err := fs.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func writeFile(tb testing.TB, fs vfs.FS, path string, b []byte) {
	tb.Helper()
	f, err := fs.Create(path, vfs.WriteCategoryUnspecified)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		tb.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

func asCorruption(err error) (*CorruptionError, bool) {
	var ce *CorruptionError
	ok := errors.As(err, &ce)
	return ce, ok
}
