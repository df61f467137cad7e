package gateway

import (
	"net/http"
	"testing"
	"time"

	"github.com/tandemhealth/tandem/fhir/access"
)

func TestTokensRemembersVerifiedTokensUntilExp(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	k := access.Key{ID: "k", Alg: access.HS256, Secret: []byte("0123456789abcdef0123456789abcdef")}
	v, err := access.NewVerifier(access.Config{Keys: []access.Key{k}, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	tokens := NewTokens(v)
	tokens.cache.now = clock
	mint := func(k access.Key, client string) string {
		tok, err := access.Mint(k, access.Grant{Subject: "alice", ClientID: client, Scope: "user/*.rs", TTL: time.Minute, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	req := func(tok string) *http.Request {
		r, _ := http.NewRequest("GET", "/fhir/Patient/1", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		return r
	}
	tok := mint(k, "app-1")
	if id, err := tokens.Authenticate(req(tok)); err != nil || id != "app-1" {
		t.Fatalf("first check: %q %v", id, err)
	}
	// Answered from the cache: a copy without a verifier must not need one.
	cached := Tokens{cache: tokens.cache}
	if id, err := cached.Authenticate(req(tok)); err != nil || id != "app-1" {
		t.Fatalf("cached check: %q %v", id, err)
	}
	// A token signed with another key is refused, and not remembered.
	other := access.Key{ID: "k", Alg: access.HS256, Secret: []byte("another secret of thirty-two bytes!!")}
	forged := mint(other, "app-1")
	for range 2 {
		if _, err := tokens.Authenticate(req(forged)); err == nil {
			t.Fatal("a token with a wrong signature was accepted")
		}
	}
	if n := len(tokens.cache.m); n != 1 {
		t.Fatalf("%d cached tokens, want 1 (refused tokens are not remembered)", n)
	}
	// At exp the entry is no longer used: past the leeway the verifier refuses.
	now = now.Add(time.Minute)
	if _, ok := tokens.cache.get(tokenKey(tok)); ok {
		t.Fatal("a token was answered from the cache at its exp")
	}
	now = now.Add(access.DefaultLeeway + time.Second)
	if _, err := tokens.Authenticate(req(tok)); err == nil {
		t.Fatal("an expired token was accepted")
	}
	// Bounded: a full cache drops what expired, else everything.
	for i := range tokenCacheMax + 10 {
		var key [32]byte
		key[0], key[1], key[2] = byte(i), byte(i>>8), byte(i>>16)
		tokens.cache.put(key, verified{id: "x", exp: now.Add(time.Hour)})
	}
	if n := len(tokens.cache.m); n > tokenCacheMax {
		t.Fatalf("%d cached tokens, bound %d", n, tokenCacheMax)
	}
}
