package node

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestKillMemberKillsOnlyThatMembersNode: the pid file must name a live
// process started as this member's node; anything else is left alone.
func TestKillMemberKillsOnlyThatMembersNode(t *testing.T) {
	dir := t.TempDir()
	writePID := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, pidFileName), []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if killed, err := KillMember(dir, "a", time.Second); killed || err != nil {
		t.Fatalf("no pid file: killed %v, err %v", killed, err)
	}
	writePID("not a pid\n")
	if _, err := KillMember(dir, "a", time.Second); err == nil {
		t.Fatal("a pid file without a pid was not reported")
	}
	// A process whose command line reads like member a's node.
	c := exec.Command("bash", "-c", "sleep 60; true", "tandem", "node", "--member", "a") // "; true": bash must not exec sleep in its place
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Process.Kill()
	exited := make(chan struct{})
	go func() { c.Wait(); close(exited) }()
	// Start returns before the child has exec'd bash: until then its
	// command line is this test binary's (a flake in CI).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(c.Process.Pid), "cmdline"))
		if strings.Contains(string(b), "--member") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stand-in node never showed its command line: %q", b)
		}
	}
	writePID(strconv.Itoa(c.Process.Pid) + "\n")
	if pid, running := memberRunning(dir, "b"); running {
		t.Fatalf("member b's node reported running as pid %d", pid)
	}
	if killed, err := KillMember(dir, "b", time.Second); killed || err != nil {
		t.Fatalf("another member's node: killed %v, err %v", killed, err)
	}
	if pid, running := memberRunning(dir, "a"); !running || pid != c.Process.Pid {
		t.Fatalf("member a's node not found: %d %v", pid, running)
	}
	if killed, err := KillMember(dir, "a", 5*time.Second); !killed || err != nil {
		t.Fatalf("member a's node: killed %v, err %v", killed, err)
	}
	<-exited
	if _, running := memberRunning(dir, "a"); running {
		t.Fatal("a killed node still reported running")
	}
}
