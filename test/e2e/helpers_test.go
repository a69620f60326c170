//go:build e2e

// Package e2e runs the built operator (bin/manager) and the built sandbox
// provider (bin/sandbox) as separate processes against a real control plane,
// installs the CRD and RBAC as shipped, and checks the outcome with kubectl
// as a user would. Run it with `make test-e2e`, which builds the binaries and
// the control plane first.
package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/testenv"
)

var root = testenv.Root()

// binary returns the path of a built binary: $env when set, else bin/<name>.
func binary(t *testing.T, env, name string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join(root, "bin", name)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found (%v); run `make test-e2e`, which builds it", p, err)
	}
	return p
}

// kubectl runs /usr/bin/kubectl (or the first kubectl on PATH) with a
// kubeconfig, as a user in another terminal would.
type kubectl struct {
	t          *testing.T
	kubeconfig string
}

func (k kubectl) cmd(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig=" + k.kubeconfig}, args...)...)
}

// try runs kubectl and returns its stdout, or an error holding its stderr.
func (k kubectl) try(stdin []byte, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := k.cmd(ctx, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// run is try that fails the test.
func (k kubectl) run(args ...string) string {
	k.t.Helper()
	out, err := k.try(nil, args...)
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

// apply pipes a manifest into kubectl apply -f -.
func (k kubectl) apply(manifest []byte) string {
	k.t.Helper()
	out, err := k.try(manifest, "apply", "-f", "-")
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

// getJSON runs kubectl get ... -o json into v.
func (k kubectl) getJSON(v any, args ...string) error {
	out, err := k.try(nil, append(append([]string{"get"}, args...), "-o", "json")...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

func (k kubectl) mustGetJSON(v any, args ...string) {
	k.t.Helper()
	if err := k.getJSON(v, args...); err != nil {
		k.t.Fatal(err)
	}
}

// jwtClaims decodes the payload of a JWT without checking its signature
// (the sandbox checks that; here we only want to know whose token it is).
func jwtClaims(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a JWT: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	var c map[string]any
	return c, json.Unmarshal(b, &c)
}

// eventually polls f every interval until it returns "" or timeout passes.
func eventually(t *testing.T, timeout, interval time.Duration, f func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		why := f()
		if why == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, why)
		}
		time.Sleep(interval)
	}
}
