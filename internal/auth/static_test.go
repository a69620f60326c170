package auth

import (
	"strings"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/failure"
)

func TestComposeStatic(t *testing.T) {
	exp := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	jwt := jwtExp(exp)
	noExp := testJWT(`{"sub":"shop"}`)
	tests := []struct {
		name, jwt, secret string
		want              string
		wantExp           time.Time
		hasExp, wantErr   bool
	}{
		{name: "jwt only", jwt: jwt, want: "Bearer " + jwt, wantExp: exp, hasExp: true},
		{name: "secret and jwt", jwt: jwt, secret: "s3cr3t", want: "Bearer s3cr3t." + jwt, wantExp: exp, hasExp: true},
		{name: "trailing newlines trimmed", jwt: jwt + "\n", secret: "s3cr3t\r\n", want: "Bearer s3cr3t." + jwt, wantExp: exp, hasExp: true},
		{name: "jwt without exp", jwt: noExp, want: "Bearer " + noExp},
		{name: "opaque token", jwt: "opaque", want: "Bearer opaque"},
		{name: "empty jwt", jwt: " \n", wantErr: true},
		{name: "control character inside", jwt: "a\r\nb", wantErr: true},
		{name: "space inside the secret", jwt: jwt, secret: "a b", wantErr: true},
		{name: "oversized", jwt: strings.Repeat("a", MaxTokenBytes+1), wantErr: true},
		{name: "oversized together", jwt: strings.Repeat("a", MaxTokenBytes-1), secret: "bb", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, gotExp, hasExp, err := ComposeStatic(tt.jwt, tt.secret)
			if tt.wantErr {
				mustClass(t, err, failure.InvalidCredentials)
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if got != tt.want || hasExp != tt.hasExp || !gotExp.Equal(tt.wantExp) {
				t.Fatalf("got %q, %v, %v; want %q, %v, %v", got, gotExp, hasExp, tt.want, tt.wantExp, tt.hasExp)
			}
		})
	}
}
