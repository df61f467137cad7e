package login

import (
	"sync"
	"time"
)

// maxTracked bounds the names the lockout remembers; when full, names
// neither locked nor failing recently are forgotten first.
const maxTracked = 100_000

// lockout counts failed attempts per name: after max failures within
// window the name is refused until window has passed since the last one.
type lockout struct {
	max    int
	window time.Duration

	mu    sync.Mutex
	names map[string]*failures
}

type failures struct {
	first, last time.Time
	count       int
	until       time.Time // locked until
}

func newLockout(max int, window time.Duration) *lockout {
	return &lockout{max: max, window: window, names: map[string]*failures{}}
}

// allowed reports whether name may try now, and if not for how long.
func (l *lockout) allowed(name string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.names[name]
	if f == nil || !now.Before(f.until) {
		return true, 0
	}
	return false, f.until.Sub(now)
}

// failed counts a failed attempt of name at now.
func (l *lockout) failed(name string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.names[name]
	if f == nil {
		if len(l.names) >= maxTracked {
			l.prune(now)
		}
		f = &failures{}
		l.names[name] = f
	}
	if f.count == 0 || now.Sub(f.first) > l.window {
		f.first, f.count = now, 0
	}
	f.count++
	f.last = now
	if f.count >= l.max {
		f.until = now.Add(l.window)
		f.first, f.count = now, 0
	}
}

// succeeded forgets name's failures.
func (l *lockout) succeeded(name string) {
	l.mu.Lock()
	delete(l.names, name)
	l.mu.Unlock()
}

// prune forgets names whose failures and lock have expired; if that is not
// enough, every name that is not locked.
func (l *lockout) prune(now time.Time) {
	for k, f := range l.names {
		if now.Sub(f.last) > l.window && !now.Before(f.until) {
			delete(l.names, k)
		}
	}
	if len(l.names) < maxTracked {
		return
	}
	for k, f := range l.names {
		if !now.Before(f.until) {
			delete(l.names, k)
		}
	}
}
