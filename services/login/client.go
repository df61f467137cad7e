package login

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// PasswordLogin asks the token endpoint at base (a gateway or a member,
// e.g. https://gateway:7481; tier, when set, selects a gateway's
// /auth/{tier}/token) for a token with a password grant. A refusal is an
// *Error with the endpoint's code and description.
func PasswordLogin(ctx context.Context, c *http.Client, base, tier, user, password string) (*Token, error) {
	path := Path
	if tier != "" {
		path = "/auth/" + url.PathEscape(tier) + "/token"
	}
	form := url.Values{"grant_type": {"password"}, "username": {user}, "password": {password}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+path, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		e := &Error{status: resp.StatusCode}
		if json.Unmarshal(b, e) != nil || e.Code == "" {
			return nil, fmt.Errorf("login: HTTP %d from %s", resp.StatusCode, base)
		}
		return nil, e
	}
	var t Token
	if err := json.Unmarshal(b, &t); err != nil || t.AccessToken == "" {
		return nil, fmt.Errorf("login: %s answered 200 without a token", base)
	}
	return &t, nil
}
