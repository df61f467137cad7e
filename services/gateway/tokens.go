package gateway

import (
	"net/http"

	"github.com/tandemhealth/tandem/fhir/access"
)

// Tokens is the gateway's bearer-token check with the same verifier the
// members use (keys from the cluster file's access section). It names the
// client for rate limits by its client id, else its subject.
type Tokens struct{ Verifier *access.Verifier }

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
