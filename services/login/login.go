package login

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	configsync "github.com/tandemhealth/tandem/config-sync"
	"github.com/tandemhealth/tandem/fhir/access"
)

// Path is where members (and the gateway) serve the token endpoint.
const Path = "/auth/token"

// Defaults for Config fields left zero.
const (
	DefaultTTL          = 15 * time.Minute
	DefaultLockoutAfter = 5
	DefaultLockoutFor   = 15 * time.Minute
)

// maxBody bounds a token request's body.
const maxBody = 64 << 10

// Attempt is one login attempt as the audit sees it: never a password, a
// secret or a hash.
type Attempt struct {
	Grant    string // password, client_credentials, or what was sent
	User     string // the user name tried, or the user owning the client
	ClientID string
	Address  string // the client's network address
	Status   int
	// Detail is "" on success, else the OAuth error code and the reason
	// ("invalid_grant: wrong password"): for the audit only, never sent.
	Detail string
	At     time.Time
}

// Config configures a Handler.
type Config struct {
	// Key signs tokens (an HS256 secret or a private key). A zero Key
	// (no ID) leaves the endpoint unconfigured: it answers 501 with
	// NotConfigured.
	Key access.Key
	// NotConfigured says what to configure when Key is zero.
	NotConfigured string
	// Issuer and Audience go into every token (the verifiers check them).
	Issuer, Audience string
	// TTL is a token's lifetime; DefaultTTL when zero. A shorter effective
	// security session lifetime wins.
	TTL time.Duration
	// LockoutAfter failures within LockoutFor lock a name for LockoutFor.
	LockoutAfter int
	LockoutFor   time.Duration
	// State returns the member's effective config-sync state (users,
	// roles, security). Required.
	State func() configsync.State
	// Audit receives every attempt; nil: none.
	Audit func(Attempt)
	// ClientAddress names the client of r for logs and audit; default the
	// host of r.RemoteAddr.
	ClientAddress func(r *http.Request) string
	// Log receives one line per attempt; slog.Default() when nil.
	Log *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Handler serves POST /auth/token.
type Handler struct {
	cfg   Config
	dummy []byte // bcrypt hash compared against for unknown names
	lock  *lockout
}

var _ http.Handler = (*Handler)(nil)

// New checks c and returns a Handler. It computes a dummy bcrypt hash
// (tens of milliseconds).
func New(c Config) (*Handler, error) {
	if c.State == nil {
		return nil, errors.New("login: Config.State is required")
	}
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.TTL < 0 {
		return nil, errors.New("login: a negative TTL")
	}
	if c.LockoutAfter <= 0 {
		c.LockoutAfter = DefaultLockoutAfter
	}
	if c.LockoutFor <= 0 {
		c.LockoutFor = DefaultLockoutFor
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ClientAddress == nil {
		c.ClientAddress = remoteHost
	}
	if c.NotConfigured == "" {
		c.NotConfigured = "no signing key is configured for logins"
	}
	if c.Key.ID != "" {
		// Fail at start, not at the first login: the key must sign.
		if _, err := access.Mint(c.Key, access.Grant{Subject: "probe", TTL: time.Minute}); err != nil {
			return nil, err
		}
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("tandem: no such user"), bcrypt.DefaultCost)
	if err != nil {
		return nil, err
	}
	return &Handler{cfg: c, dummy: dummy, lock: newLockout(c.LockoutAfter, c.LockoutFor)}, nil
}

func remoteHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Token is the success answer (RFC 6749 §5.1).
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`
}

// Error is an error answer (RFC 6749 §5.2).
type Error struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	status      int
	reason      string // for the log and audit only
	retryAfter  time.Duration
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

// OAuth error codes.
const (
	ErrInvalidRequest       = "invalid_request"
	ErrInvalidClient        = "invalid_client"
	ErrInvalidGrant         = "invalid_grant"
	ErrUnsupportedGrantType = "unsupported_grant_type"
	ErrInvalidScope         = "invalid_scope"
	// ErrNotConfigured is not an RFC 6749 code: the member cannot sign.
	ErrNotConfigured = "login_not_configured"
)

func oauthErr(status int, code, desc, reason string) *Error {
	return &Error{Code: code, Description: desc, status: status, reason: reason}
}

// The descriptions of refused credentials are the same whatever the
// reason: they never say whether the name exists.
const (
	badPassword = "the user name or password is not accepted"
	badClient   = "the client id or secret is not accepted"
	lockedOut   = "too many failed attempts for this name; try again later"
)

// ServeHTTP implements the token endpoint.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := h.cfg.Now()
	att := Attempt{Address: h.cfg.ClientAddress(r), At: now}
	tok, err := h.serve(r, now, &att)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = oauthErr(http.StatusInternalServerError, "server_error", "the token could not be issued", err.Error())
		}
		att.Status, att.Detail = e.status, e.Code
		if e.reason != "" {
			att.Detail += ": " + e.reason
		}
		h.finish(att)
		h.writeError(w, e)
		return
	}
	att.Status = http.StatusOK
	h.finish(att)
	writeJSON(w, http.StatusOK, tok)
}

func (h *Handler) finish(a Attempt) {
	lvl := slog.LevelInfo
	if a.Status >= 400 {
		lvl = slog.LevelWarn
	}
	h.cfg.Log.Log(context.Background(), lvl, "login", "grant", a.Grant, "user", a.User, "client_id", a.ClientID,
		"address", a.Address, "status", a.Status, "outcome", a.Detail)
	if h.cfg.Audit != nil {
		h.cfg.Audit(a)
	}
}

func (h *Handler) writeError(w http.ResponseWriter, e *Error) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="tandem"`)
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(e.retryAfter.Seconds()+0.999)))
	}
	writeJSON(w, e.status, e)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (h *Handler) serve(r *http.Request, now time.Time, att *Attempt) (*Token, error) {
	if r.Method != http.MethodPost {
		return nil, oauthErr(http.StatusMethodNotAllowed, ErrInvalidRequest, "the token endpoint takes POST", "method "+r.Method)
	}
	if h.cfg.Key.ID == "" {
		return nil, oauthErr(http.StatusNotImplemented, ErrNotConfigured, h.cfg.NotConfigured, "not configured")
	}
	if r.URL.RawQuery != "" {
		return nil, oauthErr(http.StatusBadRequest, ErrInvalidRequest, "parameters belong in the form body, never in the URL", "query string")
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, oauthErr(http.StatusBadRequest, ErrInvalidRequest, "the body must be application/x-www-form-urlencoded", "content type")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		return nil, oauthErr(http.StatusBadRequest, ErrInvalidRequest, "the body is unreadable or larger than 64 KiB", "body")
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, oauthErr(http.StatusBadRequest, ErrInvalidRequest, "the body is not a valid form", "form")
	}
	for k, vs := range form {
		if len(vs) > 1 {
			return nil, oauthErr(http.StatusBadRequest, ErrInvalidRequest, fmt.Sprintf("parameter %s is given more than once", k), "repeated "+k)
		}
	}
	att.Grant = form.Get("grant_type")
	switch att.Grant {
	case "password":
		return h.password(r, form, now, att)
	case "client_credentials":
		return h.clientCredentials(r, form, now, att)
	case "":
		return nil, oauthErr(http.StatusBadRequest, ErrInvalidRequest, "grant_type is required (password or client_credentials)", "no grant_type")
	}
	return nil, oauthErr(http.StatusBadRequest, ErrUnsupportedGrantType, "grant_type must be password or client_credentials", "grant_type")
}

func (h *Handler) password(r *http.Request, form url.Values, now time.Time, att *Attempt) (*Token, error) {
	name, pw := form.Get("username"), form.Get("password")
	if name == "" || pw == "" {
		return nil, oauthErr(http.StatusBadRequest, ErrInvalidRequest, "username and password are required", "missing username or password")
	}
	if _, _, basic := r.BasicAuth(); basic || form.Has("client_secret") {
		return nil, oauthErr(http.StatusBadRequest, ErrInvalidRequest, "the password grant takes no client secret here", "client credentials with the password grant")
	}
	att.User = name
	key := "user:" + name
	if ok, wait := h.lock.allowed(key, now); !ok {
		e := oauthErr(http.StatusBadRequest, ErrInvalidGrant, lockedOut, "locked out")
		e.retryAfter = wait
		return nil, e
	}
	st := h.cfg.State()
	users, err := decodeUsers(st)
	if err != nil {
		return nil, err
	}
	u, found := findUser(users, name)
	hash := h.dummy
	if found && u.PasswordHash != "" {
		hash = []byte(u.PasswordHash)
	}
	match := bcrypt.CompareHashAndPassword(hash, []byte(pw)) == nil
	reason := ""
	switch {
	case !found:
		reason = "unknown user"
	case u.PasswordHash == "":
		reason = "user has no password"
	case !match:
		reason = "wrong password"
	case !u.Enabled:
		reason = "user disabled"
	}
	if reason != "" {
		h.lock.failed(key, now)
		return nil, oauthErr(http.StatusBadRequest, ErrInvalidGrant, badPassword, reason)
	}
	h.lock.succeeded(key)
	return h.issue(st, u, "", form.Get("scope"), now)
}

func (h *Handler) clientCredentials(r *http.Request, form url.Values, now time.Time, att *Attempt) (*Token, error) {
	id, secret, basic := r.BasicAuth()
	if basic {
		if form.Has("client_id") || form.Has("client_secret") {
			return nil, oauthErr(http.StatusBadRequest, ErrInvalidRequest, "send the client credentials either in HTTP Basic or in the form, not both", "credentials twice")
		}
		// RFC 6749 §2.3.1: form-urlencoded before Basic encoding.
		var err1, err2 error
		id, err1 = url.QueryUnescape(id)
		secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return nil, oauthErr(http.StatusBadRequest, ErrInvalidRequest, "the Basic credentials are not form-urlencoded", "basic encoding")
		}
	} else {
		id, secret = form.Get("client_id"), form.Get("client_secret")
	}
	if id == "" || secret == "" {
		return nil, oauthErr(http.StatusUnauthorized, ErrInvalidClient, "client_id and client_secret are required (HTTP Basic or form)", "no client credentials")
	}
	att.ClientID = id
	key := "client:" + id
	if ok, wait := h.lock.allowed(key, now); !ok {
		e := oauthErr(http.StatusUnauthorized, ErrInvalidClient, lockedOut, "locked out")
		e.retryAfter = wait
		return nil, e
	}
	st := h.cfg.State()
	users, err := decodeUsers(st)
	if err != nil {
		return nil, err
	}
	var owner configsync.User
	var client configsync.APIClient
	n := 0
	for _, u := range users {
		for _, c := range u.Clients {
			if subtle.ConstantTimeCompare([]byte(c.ID), []byte(id)) == 1 {
				owner, client = u, c
				n++
			}
		}
	}
	hash := h.dummy
	if n == 1 && client.SecretHash != "" {
		hash = []byte(client.SecretHash)
	}
	match := bcrypt.CompareHashAndPassword(hash, []byte(secret)) == nil
	reason := ""
	switch {
	case n == 0:
		reason = "unknown client"
	case n > 1:
		reason = "client id used by several users"
	case client.SecretHash == "":
		reason = "client has no secret"
	case !match:
		reason = "wrong secret"
	case !client.Enabled:
		reason = "client disabled"
	case !owner.Enabled:
		reason = "user disabled"
	}
	if n == 1 {
		att.User = owner.Name
	}
	if reason != "" {
		h.lock.failed(key, now)
		return nil, oauthErr(http.StatusUnauthorized, ErrInvalidClient, badClient, reason)
	}
	h.lock.succeeded(key)
	return h.issue(st, owner, client.ID, form.Get("scope"), now, strings.Fields(client.AllowedScope)...)
}

// issue mints the token of an authenticated user (and client).
func (h *Handler) issue(st configsync.State, u configsync.User, clientID, requested string, now time.Time, allowed ...string) (*Token, error) {
	var roles []configsync.Role
	if d := st[configsync.Roles].Doc; len(d) > 0 {
		if err := json.Unmarshal(d, &roles); err != nil {
			return nil, fmt.Errorf("effective roles: %w", err)
		}
	}
	scopes, err := Scopes(u, roles)
	if err != nil {
		return nil, oauthErr(http.StatusBadRequest, ErrInvalidScope, err.Error(), "roles")
	}
	if len(allowed) > 0 {
		scopes = slices.DeleteFunc(scopes, func(s string) bool { return !slices.Contains(allowed, s) })
		if len(scopes) == 0 {
			return nil, oauthErr(http.StatusBadRequest, ErrInvalidScope, "the client's allowed_scope leaves none of its user's scopes", "allowed_scope")
		}
	}
	if requested != "" {
		want := strings.Fields(requested)
		for _, s := range want {
			if !slices.Contains(scopes, s) {
				return nil, oauthErr(http.StatusBadRequest, ErrInvalidScope, fmt.Sprintf("scope %q is not granted to this user", s), "scope not granted")
			}
		}
		slices.Sort(want)
		scopes = slices.Compact(want)
	}
	ttl := h.cfg.TTL
	if d := sessionLifetime(st); d > 0 && d < ttl {
		ttl = d
	}
	scope := strings.Join(scopes, " ")
	tok, err := access.Mint(h.cfg.Key, access.Grant{Subject: u.Name, ClientID: clientID, Scope: scope,
		Issuer: h.cfg.Issuer, Audience: h.cfg.Audience, TTL: ttl, Now: now})
	if err != nil {
		return nil, err
	}
	return &Token{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(ttl / time.Second), Scope: scope}, nil
}

// Scopes is the union of the scopes of u's roles (see the package doc),
// sorted. An error names the role that grants nothing here.
func Scopes(u configsync.User, roles []configsync.Role) ([]string, error) {
	if len(u.Roles) == 0 {
		return nil, fmt.Errorf("user %s has no roles on this member: ask an administrator to give it one", u.Name)
	}
	var out []string
	for _, name := range u.Roles {
		if i := slices.IndexFunc(roles, func(r configsync.Role) bool { return r.Name == name }); i >= 0 {
			if len(roles[i].Scopes) == 0 {
				return nil, fmt.Errorf("role %q grants no scopes on this member", name)
			}
			out = append(out, roles[i].Scopes...)
			continue
		}
		if _, builtin := access.Roles[name]; !builtin {
			return nil, fmt.Errorf("role %q is neither defined on this member (effective roles) nor built in (clinician, admin)", name)
		}
		g, err := access.RoleGrant(name, u.Name, "", time.Minute)
		if err != nil {
			return nil, fmt.Errorf("role %q cannot be given by a login: %v", name, err)
		}
		out = append(out, strings.Fields(g.Scope)...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func decodeUsers(st configsync.State) ([]configsync.User, error) {
	var users []configsync.User
	if d := st[configsync.Users].Doc; len(d) > 0 {
		if err := json.Unmarshal(d, &users); err != nil {
			return nil, fmt.Errorf("effective users: %w", err)
		}
	}
	return users, nil
}

func findUser(users []configsync.User, name string) (configsync.User, bool) {
	for _, u := range users {
		if u.Name == name {
			return u, true
		}
	}
	return configsync.User{}, false
}

func sessionLifetime(st configsync.State) time.Duration {
	var s configsync.SecuritySettings
	if d := st[configsync.Security].Doc; len(d) > 0 && json.Unmarshal(d, &s) == nil {
		return time.Duration(s.SessionLifetimeSeconds) * time.Second
	}
	return 0
}
