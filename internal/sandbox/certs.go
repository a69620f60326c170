package sandbox

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	"github.com/youmark/pkcs8"
	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// clockSkew backdates NotBefore so that certificates issued "now" are already
// valid on a peer whose clock runs a little behind ours.
const clockSkew = time.Hour

// CA is a throw-away certificate authority. It signs the sandbox's TLS
// server certificate and the client certificates that flow A demands, so a
// test only has to trust (and hand out) one root.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte // "CERTIFICATE" block of Cert
}

// KeyType selects the private key algorithm of an issued client certificate.
// Providers hand out both, and the operator has to load both.
type KeyType int

const (
	// KeyECDSA is an ECDSA P-256 key.
	KeyECDSA KeyType = iota
	// KeyRSA is a 2048-bit RSA key.
	KeyRSA
)

// String names the key type for test names and error messages.
func (k KeyType) String() string {
	switch k {
	case KeyECDSA:
		return "ECDSA"
	case KeyRSA:
		return "RSA"
	default:
		return fmt.Sprintf("KeyType(%d)", int(k))
	}
}

// ClientCert is a client certificate issued by a CA, with its key in the
// encodings users find in the wild.
type ClientCert struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte // "CERTIFICATE" block of Cert
	KeyPEM  []byte // unencrypted PKCS#8 "PRIVATE KEY" block of Key
	// Issuer is the CA certificate, added to PKCS#12 bundles as the chain.
	Issuer *x509.Certificate
}

// NewCA creates a self-signed ECDSA P-256 CA valid for ten years.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"tokenwarden sandbox"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.AddDate(10, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// Path length 0: the CA signs leaves only, never intermediates.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM(der)}, nil
}

// Pool returns a pool holding only the CA certificate, for RootCAs on the
// client side or ClientCAs on the server side.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// IssueServer issues a TLS server certificate for hosts (DNS names and IP
// literals both become SANs; the first host is also the common name). A zero
// notAfter means one year from now. The returned chain includes the CA
// certificate so clients that only know the root can still build the path.
func (ca *CA) IssueServer(hosts []string, notAfter time.Time) (tls.Certificate, error) {
	if len(hosts) == 0 {
		return tls.Certificate{}, errors.New("issue server certificate: no hosts")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	if notAfter.IsZero() {
		notAfter = now.AddDate(1, 0, 0)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("sign server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse server certificate: %w", err)
	}
	return tls.Certificate{
		Certificate: [][]byte{der, ca.Cert.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// IssueClient issues a client-authentication certificate. A zero notBefore
// means an hour ago and a zero notAfter one year from now; passing explicit
// times lets tests build not-yet-valid, expired and soon-to-expire
// certificates.
func (ca *CA) IssueClient(commonName string, keyType KeyType, notBefore, notAfter time.Time) (*ClientCert, error) {
	var key crypto.Signer
	var err error
	usage := x509.KeyUsageDigitalSignature
	switch keyType {
	case KeyECDSA:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyRSA:
		key, err = rsa.GenerateKey(rand.Reader, 2048)
		// RSA key exchange (TLS 1.2 without ECDHE) encrypts with the key.
		usage |= x509.KeyUsageKeyEncipherment
	default:
		return nil, fmt.Errorf("issue client certificate: unknown key type %v", keyType)
	}
	if err != nil {
		return nil, fmt.Errorf("generate %v client key: %w", keyType, err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if notBefore.IsZero() {
		notBefore = now.Add(-clockSkew)
	}
	if notAfter.IsZero() {
		notAfter = now.AddDate(1, 0, 0)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     usage,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign client certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse client certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal client key: %w", err)
	}
	return &ClientCert{
		Cert:    cert,
		Key:     key,
		CertPEM: certPEM(der),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Issuer:  ca.Cert,
	}, nil
}

// TLSCertificate returns the certificate and key ready for
// tls.Config.Certificates on the client side.
func (c *ClientCert) TLSCertificate() tls.Certificate {
	chain := [][]byte{c.Cert.Raw}
	if c.Issuer != nil {
		chain = append(chain, c.Issuer.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: c.Key, Leaf: c.Cert}
}

// PKCS1KeyPEM returns the key as an "RSA PRIVATE KEY" block (the OpenSSL 1.x
// default that many providers still ship). It fails for non-RSA keys.
func (c *ClientCert) PKCS1KeyPEM() ([]byte, error) {
	k, ok := c.Key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("PKCS#1 needs an RSA key, have %T", c.Key)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), nil
}

// ECKeyPEM returns the key as an SEC 1 "EC PRIVATE KEY" block. It fails for
// non-ECDSA keys.
func (c *ClientCert) ECKeyPEM() ([]byte, error) {
	k, ok := c.Key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("SEC 1 needs an ECDSA key, have %T", c.Key)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal EC key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// EncryptedKeyPEM returns the key as a passphrase-protected PKCS#8
// "ENCRYPTED PRIVATE KEY" block (PBES2, PBKDF2-SHA256, AES-256-CBC), the
// format `openssl pkcs8 -topk8` writes by default.
func (c *ClientCert) EncryptedKeyPEM(passphrase string) ([]byte, error) {
	if passphrase == "" {
		// An "encrypted" key with an empty passphrase is a trap for the
		// reader, not a fixture anyone needs.
		return nil, errors.New("encrypted PKCS#8 needs a non-empty passphrase")
	}
	der, err := pkcs8.MarshalPrivateKey(c.Key, []byte(passphrase), nil)
	if err != nil {
		return nil, fmt.Errorf("encrypt PKCS#8 key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der}), nil
}

// PKCS12 returns a .p12/.pfx bundle of key, certificate and CA certificate.
// legacy selects pkcs12.Legacy (3DES, SHA-1 MAC: what older Windows and
// OpenSSL 1.x exports look like); otherwise pkcs12.Modern (PBES2/AES-256,
// SHA-256 MAC: OpenSSL 3's default). Use PKCS12With for other encoders such
// as pkcs12.LegacyRC2.
func (c *ClientCert) PKCS12(passphrase string, legacy bool) ([]byte, error) {
	enc := pkcs12.Modern
	if legacy {
		enc = pkcs12.Legacy
	}
	return c.PKCS12With(enc, passphrase)
}

// PKCS12With is PKCS12 with an explicit encoder.
func (c *ClientCert) PKCS12With(enc *pkcs12.Encoder, passphrase string) ([]byte, error) {
	var chain []*x509.Certificate
	if c.Issuer != nil {
		chain = []*x509.Certificate{c.Issuer}
	}
	pfx, err := enc.Encode(c.Key, c.Cert, chain, passphrase)
	if err != nil {
		return nil, fmt.Errorf("encode PKCS#12: %w", err)
	}
	return pfx, nil
}

// TrustStorePKCS12 returns a PKCS#12 trust store holding only the CA
// certificate (no private key), as Java clients expect for a custom root.
func (ca *CA) TrustStorePKCS12(passphrase string) ([]byte, error) {
	pfx, err := pkcs12.Modern.EncodeTrustStore([]*x509.Certificate{ca.Cert}, passphrase)
	if err != nil {
		return nil, fmt.Errorf("encode PKCS#12 trust store: %w", err)
	}
	return pfx, nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// randomSerial returns a positive 128-bit serial; RFC 5280 allows up to 20
// octets and random serials keep re-issued certificates distinguishable.
func randomSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate serial: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}
