package sandbox

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Claims are the JWT claims of a sandbox token.
type Claims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"` // the client id
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	ID       string `json:"jti"` // random, so two tokens issued in the same second differ
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

var b64 = base64.RawURLEncoding

// ecdsaSig is the ASN.1 form crypto/ecdsa produces; JWS wants r||s instead.
type ecdsaSig struct{ R, S *big.Int }

// signJWT returns an ES256 JWT (RFC 7515/7518) for claims.
func signJWT(key *ecdsa.PrivateKey, kid string, claims Claims) (string, error) {
	h, err := json.Marshal(jwtHeader{Alg: "ES256", Typ: "JWT", Kid: kid})
	if err != nil {
		return "", err
	}
	p, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signingInput := b64.EncodeToString(h) + "." + b64.EncodeToString(p)
	digest := sha256.Sum256([]byte(signingInput))
	der, err := ecdsa.SignASN1(rand.Reader, key, digest[:])
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	var sig ecdsaSig
	if _, err := asn1.Unmarshal(der, &sig); err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	raw := make([]byte, 64)
	sig.R.FillBytes(raw[:32])
	sig.S.FillBytes(raw[32:])
	return signingInput + "." + b64.EncodeToString(raw), nil
}

// verifyJWT checks the signature and returns the claims; it does not look at
// exp, which the caller compares with its own clock.
func verifyJWT(pub *ecdsa.PublicKey, kid, token string) (*Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWS compact serialization")
	}
	hb, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	var h jwtHeader
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	// Pinning alg and kid rules out "alg":"none" and tokens from another
	// sandbox instance that happen to parse.
	if h.Alg != "ES256" || h.Kid != kid {
		return nil, errors.New("unexpected alg or kid")
	}
	raw, err := b64.DecodeString(parts[2])
	if err != nil || len(raw) != 64 {
		return nil, errors.New("malformed signature")
	}
	der, err := asn1.Marshal(ecdsaSig{R: new(big.Int).SetBytes(raw[:32]), S: new(big.Int).SetBytes(raw[32:])})
	if err != nil {
		return nil, err
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.VerifyASN1(pub, digest[:], der) {
		return nil, errors.New("bad signature")
	}
	pb, err := b64.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	var c Claims
	if err := json.Unmarshal(pb, &c); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return &c, nil
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// expiresAtLayout is ISO 8601 in UTC with milliseconds, the shape
// JavaScript's toISOString and most JSON APIs emit (flow C).
const expiresAtLayout = "2006-01-02T15:04:05.000Z"

func formatExpiresAt(t time.Time) string { return t.UTC().Format(expiresAtLayout) }
