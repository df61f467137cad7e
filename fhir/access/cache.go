package access

import (
	"crypto/sha256"
	"sync"
	"time"
)

// verifiedMax bounds the verified-token cache; when full, expired entries
// go, and if none had expired, all of them.
const verifiedMax = 1 << 14

// verifiedTokens remembers the Principals of tokens a Verifier accepted,
// keyed by the token's SHA-256 (never the token itself), until the
// token's exp. Refused tokens are never remembered: each is checked again.
// A Verifier's keys, issuer and audience never change, so no entry
// outlives what verified it (a key rotation is a new cluster file and a
// new Verifier).
type verifiedTokens struct {
	mu sync.RWMutex
	m  map[[32]byte]*Principal
}

func tokenKey(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// get returns the Principal verified for key while now is before its exp.
func (c *verifiedTokens) get(key [32]byte, now time.Time) (*Principal, bool) {
	c.mu.RLock()
	p, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || !now.Before(p.Expires) {
		return nil, false
	}
	return p, true
}

func (c *verifiedTokens) put(key [32]byte, p *Principal, now time.Time) {
	if !now.Before(p.Expires) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= verifiedMax {
		for k, e := range c.m {
			if !now.Before(e.Expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= verifiedMax {
			clear(c.m)
		}
	}
	c.m[key] = p
}
