// Package requestid names a request end to end: the gateway, the member
// that serves it and both their logs use the same id, which the client
// gets back in the X-Request-Id response header.
package requestid

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
)

// Header carries the id in requests and responses.
const Header = "X-Request-Id"

// MaxLen bounds an id taken from a request.
const MaxLen = 128

// Of returns r's X-Request-Id when it is at most MaxLen printable ASCII
// characters without spaces, else a new random id (32 hex digits).
func Of(r *http.Request) string {
	if id := r.Header.Get(Header); valid(id) {
		return id
	}
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func valid(id string) bool {
	if id == "" || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}
