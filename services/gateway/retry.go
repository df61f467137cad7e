package gateway

import (
	"net/http"
	"strings"
)

// retryClass says when a failed forwarding attempt may be sent again.
type retryClass int

const (
	// retryIfUnsent: only when no connection was established, so not one
	// byte of the request reached a member.
	retryIfUnsent retryClass = iota
	// retrySafe: repeating the request cannot apply it twice.
	retrySafe
)

func (c retryClass) String() string {
	if c == retrySafe {
		return "safe"
	}
	return "if-unsent"
}

// classify is the retry rule of the package doc: reads, PUT (update and
// create-on-update), DELETE, conditional create and anything with an
// Idempotency-Key are safe; other requests only if never sent.
func classify(method, path string, h http.Header) retryClass {
	if h.Get("Idempotency-Key") != "" {
		return retrySafe
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return retrySafe
	case http.MethodPost:
		if h.Get("If-None-Exist") != "" || strings.HasSuffix(strings.TrimRight(path, "/"), "/_search") {
			return retrySafe
		}
	}
	return retryIfUnsent
}

// isRead reports whether a request only reads (it may go to an async when
// the client allows staleness).
func isRead(method string) bool {
	return method == http.MethodGet || method == http.MethodHead
}
