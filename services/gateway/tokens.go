package gateway

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tandemhealth/tandem/fhir/access"
)

// Tokens is the gateway's bearer-token check with the same verifier the
// members use (keys from the cluster file's access section). It names the
// client for rate limits by its client id, else its subject.
//
// Built with NewTokens it remembers the tokens it verified (by their
// SHA-256, never the token itself) until their exp, so a client's every
// request does not pay the signature check and the claims' decoding again.
// The cache belongs to this Verifier: its keys never change (a key
// rotation is a new cluster file, a new gateway process, a new cache), so
// no entry outlives the key that verified it. Invalid tokens are not
// remembered: each is verified again. The member checks every token again
// either way.
type Tokens struct {
	Verifier *access.Verifier
	cache    *tokenCache // nil: verify every time
}

// NewTokens returns Tokens with a cache of verified tokens.
func NewTokens(v *access.Verifier) Tokens {
	return Tokens{Verifier: v, cache: &tokenCache{m: map[[32]byte]verified{}, now: time.Now}}
}

// Authenticate implements Authenticator.
func (t Tokens) Authenticate(r *http.Request) (string, error) {
	tok, cacheable := bearerToken(r)
	var key [32]byte
	if t.cache != nil && cacheable {
		key = tokenKey(tok)
		if id, ok := t.cache.get(key); ok {
			return id, nil
		}
	}
	p, err := t.Verifier.Authenticate(r)
	if err != nil {
		return "", err
	}
	id := p.Subject
	if p.ClientID != "" {
		id = p.ClientID
	}
	if t.cache != nil && cacheable {
		t.cache.put(key, verified{id: id, exp: p.Expires})
	}
	return id, nil
}

func tokenKey(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// bearerToken is the token of an Authorization: Bearer header in the form
// access.Verifier.Authenticate reads it; ok is false when there is none.
func bearerToken(r *http.Request) (string, bool) {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	return tok, ok && strings.EqualFold(scheme, "Bearer") && tok != ""
}

// tokenCacheMax bounds the cache; when full, expired entries go, and if
// none had expired, all of them.
const tokenCacheMax = 1 << 14

type verified struct {
	id  string // the client's name for rate limits
	exp time.Time
}

type tokenCache struct {
	now func() time.Time
	mu  sync.RWMutex
	m   map[[32]byte]verified
}

func (c *tokenCache) get(key [32]byte) (string, bool) {
	c.mu.RLock()
	v, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || !c.now().Before(v.exp) {
		return "", false
	}
	return v.id, true
}

func (c *tokenCache) put(key [32]byte, v verified) {
	now := c.now()
	if !now.Before(v.exp) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= tokenCacheMax {
		for k, e := range c.m {
			if !now.Before(e.exp) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= tokenCacheMax {
			clear(c.m)
		}
	}
	c.m[key] = v
}

// ErrNotAdmin: a valid token without the admin scope.
var ErrNotAdmin = errors.New("gateway: the token does not grant " + access.AdminScope)

// Admin is the Mirror Monitor's access check: a valid bearer token that
// grants access.AdminScope. It always verifies the token.
func (t Tokens) Admin(r *http.Request) error {
	p, err := t.Verifier.Authenticate(r)
	if err != nil {
		return err
	}
	if !p.Admin {
		return ErrNotAdmin
	}
	return nil
}
