package auth

import (
	"strings"
	"time"
)

// ComposeStatic builds the Authorization header of flow D from a
// console-issued JWT and its optional secret: "Bearer {secret}.{jwt}", or
// "Bearer {jwt}" without a secret. The expiry is the JWT's exp claim when it
// has one; a static token cannot be refreshed, so the caller only watches it.
//
// Surrounding whitespace is trimmed because values pasted into Secrets (or
// created with --from-file) usually end in a newline. Errors are
// *InvalidCredentialsError: the values come from a Secret the user must fix.
func ComposeStatic(jwt, secret string) (authorization string, expiresAt time.Time, hasExpiry bool, err error) {
	jwt = strings.TrimSpace(jwt)
	secret = strings.TrimSpace(secret)
	if jwt == "" {
		return "", time.Time{}, false, staticErr("the token is empty")
	}
	if problem := checkStaticPart(jwt); problem != "" {
		return "", time.Time{}, false, staticErr("the token " + problem)
	}
	if secret != "" {
		if problem := checkStaticPart(secret); problem != "" {
			return "", time.Time{}, false, staticErr("the secret " + problem)
		}
	}
	value := jwt
	if secret != "" {
		value = secret + "." + jwt
	}
	if len(value) > MaxTokenBytes {
		return "", time.Time{}, false, staticErr("the token and secret together exceed 64 KiB")
	}
	expiresAt, hasExpiry = JWTExpiry(jwt)
	return "Bearer " + value, expiresAt, hasExpiry, nil
}

func staticErr(problem string) error {
	return &InvalidCredentialsError{Problem: "static token: " + problem}
}

// checkStaticPart rejects what cannot go into a header value as one
// credential: oversize, control characters, inner whitespace.
func checkStaticPart(v string) string {
	if len(v) > MaxTokenBytes {
		return "exceeds 64 KiB"
	}
	if p := checkToken(v); p != "" {
		return "contains control characters or invalid UTF-8"
	}
	if strings.ContainsAny(v, " \t") {
		return "contains whitespace"
	}
	return ""
}
