package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tandemhealth/tandem/mirror/statefile"
)

// The files through which a member's agent fences it. The agent kills the
// member's process (found through its pid file) and writes the fence mark
// into the data directory; the member reads the mark at start and stays
// out of the primary role until the current primary reaches it.
const (
	pidFileName   = "node.pid"
	fenceMarkName = "FENCED"
)

// FenceMark is the content of the fence mark.
type FenceMark struct {
	At    time.Time `json:"at"`
	Epoch uint64    `json:"epoch"` // the member's epoch when fenced
	By    string    `json:"by"`
}

func readFenceMark(dataDir string) (*FenceMark, error) {
	var f FenceMark
	err := statefile.Load(filepath.Join(dataDir, fenceMarkName), &f)
	if errors.Is(err, statefile.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: fence mark: %w", err)
	}
	return &f, nil
}

func clearFenceMark(dataDir string) error {
	err := os.Remove(filepath.Join(dataDir, fenceMarkName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// WriteFenceMark marks dataDir as fenced (durably).
func WriteFenceMark(dataDir string, mark FenceMark) error {
	return statefile.Save(filepath.Join(dataDir, fenceMarkName), mark)
}

// FenceMarked reports whether dataDir carries a fence mark.
func FenceMarked(dataDir string) bool {
	_, err := os.Stat(filepath.Join(dataDir, fenceMarkName))
	return err == nil
}

func writePIDFile(dataDir string) error {
	return os.WriteFile(filepath.Join(dataDir, pidFileName), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
}

// KillMember kills the tandem node process serving dataDir, if one runs,
// and waits until it is gone. It checks that the pid is a tandem node of
// this member before killing anything.
func KillMember(dataDir, member string, wait time.Duration) (killed bool, err error) {
	pid, err := nodePID(dataDir, member)
	if err != nil || pid == 0 {
		return false, err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return false, fmt.Errorf("node: kill %d: %w", pid, err)
	}
	deadline := time.Now().Add(wait)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil || zombie(pid) {
			return true, nil // a zombie holds no files and writes nothing
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("node: pid %d still running %s after SIGKILL", pid, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// memberRunning reports whether the tandem node of member runs on
// dataDir, and its pid.
func memberRunning(dataDir, member string) (int, bool) {
	pid, err := nodePID(dataDir, member)
	return pid, err == nil && pid != 0
}

// nodePID is the pid of the live tandem node of member on dataDir, from
// its pid file, or 0: no pid file, a process that is gone or a zombie, or
// a pid reused by another program. A pid file without a pid is an error.
func nodePID(dataDir, member string) (int, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, pidFileName))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("node: bad pid file in %s", dataDir)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || zombie(pid) || !isNodeOf(strings.Split(string(cmdline), "\x00"), member) {
		return 0, nil
	}
	return pid, nil
}

func zombie(pid int) bool {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && strings.Contains(string(st), ") Z ")
}

func isNodeOf(args []string, member string) bool {
	node, mem := false, false
	for i, a := range args {
		if a == "node" {
			node = true
		}
		if (a == "--member" || a == "-member") && i+1 < len(args) && args[i+1] == member {
			mem = true
		}
		if a == "--member="+member {
			mem = true
		}
	}
	return node && mem
}
