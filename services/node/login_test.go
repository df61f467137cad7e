package node

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemhealth/tandem/mirror/cluster"
)

// TestLoginSigner: access.signing_key must name a key that can sign; a
// public key stops the member at start with the field named.
func TestLoginSigner(t *testing.T) {
	dir := t.TempDir()
	hs := filepath.Join(dir, "hs.key")
	os.WriteFile(hs, []byte("0123456789abcdef0123456789abcdef0123\n"), 0o600)
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	pub := filepath.Join(dir, "es.pub.pem")
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	pder, _ := x509.MarshalPKCS8PrivateKey(priv)
	prv := filepath.Join(dir, "es.pem")
	os.WriteFile(prv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pder}), 0o600)
	a := cluster.Access{Keys: []cluster.AccessKey{{KID: "hs", Alg: "HS256", Path: hs}, {KID: "es-pub", Alg: "ES256", Path: pub}, {KID: "es", Alg: "ES256", Path: prv}}}
	_, keys, err := LoadAccess(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ kid, err string }{{"", ""}, {"hs", ""}, {"es", ""}, {"es-pub", "field access.signing_key"}} {
		a.SigningKey = c.kid
		k, err := LoginSigner(a, keys)
		switch {
		case c.err == "" && err != nil:
			t.Errorf("%q: %v", c.kid, err)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one naming %s", c.kid, err, c.err)
		case c.err == "" && k.ID != c.kid:
			t.Errorf("%q: signer %q", c.kid, k.ID)
		}
	}
}
