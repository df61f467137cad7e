package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
)

// pprofEnv names a directory: when set, every tandem process serves
// net/http/pprof on a loopback port of its own and writes that address to
// DIR/<command>-<pid>.addr (benchmarks find a process's profiles by its
// pid). Off unless set; never on a non-loopback address. The profiles name
// functions and counts only, no request content.
const pprofEnv = "TANDEM_PPROF_DIR"

func startPprof(command string) {
	dir := os.Getenv(pprofEnv)
	if dir == "" {
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "tandem: %s: %v\n", pprofEnv, err)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go http.Serve(ln, mux)
	path := filepath.Join(dir, fmt.Sprintf("%s-%d.addr", command, os.Getpid()))
	if err := os.WriteFile(path, []byte(ln.Addr().String()), 0o600); err != nil {
		fmt.Fprintf(os.Stderr, "tandem: %s: %v\n", pprofEnv, err)
	}
}
