package access

import (
	"fmt"
	"time"
)

// Roles are the token shapes `tandem token` and `tandem dev` mint:
//
//	clinician     user/*.cruds                         sub "clinician"
//	patient-app   patient/*.rs launch/patient          sub "patient-app", patient claim required
//	admin         system/*.cruds system/tandem.admin   sub "admin"
var Roles = map[string]string{
	"clinician":   "openid fhirUser user/*.cruds",
	"patient-app": "openid launch/patient patient/*.rs",
	"admin":       "system/*.cruds " + AdminScope,
}

// RoleGrant returns the Grant of a role, for subject (the role's name when
// empty) and patient (required for patient-app).
func RoleGrant(role, subject, patient string, ttl time.Duration) (Grant, error) {
	scope, ok := Roles[role]
	if !ok {
		return Grant{}, fmt.Errorf("access: role %q must be clinician, patient-app or admin", role)
	}
	if role == "patient-app" && patient == "" {
		return Grant{}, fmt.Errorf("access: a patient-app token needs a patient id")
	}
	if role != "patient-app" && patient != "" {
		return Grant{}, fmt.Errorf("access: only a patient-app token carries a patient")
	}
	if subject == "" {
		subject = role
	}
	return Grant{Subject: subject, ClientID: "tandem-" + role, Scope: scope, Patient: patient, TTL: ttl}, nil
}

// Signer returns the first key of keys that can sign (an HS256 secret or a
// private key), or the one named kid.
func Signer(keys []Key, kid string) (Key, error) {
	for _, k := range keys {
		if (kid == "" || k.ID == kid) && (k.Alg == HS256 || k.Private != nil) {
			return k, nil
		}
	}
	if kid != "" {
		return Key{}, fmt.Errorf("access: no signing key with kid %q (a public key cannot sign)", kid)
	}
	return Key{}, fmt.Errorf("access: no key can sign (only public keys are configured)")
}
