package sandbox

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"

	"github.com/youmark/pkcs8"
	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := NewCA("sandbox test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestNewCA(t *testing.T) {
	ca := newTestCA(t)
	if !ca.Cert.IsCA {
		t.Error("CA certificate is not a CA")
	}
	if _, ok := ca.Key.(*ecdsa.PrivateKey); !ok {
		t.Errorf("CA key is %T, want ECDSA", ca.Key)
	}
	if got := time.Until(ca.Cert.NotAfter); got < 9*365*24*time.Hour {
		t.Errorf("CA valid for %v, want about 10 years", got)
	}
	b, _ := pem.Decode(ca.CertPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("CertPEM is not a CERTIFICATE block")
	}
}

func TestIssueServer(t *testing.T) {
	ca := newTestCA(t)
	notAfter := time.Now().Add(time.Hour).Truncate(time.Second)
	cert, err := ca.IssueServer([]string{"localhost", "127.0.0.1", "::1", "sandbox.example"}, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"localhost", "127.0.0.1", "::1", "sandbox.example"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: ca.Pool()}); err != nil {
			t.Errorf("verify for %s: %v", host, err)
		}
	}
	if !cert.Leaf.NotAfter.Equal(notAfter) {
		t.Errorf("NotAfter = %v, want %v", cert.Leaf.NotAfter, notAfter)
	}
}

func TestIssueClientEncodings(t *testing.T) {
	ca := newTestCA(t)
	for _, kt := range []KeyType{KeyECDSA, KeyRSA} {
		t.Run(kt.String(), func(t *testing.T) {
			cc, err := ca.IssueClient("m2m-user", kt, time.Time{}, time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := cc.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("client certificate does not verify for client auth: %v", err)
			}

			b, _ := pem.Decode(cc.KeyPEM)
			if b == nil || b.Type != "PRIVATE KEY" {
				t.Fatal("KeyPEM is not a PKCS#8 PRIVATE KEY block")
			}
			if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err != nil {
				t.Fatal(err)
			}

			pkcs1, err1 := cc.PKCS1KeyPEM()
			ec, err2 := cc.ECKeyPEM()
			switch kt {
			case KeyRSA:
				if err1 != nil || err2 == nil {
					t.Fatalf("RSA: PKCS1KeyPEM err=%v, ECKeyPEM err=%v", err1, err2)
				}
				b, _ := pem.Decode(pkcs1)
				if b.Type != "RSA PRIVATE KEY" {
					t.Errorf("PKCS#1 block type %q", b.Type)
				}
				if _, err := x509.ParsePKCS1PrivateKey(b.Bytes); err != nil {
					t.Error(err)
				}
			case KeyECDSA:
				if err1 == nil || err2 != nil {
					t.Fatalf("ECDSA: PKCS1KeyPEM err=%v, ECKeyPEM err=%v", err1, err2)
				}
				b, _ := pem.Decode(ec)
				if b.Type != "EC PRIVATE KEY" {
					t.Errorf("SEC 1 block type %q", b.Type)
				}
				if _, err := x509.ParseECPrivateKey(b.Bytes); err != nil {
					t.Error(err)
				}
			}

			enc, err := cc.EncryptedKeyPEM("s3cret")
			if err != nil {
				t.Fatal(err)
			}
			b, _ = pem.Decode(enc)
			if b == nil || b.Type != "ENCRYPTED PRIVATE KEY" {
				t.Fatal("EncryptedKeyPEM is not an ENCRYPTED PRIVATE KEY block")
			}
			key, err := pkcs8.ParsePKCS8PrivateKey(b.Bytes, []byte("s3cret"))
			if err != nil {
				t.Fatalf("decrypt with the passphrase: %v", err)
			}
			if !sameKey(key, cc) {
				t.Error("decrypted key differs from the issued key")
			}
			if _, err := pkcs8.ParsePKCS8PrivateKey(b.Bytes, []byte("wrong")); err == nil {
				t.Error("decrypt with a wrong passphrase succeeded")
			}
			if _, err := cc.EncryptedKeyPEM(""); err == nil {
				t.Error("EncryptedKeyPEM accepted an empty passphrase")
			}

			for _, legacy := range []bool{true, false} {
				pfx, err := cc.PKCS12("changeit", legacy)
				if err != nil {
					t.Fatalf("legacy=%v: %v", legacy, err)
				}
				key, cert, chain, err := pkcs12.DecodeChain(pfx, "changeit")
				if err != nil {
					t.Fatalf("legacy=%v: DecodeChain: %v", legacy, err)
				}
				if !cert.Equal(cc.Cert) || !sameKey(key, cc) {
					t.Errorf("legacy=%v: decoded certificate or key differs", legacy)
				}
				if len(chain) != 1 || !chain[0].Equal(ca.Cert) {
					t.Errorf("legacy=%v: chain = %d certificates, want the CA", legacy, len(chain))
				}
				if _, _, _, err := pkcs12.DecodeChain(pfx, "wrong"); err == nil {
					t.Errorf("legacy=%v: DecodeChain with a wrong passphrase succeeded", legacy)
				}
			}
			pfx, err := cc.PKCS12With(pkcs12.LegacyRC2, "changeit")
			if err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := pkcs12.DecodeChain(pfx, "changeit"); err != nil {
				t.Fatalf("LegacyRC2: %v", err)
			}
		})
	}
}

func TestIssueClientValidity(t *testing.T) {
	ca := newTestCA(t)
	nb := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	na := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	cc, err := ca.IssueClient("expired", KeyECDSA, nb, na)
	if err != nil {
		t.Fatal(err)
	}
	if !cc.Cert.NotBefore.Equal(nb) || !cc.Cert.NotAfter.Equal(na) {
		t.Errorf("validity = %v..%v, want %v..%v", cc.Cert.NotBefore, cc.Cert.NotAfter, nb, na)
	}
	if _, err := cc.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("expired certificate verified")
	}
}

func TestTrustStorePKCS12(t *testing.T) {
	ca := newTestCA(t)
	pfx, err := ca.TrustStorePKCS12("changeit")
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pkcs12.DecodeTrustStore(pfx, "changeit")
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 1 || !certs[0].Equal(ca.Cert) {
		t.Fatalf("trust store holds %d certificates, want the CA only", len(certs))
	}
	// A trust store has no key: decoding it as a key bundle must fail.
	if _, _, _, err := pkcs12.DecodeChain(pfx, "changeit"); err == nil {
		t.Error("trust store decoded as a key bundle")
	}
}

func sameKey(key any, cc *ClientCert) bool {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return k.Equal(cc.Key)
	case *ecdsa.PrivateKey:
		return k.Equal(cc.Key)
	}
	return false
}
