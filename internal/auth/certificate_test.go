package auth

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/tokenwarden/tokenwarden/internal/sandbox"

	"github.com/tokenwarden/tokenwarden/internal/failure"
)

const testPassphrase = "pp-S3cr3t-Pass"

// certFixtures are the client certificate encodings users hand us, all for
// certificates of one CA, built once per test binary.
type certFixtures struct {
	ca                       *sandbox.CA
	rsa, ec, expired, future *sandbox.ClientCert
	p12Legacy, p12Modern     []byte
	p12RC2                   []byte
	p12Expired               []byte
	trustStore               []byte
	pkcs1, ecKey, encPKCS8   []byte
	legacyEncryptedPKCS1     []byte
}

var fixtures *certFixtures

func loadFixtures(t testing.TB) *certFixtures {
	t.Helper()
	if fixtures != nil {
		return fixtures
	}
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ca, err := sandbox.NewCA("auth test CA")
	if err != nil {
		t.Fatal(err)
	}
	fx := &certFixtures{ca: ca}
	issue := func(kt sandbox.KeyType, nb, na time.Time) *sandbox.ClientCert {
		c, err := ca.IssueClient("m2m-user", kt, nb, na)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	now := time.Now()
	fx.rsa = issue(sandbox.KeyRSA, time.Time{}, time.Time{})
	fx.ec = issue(sandbox.KeyECDSA, time.Time{}, time.Time{})
	fx.expired = issue(sandbox.KeyECDSA, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	fx.future = issue(sandbox.KeyECDSA, now.Add(24*time.Hour), now.Add(48*time.Hour))
	fx.p12Legacy = must(fx.rsa.PKCS12(testPassphrase, true))
	fx.p12Modern = must(fx.ec.PKCS12(testPassphrase, false))
	fx.p12RC2 = must(fx.rsa.PKCS12With(pkcs12.LegacyRC2, testPassphrase))
	fx.p12Expired = must(fx.expired.PKCS12(testPassphrase, false))
	fx.trustStore = must(ca.TrustStorePKCS12(testPassphrase))
	fx.pkcs1 = must(fx.rsa.PKCS1KeyPEM())
	fx.ecKey = must(fx.ec.ECKeyPEM())
	fx.encPKCS8 = must(fx.ec.EncryptedKeyPEM(testPassphrase))
	block, _ := pem.Decode(fx.pkcs1)
	//nolint:staticcheck // building the legacy format on purpose
	enc, err := x509.EncryptPEMBlock(bytes.NewReader(bytes.Repeat([]byte{1}, 64)), block.Type, block.Bytes, []byte(testPassphrase), x509.PEMCipherAES256)
	if err != nil {
		t.Fatal(err)
	}
	fx.legacyEncryptedPKCS1 = pem.EncodeToMemory(enc)
	fixtures = fx
	return fx
}

func TestLoadClientCertificate(t *testing.T) {
	fx := loadFixtures(t)
	now := time.Now()
	pass := []byte(testPassphrase)
	tests := []struct {
		name    string
		src     CertificateSource
		wantErr bool
		leaf    *sandbox.ClientCert // the certificate that must come back
	}{
		{name: "PKCS#12 legacy 3DES", src: CertificateSource{PKCS12: fx.p12Legacy, Passphrase: pass}, leaf: fx.rsa},
		{name: "PKCS#12 legacy RC2", src: CertificateSource{PKCS12: fx.p12RC2, Passphrase: pass}, leaf: fx.rsa},
		{name: "PKCS#12 modern AES", src: CertificateSource{PKCS12: fx.p12Modern, Passphrase: pass}, leaf: fx.ec},
		{name: "PEM PKCS#8", src: CertificateSource{CertificatePEM: fx.ec.CertPEM, PrivateKeyPEM: fx.ec.KeyPEM}, leaf: fx.ec},
		{name: "PEM PKCS#1", src: CertificateSource{CertificatePEM: fx.rsa.CertPEM, PrivateKeyPEM: fx.pkcs1}, leaf: fx.rsa},
		{name: "PEM SEC 1 EC", src: CertificateSource{CertificatePEM: fx.ec.CertPEM, PrivateKeyPEM: fx.ecKey}, leaf: fx.ec},
		{name: "PEM encrypted PKCS#8", src: CertificateSource{CertificatePEM: fx.ec.CertPEM, PrivateKeyPEM: fx.encPKCS8, Passphrase: pass}, leaf: fx.ec},
		{name: "PEM legacy encrypted PKCS#1", src: CertificateSource{CertificatePEM: fx.rsa.CertPEM, PrivateKeyPEM: fx.legacyEncryptedPKCS1, Passphrase: pass}, leaf: fx.rsa},
		{name: "PEM combined file", src: CertificateSource{CertificatePEM: append(append([]byte{}, fx.ec.CertPEM...), fx.ec.KeyPEM...)}, leaf: fx.ec},
		{name: "PEM chain with the CA first", src: CertificateSource{CertificatePEM: append(append([]byte{}, fx.ca.CertPEM...), fx.ec.CertPEM...), PrivateKeyPEM: fx.ec.KeyPEM}, leaf: fx.ec},

		{name: "PKCS#12 wrong passphrase", src: CertificateSource{PKCS12: fx.p12Modern, Passphrase: []byte("wrong")}, wantErr: true},
		{name: "PKCS#12 legacy wrong passphrase", src: CertificateSource{PKCS12: fx.p12Legacy, Passphrase: []byte("wrong")}, wantErr: true},
		{name: "PKCS#12 without a key", src: CertificateSource{PKCS12: fx.trustStore, Passphrase: pass}, wantErr: true},
		{name: "PKCS#12 garbage", src: CertificateSource{PKCS12: []byte("not a pfx"), Passphrase: pass}, wantErr: true},
		{name: "PEM key of another certificate", src: CertificateSource{CertificatePEM: fx.ec.CertPEM, PrivateKeyPEM: fx.rsa.KeyPEM}, wantErr: true},
		{name: "PEM encrypted key without passphrase", src: CertificateSource{CertificatePEM: fx.ec.CertPEM, PrivateKeyPEM: fx.encPKCS8}, wantErr: true},
		{name: "PEM encrypted key wrong passphrase", src: CertificateSource{CertificatePEM: fx.ec.CertPEM, PrivateKeyPEM: fx.encPKCS8, Passphrase: []byte("wrong")}, wantErr: true},
		{name: "PEM legacy encrypted key without passphrase", src: CertificateSource{CertificatePEM: fx.rsa.CertPEM, PrivateKeyPEM: fx.legacyEncryptedPKCS1}, wantErr: true},
		{name: "PEM without key", src: CertificateSource{CertificatePEM: fx.ec.CertPEM}, wantErr: true},
		{name: "PEM without certificate", src: CertificateSource{CertificatePEM: fx.ec.KeyPEM, PrivateKeyPEM: fx.ec.KeyPEM}, wantErr: true},
		{name: "expired certificate", src: CertificateSource{CertificatePEM: fx.expired.CertPEM, PrivateKeyPEM: fx.expired.KeyPEM}, wantErr: true},
		{name: "expired PKCS#12", src: CertificateSource{PKCS12: fx.p12Expired, Passphrase: pass}, wantErr: true},
		{name: "not yet valid certificate", src: CertificateSource{CertificatePEM: fx.future.CertPEM, PrivateKeyPEM: fx.future.KeyPEM}, wantErr: true},
		{name: "both PKCS#12 and PEM", src: CertificateSource{PKCS12: fx.p12Modern, CertificatePEM: fx.ec.CertPEM, Passphrase: pass}, wantErr: true},
		{name: "nothing", src: CertificateSource{}, wantErr: true},
		{name: "oversized input", src: CertificateSource{PKCS12: make([]byte, MaxCertificateInputBytes+1)}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, notAfter, err := LoadClientCertificate(tt.src, now)
			if tt.wantErr {
				mustClass(t, err, failure.InvalidClientCertificate)
				if cert != nil {
					t.Fatal("certificate returned with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !cert.Leaf.Equal(tt.leaf.Cert) || !bytes.Equal(cert.Certificate[0], tt.leaf.Cert.Raw) {
				t.Fatal("wrong leaf certificate")
			}
			if !notAfter.Equal(tt.leaf.Cert.NotAfter) {
				t.Fatalf("notAfter = %v, want %v", notAfter, tt.leaf.Cert.NotAfter)
			}
		})
	}
}

// An expired certificate still reports when it expired, for status.
func TestLoadClientCertificateExpiredReportsNotAfter(t *testing.T) {
	fx := loadFixtures(t)
	_, notAfter, err := LoadClientCertificate(CertificateSource{CertificatePEM: fx.expired.CertPEM, PrivateKeyPEM: fx.expired.KeyPEM}, time.Now())
	mustClass(t, err, failure.InvalidClientCertificate)
	if !notAfter.Equal(fx.expired.Cert.NotAfter) {
		t.Fatalf("notAfter = %v, want %v", notAfter, fx.expired.Cert.NotAfter)
	}
}

// fuzzNow is inside the validity of the committed seed certificates
// (2020-2120), so the fuzzer can reach the success path.
var fuzzNow = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// FuzzLoadClientCertificate feeds the loader arbitrary PKCS#12, PEM and
// passphrase bytes. Its seeds live in testdata/fuzz/FuzzLoadClientCertificate
// (real PKCS#12 and PEM files in every supported encoding, written by
// TestWriteFuzzSeeds): generating keys here would run in every fuzz worker,
// under coverage instrumentation, and stall it.
func FuzzLoadClientCertificate(f *testing.F) {
	f.Add([]byte("not a pfx"), []byte(nil), []byte(nil), []byte(nil))
	f.Add([]byte(nil), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte(nil), []byte(nil))
	f.Fuzz(func(t *testing.T, p12, certPEM, keyPEM, passphrase []byte) {
		src := CertificateSource{PKCS12: p12, CertificatePEM: certPEM, PrivateKeyPEM: keyPEM, Passphrase: passphrase}
		cert, notAfter, err := LoadClientCertificate(src, fuzzNow)
		if err != nil {
			mustClass(t, err, failure.InvalidClientCertificate)
			if cert != nil {
				t.Fatal("certificate returned with an error")
			}
			return
		}
		if cert == nil || cert.Leaf == nil || len(cert.Certificate) == 0 || cert.PrivateKey == nil {
			t.Fatal("incomplete certificate without an error")
		}
		if !notAfter.Equal(cert.Leaf.NotAfter) || fuzzNow.After(notAfter) || fuzzNow.Before(cert.Leaf.NotBefore) {
			t.Fatal("accepted a certificate outside its validity")
		}
	})
}

// TestWriteFuzzSeeds regenerates the committed seed corpus of
// FuzzLoadClientCertificate. It runs only on demand:
//
//	TOKENWARDEN_WRITE_FUZZ_SEEDS=1 go test -run TestWriteFuzzSeeds ./internal/auth/
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("TOKENWARDEN_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set TOKENWARDEN_WRITE_FUZZ_SEEDS=1 to regenerate the seed corpus")
	}
	ca, err := sandbox.NewCA("fuzz seed CA")
	if err != nil {
		t.Fatal(err)
	}
	nb, na := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2120, 1, 1, 0, 0, 0, 0, time.UTC)
	rsaCert, err := ca.IssueClient("fuzz", sandbox.KeyRSA, nb, na)
	if err != nil {
		t.Fatal(err)
	}
	ecCert, err := ca.IssueClient("fuzz", sandbox.KeyECDSA, nb, na)
	if err != nil {
		t.Fatal(err)
	}
	must := func(b []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	pass := []byte(testPassphrase)
	seeds := map[string][4][]byte{
		"p12-legacy-rsa":       {must(rsaCert.PKCS12(testPassphrase, true)), nil, nil, pass},
		"p12-modern-ec":        {must(ecCert.PKCS12(testPassphrase, false)), nil, nil, pass},
		"p12-rc2-rsa":          {must(rsaCert.PKCS12With(pkcs12.LegacyRC2, testPassphrase)), nil, nil, pass},
		"p12-wrong-passphrase": {must(ecCert.PKCS12(testPassphrase, false)), nil, nil, []byte("wrong")},
		"p12-trust-store":      {must(ca.TrustStorePKCS12(testPassphrase)), nil, nil, pass},
		"pem-pkcs8-ec":         {nil, ecCert.CertPEM, ecCert.KeyPEM, nil},
		"pem-pkcs1-rsa":        {nil, rsaCert.CertPEM, must(rsaCert.PKCS1KeyPEM()), nil},
		"pem-sec1-ec":          {nil, ecCert.CertPEM, must(ecCert.ECKeyPEM()), nil},
		"pem-encrypted-pkcs8":  {nil, ecCert.CertPEM, must(ecCert.EncryptedKeyPEM(testPassphrase)), pass},
		"pem-encrypted-nopass": {nil, ecCert.CertPEM, must(ecCert.EncryptedKeyPEM(testPassphrase)), nil},
		"pem-mismatch":         {nil, ecCert.CertPEM, rsaCert.KeyPEM, nil},
		"pem-combined-chain":   {nil, append(append(append([]byte{}, ca.CertPEM...), ecCert.CertPEM...), ecCert.KeyPEM...), nil, nil},
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzLoadClientCertificate")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, args := range seeds {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, a := range args {
			b.WriteString("[]byte(" + strconv.Quote(string(a)) + ")\n")
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFuzzSeedCorpus keeps the committed seeds meaningful: the valid ones
// must load, so the fuzzer starts from the success path too.
func TestFuzzSeedCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzLoadClientCertificate")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	failing := map[string]bool{"p12-wrong-passphrase": true, "p12-trust-store": true, "pem-encrypted-nopass": true, "pem-mismatch": true}
	loaded := 0
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var args [][]byte
		for _, line := range strings.Split(string(raw), "\n") {
			if q, ok := strings.CutPrefix(line, "[]byte("); ok {
				s, err := strconv.Unquote(strings.TrimSuffix(q, ")"))
				if err != nil {
					t.Fatalf("%s: %v", e.Name(), err)
				}
				args = append(args, []byte(s))
			}
		}
		if len(args) != 4 {
			t.Fatalf("%s: %d arguments, want 4", e.Name(), len(args))
		}
		_, _, err = LoadClientCertificate(CertificateSource{PKCS12: args[0], CertificatePEM: args[1], PrivateKeyPEM: args[2], Passphrase: args[3]}, fuzzNow)
		if failing[e.Name()] {
			mustClass(t, err, failure.InvalidClientCertificate)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", e.Name(), err)
		}
		loaded++
	}
	if loaded < 8 {
		t.Fatalf("only %d seeds load", loaded)
	}
}
