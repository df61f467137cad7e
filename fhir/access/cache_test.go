package access

import (
	"testing"
	"time"
)

func TestVerifierRemembersAcceptedTokensUntilExp(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	k := Key{ID: "k", Alg: HS256, Secret: []byte("0123456789abcdef0123456789abcdef")}
	v, err := NewVerifier(Config{Keys: []Key{k}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	mint := func(k Key, client string) string {
		tok, err := Mint(k, Grant{Subject: "alice", ClientID: client, Scope: "user/*.rs", TTL: time.Minute, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tok := mint(k, "app-1")
	first, err := v.Verify(tok)
	if err != nil || first.ClientID != "app-1" {
		t.Fatalf("first check: %+v %v", first, err)
	}
	// Answered from the cache: with its key gone the token could not be
	// verified again.
	delete(v.keys, "k")
	again, err := v.Verify(tok)
	if err != nil || again != first {
		t.Fatalf("second check was not answered from the cache: %+v %v", again, err)
	}
	v.keys["k"] = k
	// A token signed with another key is refused, and not remembered.
	forged := mint(Key{ID: "k", Alg: HS256, Secret: []byte("another secret of thirty-two bytes!!")}, "app-1")
	for range 2 {
		if _, err := v.Verify(forged); err == nil {
			t.Fatal("a token with a wrong signature was accepted")
		}
	}
	if n := len(v.verified.m); n != 1 {
		t.Fatalf("%d remembered tokens, want 1 (refused tokens are not remembered)", n)
	}
	// At exp the entry is no longer used: past the leeway the token is refused.
	now = now.Add(time.Minute)
	if _, ok := v.verified.get(tokenKey(tok), now); ok {
		t.Fatal("a token was answered from the cache at its exp")
	}
	now = now.Add(DefaultLeeway + time.Second)
	if _, err := v.Verify(tok); err == nil {
		t.Fatal("an expired token was accepted")
	}
	// Bounded: a full cache drops what expired, else everything.
	for i := range verifiedMax + 10 {
		var key [32]byte
		key[0], key[1], key[2] = byte(i), byte(i>>8), byte(i>>16)
		v.verified.put(key, &Principal{Subject: "x", Expires: now.Add(time.Hour)}, now)
	}
	if n := len(v.verified.m); n > verifiedMax {
		t.Fatalf("%d remembered tokens, bound %d", n, verifiedMax)
	}
}
