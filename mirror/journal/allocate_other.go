//go:build !linux

package journal

import "errors"

// fallocate is Linux-only; elsewhere the journal preallocates keeping the
// file's size (vfs.File.Preallocate).
func fallocate(uintptr, int64, int64) error { return errors.ErrUnsupported }
