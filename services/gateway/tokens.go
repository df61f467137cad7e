package gateway

import (
	"errors"
	"net/http"

	"github.com/tandemhealth/tandem/fhir/access"
)

// Tokens is the gateway's bearer-token check with the same verifier the
// members use (keys from the cluster file's access section); the verifier
// remembers the tokens it accepted until their exp. It names the client
// for rate limits by its client id, else its subject. The member checks
// every token again.
type Tokens struct {
	Verifier *access.Verifier
}

// Authenticate implements Authenticator.
func (t Tokens) Authenticate(r *http.Request) (string, error) {
	p, err := t.Verifier.Authenticate(r)
	if err != nil {
		return "", err
	}
	if p.ClientID != "" {
		return p.ClientID, nil
	}
	return p.Subject, nil
}

// ErrNotAdmin: a valid token without the admin scope.
var ErrNotAdmin = errors.New("gateway: the token does not grant " + access.AdminScope)

// Admin is the Mirror Monitor's access check: a valid bearer token that
// grants access.AdminScope.
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
