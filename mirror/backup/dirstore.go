package backup

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Store is where backups live: a directory by default, behind this small
// interface so object storage can follow. Names use "/" separators.
type Store interface {
	// Put writes name atomically: a reader sees all of it or none.
	Put(name string, r io.Reader) error
	// Open reads name; a missing object is an error wrapping fs.ErrNotExist.
	Open(name string) (io.ReadCloser, error)
	// List returns the names under prefix, sorted.
	List(prefix string) ([]string, error)
	// Delete removes name; a missing object is not an error.
	Delete(name string) error
}

// Dir is a Store in a local directory.
type Dir struct{ Root string }

var _ Store = Dir{}

func (d Dir) path(name string) (string, error) {
	clean := filepath.Clean(filepath.FromSlash(name))
	if name == "" || filepath.IsAbs(clean) || clean == "." || strings.HasPrefix(clean, "..") {
		return "", fmt.Errorf("backup: bad object name %q", name)
	}
	return filepath.Join(d.Root, clean), nil
}

// Put implements Store: temporary file, fsync, rename, directory fsync.
func (d Dir) Put(name string, r io.Reader) (err error) {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = io.Copy(f, r); err != nil {
		return fmt.Errorf("backup: write %s: %w", name, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("backup: sync %s: %w", name, err)
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), p); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// Open implements Store.
func (d Dir) Open(name string) (io.ReadCloser, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}

// List implements Store.
func (d Dir) List(prefix string) ([]string, error) {
	root := filepath.Join(d.Root, filepath.FromSlash(prefix))
	var names []string
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() || strings.HasPrefix(e.Name(), ".tmp-") {
			return nil
		}
		rel, err := filepath.Rel(d.Root, p)
		if err != nil {
			return err
		}
		names = append(names, filepath.ToSlash(rel))
		return nil
	})
	sort.Strings(names)
	return names, err
}

// Delete implements Store.
func (d Dir) Delete(name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
