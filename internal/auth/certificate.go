package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"strings"
	"time"

	"github.com/youmark/pkcs8"
	"software.sslmate.com/src/go-pkcs12"
)

// MaxCertificateInputBytes caps each certificate input. A real PKCS#12 or PEM
// chain is a few KiB; the cap keeps a wrong Secret key (say, a tarball) from
// costing the operator memory and CPU.
const MaxCertificateInputBytes = 256 << 10

// CertificateSource is the client certificate as read from a Secret: either
// a PKCS#12 (.pfx) file, or a PEM certificate chain plus a PEM private key.
// Passphrase opens the PKCS#12 file or an encrypted PEM key.
type CertificateSource struct {
	PKCS12         []byte
	CertificatePEM []byte
	PrivateKeyPEM  []byte
	Passphrase     []byte
}

// LoadClientCertificate decodes src and checks that the key matches the
// certificate and that the certificate is valid at now. It returns the
// certificate's NotAfter whenever the certificate could be decoded, also
// along with an expiry error, so the caller can report when it ran out.
// Errors are *ClientCertificateError and never quote the inputs.
func LoadClientCertificate(src CertificateSource, now time.Time) (cert *tls.Certificate, notAfter time.Time, err error) {
	for _, in := range [][]byte{src.PKCS12, src.CertificatePEM, src.PrivateKeyPEM, src.Passphrase} {
		if len(in) > MaxCertificateInputBytes {
			return nil, time.Time{}, certErr("an input exceeds 256 KiB")
		}
	}
	// The decoders are fed bytes from user Secrets; a panic in one of them
	// must become an error, not a crashed operator.
	defer func() {
		if r := recover(); r != nil {
			cert, notAfter, err = nil, time.Time{}, certErr("cannot decode the certificate")
		}
	}()

	var (
		key   crypto.PrivateKey
		certs []*x509.Certificate
	)
	switch {
	case len(src.PKCS12) > 0 && (len(src.CertificatePEM) > 0 || len(src.PrivateKeyPEM) > 0):
		return nil, time.Time{}, certErr("both a PKCS#12 file and PEM data are given")
	case len(src.PKCS12) > 0:
		key, certs, err = decodePKCS12(src.PKCS12, src.Passphrase)
	case len(src.CertificatePEM) > 0:
		key, certs, err = decodePEM(src.CertificatePEM, src.PrivateKeyPEM, src.Passphrase)
	default:
		return nil, time.Time{}, certErr("no certificate given")
	}
	if err != nil {
		return nil, time.Time{}, err
	}

	signer, ok := key.(crypto.Signer)
	if !ok || !supportedKey(key) {
		return nil, time.Time{}, certErr("unsupported private key type")
	}
	leaf, chain := pickLeaf(signer.Public(), certs)
	if leaf == nil {
		return nil, time.Time{}, certErr("the private key does not match the certificate")
	}
	notAfter = leaf.NotAfter
	if now.Before(leaf.NotBefore) {
		return nil, notAfter, certErr("the certificate is not valid yet")
	}
	if now.After(leaf.NotAfter) {
		return nil, notAfter, certErr("the certificate has expired")
	}
	tc := &tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc, notAfter, nil
}

func certErr(problem string) error { return &ClientCertificateError{Problem: problem} }

func supportedKey(k crypto.PrivateKey) bool {
	switch k.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return true
	}
	return false
}

// pickLeaf finds the certificate that belongs to the key. Files in the wild
// do not always put the leaf first, so order is not trusted; the remaining
// certificates are sent as the chain in their original order.
func pickLeaf(pub crypto.PublicKey, certs []*x509.Certificate) (*x509.Certificate, []*x509.Certificate) {
	eq, ok := pub.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return nil, nil
	}
	for i, c := range certs {
		if eq.Equal(c.PublicKey) {
			chain := make([]*x509.Certificate, 0, len(certs)-1)
			chain = append(chain, certs[:i]...)
			return c, append(chain, certs[i+1:]...)
		}
	}
	return nil, nil
}

func decodePKCS12(data, passphrase []byte) (crypto.PrivateKey, []*x509.Certificate, error) {
	if p := checkKDFCost(data); p != "" {
		return nil, nil, certErr(p)
	}
	// DecodeChain reads both the legacy RC2/3DES encryption that many issued
	// .pfx files use and the modern PBES2/AES one.
	key, leaf, cas, err := pkcs12.DecodeChain(data, string(passphrase))
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword):
		return nil, nil, certErr("wrong passphrase for the PKCS#12 file")
	case err != nil && strings.Contains(err.Error(), "private key missing"):
		return nil, nil, certErr("the PKCS#12 file contains no private key")
	case err != nil && strings.Contains(err.Error(), "certificate missing"):
		return nil, nil, certErr("the PKCS#12 file contains no certificate")
	case err != nil:
		return nil, nil, certErr("cannot decode the PKCS#12 file")
	}
	return key, append([]*x509.Certificate{leaf}, cas...), nil
}

// decodePEM reads the certificate chain from certPEM and the key from keyPEM,
// or from certPEM when keyPEM is empty (a combined file).
func decodePEM(certPEM, keyPEM, passphrase []byte) (crypto.PrivateKey, []*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := certPEM
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, certErr("cannot parse a PEM certificate")
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, nil, certErr("no PEM certificate found")
	}
	if len(bytes.TrimSpace(keyPEM)) == 0 {
		keyPEM = certPEM
	}
	key, err := decodePEMKey(keyPEM, passphrase)
	if err != nil {
		return nil, nil, err
	}
	return key, certs, nil
}

func decodePEMKey(keyPEM, passphrase []byte) (crypto.PrivateKey, error) {
	rest := keyPEM
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, certErr("no PEM private key found")
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, certErr("cannot parse the PKCS#8 private key")
			}
			return k, nil
		case "RSA PRIVATE KEY", "EC PRIVATE KEY":
			return decodeTraditionalKey(block, passphrase)
		case "ENCRYPTED PRIVATE KEY":
			if len(passphrase) == 0 {
				return nil, certErr("the private key is encrypted and no passphrase is given")
			}
			if p := checkKDFCost(block.Bytes); p != "" {
				return nil, certErr(p)
			}
			k, err := pkcs8.ParsePKCS8PrivateKey(block.Bytes, passphrase)
			if err != nil {
				// pkcs8 cannot tell a wrong passphrase from a corrupt key:
				// decryption "succeeds" into garbage either way.
				return nil, certErr("wrong passphrase for the private key, or the key is corrupt")
			}
			return k, nil
		}
	}
}

// decodeTraditionalKey reads PKCS#1 RSA and SEC 1 EC keys, including the
// OpenSSL "Proc-Type: 4,ENCRYPTED" form that `openssl genrsa -aes256` and
// older tooling still produce.
func decodeTraditionalKey(block *pem.Block, passphrase []byte) (crypto.PrivateKey, error) {
	der := block.Bytes
	//nolint:staticcheck // legacy PEM encryption is still what some issuers hand out.
	if x509.IsEncryptedPEMBlock(block) {
		if len(passphrase) == 0 {
			return nil, certErr("the private key is encrypted and no passphrase is given")
		}
		var err error
		//nolint:staticcheck // see above
		der, err = x509.DecryptPEMBlock(block, passphrase)
		if err != nil {
			return nil, certErr("wrong passphrase for the private key")
		}
	}
	if block.Type == "RSA PRIVATE KEY" {
		k, err := x509.ParsePKCS1PrivateKey(der)
		if err != nil {
			return nil, certErr("cannot parse the PKCS#1 private key")
		}
		return k, nil
	}
	k, err := x509.ParseECPrivateKey(der)
	if err != nil {
		return nil, certErr("cannot parse the EC private key")
	}
	return k, nil
}
