//go:build linux

package journal

import "golang.org/x/sys/unix"

// fallocate allocates [off, off+n) of the file and extends its size to
// cover it (mode 0): the new space reads as zeros.
func fallocate(fd uintptr, off, n int64) error {
	return unix.Fallocate(int(fd), 0, off, n)
}
