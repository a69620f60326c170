package auth

import (
	"bytes"
	"crypto"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/youmark/pkcs8"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/tokenwarden/tokenwarden/internal/failure"
)

// TestKDFCostLimits: a file that asks for an absurd key-derivation cost is
// refused before any derivation runs, for every encoding, and ordinary
// parameters still load.
func TestKDFCostLimits(t *testing.T) {
	fx := loadFixtures(t)
	pass := []byte(testPassphrase)
	// Encoders run the derivation too, so hostile files are made by
	// encoding cheap parameters with a recognisable INTEGER and patching it
	// in place to an expensive value of the same length.
	patch := func(der []byte, from, to []byte) []byte {
		t.Helper()
		if bytes.Count(der, from) == 0 {
			t.Fatalf("pattern % x not found", from)
		}
		return bytes.ReplaceAll(der, from, to)
	}
	p12 := func(enc *pkcs12.Encoder, iterations int) []byte {
		t.Helper()
		data, err := enc.WithIterations(iterations).Encode(fx.ec.Key, fx.ec.Cert, nil, testPassphrase)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	encKey := func(kdf pkcs8.KDFOpts) []byte {
		t.Helper()
		der, err := pkcs8.MarshalPrivateKey(fx.ec.Key, pass, &pkcs8.Opts{Cipher: pkcs8.AES256CBC, KDFOpts: kdf})
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	keySource := func(der []byte) CertificateSource {
		return CertificateSource{CertificatePEM: fx.ec.CertPEM, Passphrase: pass,
			PrivateKeyPEM: pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: der})}
	}
	p12Source := func(der []byte) CertificateSource { return CertificateSource{PKCS12: der, Passphrase: pass} }
	pbkdf2 := func(n int) pkcs8.KDFOpts {
		return pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: n, HMACHash: crypto.SHA256}
	}
	scrypt := func(n, r, p int) pkcs8.KDFOpts {
		return pkcs8.ScryptOpts{SaltSize: 16, CostParameter: n, BlockSize: r, ParallelizationParameter: p}
	}
	// INTEGER 0x010203 (66051) becomes 0x7fffff (8388607).
	iter3 := []byte{0x02, 0x03, 0x01, 0x02, 0x03}
	huge3 := []byte{0x02, 0x03, 0x7f, 0xff, 0xff}
	tests := []struct {
		name string
		src  CertificateSource
		ok   bool
	}{
		{"PKCS#12 modern, 10000 iterations", p12Source(p12(pkcs12.Modern, 10000)), true},
		{"PKCS#12 modern, 8388607 iterations", p12Source(patch(p12(pkcs12.Modern, 0x010203), iter3, huge3)), false},
		{"PKCS#12 legacy, 8388607 iterations", p12Source(patch(p12(pkcs12.Legacy, 0x010203), iter3, huge3)), false},
		{"PKCS#12 RC2, 8388607 iterations", p12Source(patch(p12(pkcs12.LegacyRC2, 0x010203), iter3, huge3)), false},
		{"PKCS#8 PBKDF2, 10000 iterations", keySource(encKey(pbkdf2(10000))), true},
		{"PKCS#8 PBKDF2, 8388607 iterations", keySource(patch(encKey(pbkdf2(0x010203)), iter3, huge3)), false},
		{"PKCS#8 scrypt, OpenSSL defaults", keySource(encKey(scrypt(16384, 8, 1))), true},
		// N 32768 (02 03 00 80 00) becomes 2^20: 128 MiB at r=1.
		{"PKCS#8 scrypt, N=2^20", keySource(patch(encKey(scrypt(32768, 1, 1)), []byte{0x02, 0x03, 0x00, 0x80, 0x00}, []byte{0x02, 0x03, 0x10, 0x00, 0x00})), false},
		// p 0x0181 (385) becomes 0x7fff.
		{"PKCS#8 scrypt, p=32767", keySource(patch(encKey(scrypt(1024, 1, 0x0181)), []byte{0x02, 0x02, 0x01, 0x81}, []byte{0x02, 0x02, 0x7f, 0xff})), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			_, _, err := LoadClientCertificate(tt.src, time.Now())
			if tt.ok {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			mustClass(t, err, failure.InvalidClientCertificate)
			if !strings.Contains(err.Error(), "key derivation") && !strings.Contains(err.Error(), "scrypt") {
				t.Fatalf("refused for another reason: %v", err)
			}
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Fatalf("refusal took %v: the derivation ran", d)
			}
		})
	}
}
