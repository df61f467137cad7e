package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"

	"github.com/tandemhealth/tandem/services/requestid"
)

// loginPath is the members' token endpoint (services/login.Path).
const loginPath = "/auth/token"

// maxLoginBody bounds a token request (the member reads at most 64 KiB).
const maxLoginBody = 64 << 10

// serveLogin forwards POST /auth/token (default tier) and
// /auth/{tier}/token to the tier's primary, so an app logs in where it
// reads FHIR. A login is safe to retry (a second token for the same
// credentials changes nothing), so it is held and retried across a
// failover like a read. No bearer token is asked for; with --rate-limit
// it counts against the client address's budget.
func (g *Gateway) serveLogin(w http.ResponseWriter, r *http.Request) {
	id := requestid.Of(r)
	w.Header().Set("X-Request-Id", id)
	tier := g.cfg.DefaultTier
	if t := r.PathValue("tier"); t != "" {
		tier = ""
		for _, c := range g.tiers {
			if c.Name == t {
				tier = t
			}
		}
		if tier == "" {
			oauthFail(w, http.StatusNotFound, "invalid_request", fmt.Sprintf("no tier %q in this cluster", t))
			return
		}
	}
	if tier == "" {
		oauthFail(w, http.StatusNotFound, "invalid_request", "no default tier: log in at /auth/{tier}/token")
		return
	}
	if g.limiter != nil {
		ok, wait, err := g.limiter.allow(r.Context(), "login:"+clientID(r, ""), g.cfg.Now())
		if err != nil {
			g.cfg.Log.Debug("rate limit not checked: Redis", "err", err)
		}
		if !ok {
			w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
			oauthFail(w, http.StatusTooManyRequests, "slow_down", fmt.Sprintf("more than %d requests per second from this address", g.cfg.RateLimit))
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLoginBody))
	if err != nil {
		oauthFail(w, http.StatusRequestEntityTooLarge, "invalid_request", "request body larger than 64 KiB")
		return
	}
	g.forward(w, r, forwarding{tier: tier, nodePath: loginPath, body: body, id: id, class: retrySafe,
		fail: func(w http.ResponseWriter, code int, _, msg string) {
			oauthFail(w, code, "temporarily_unavailable", msg)
		}})
}

// oauthFail answers an error of the gateway's own in the token endpoint's
// shape (RFC 6749 §5.2).
func oauthFail(w http.ResponseWriter, code int, oauthCode, msg string) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": oauthCode, "error_description": msg})
}
