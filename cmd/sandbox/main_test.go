package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/tokenwarden/tokenwarden/internal/sandbox"
)

// syncBuffer lets the test read what run prints while run is still going.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	var stdout, stderr syncBuffer
	started := make(chan *sandbox.Server, 1)
	runCtx, stop := context.WithCancel(t.Context())
	defer stop()
	errc := make(chan error, 1)
	go func() {
		errc <- run(runCtx, []string{
			"--addr", "127.0.0.1:0",
			"--client", "alice:pa:ss",
			"--client", "bob:x",
			"--out", dir,
			"--p12-passphrase", "hunter2",
			"--lifetime-b", "42s",
			"--throttle-per-minute", "100",
		}, &stdout, &stderr, func(s *sandbox.Server) { started <- s })
	}()
	var srv *sandbox.Server
	select {
	case srv = <-started:
	case err := <-errc:
		t.Fatalf("run: %v\n%s", err, stderr.String())
	case <-time.After(5 * time.Second):
		t.Fatal("not started")
	}
	for _, want := range []string{srv.URL + sandbox.PathFlowA, srv.URL + sandbox.PathFlowB, srv.URL + sandbox.PathFlowC, srv.URL + "/calls",
		srv.URL + sandbox.PathProtected, srv.URL + "/api-requests", "single-active tokens (a new token revokes the previous ones) in flow C"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("output lacks %s:\n%s", want, stdout.String())
		}
	}
	if strings.Contains(stdout.String()+stderr.String(), "pa:ss") {
		t.Error("a client secret was printed")
	}

	// Files: CA, and per client a certificate, key and PKCS#12 bundle.
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	for _, id := range []string{"alice", "bob"} {
		for name, mode := range map[string]os.FileMode{id + ".crt": 0o644, id + ".key": 0o600, id + ".p12": 0o600} {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != mode {
				t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
			}
		}
		pfx, _ := os.ReadFile(filepath.Join(dir, id+".p12"))
		if _, cert, _, err := pkcs12.DecodeChain(pfx, "hunter2"); err != nil || cert.Subject.CommonName != id {
			t.Errorf("%s.p12: %v", id, err)
		}
	}

	// The written files are enough for a flow-A client.
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "alice.crt"), filepath.Join(dir, "alice.key"))
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}}}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+sandbox.PathFlowA, nil)
	req.SetBasicAuth("alice", "pa:ss")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("flow A with the written files: %d", resp.StatusCode)
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+sandbox.PathFlowB, strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("bob", "x")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasSuffix(string(body), `"expires_in":42}`) {
		t.Errorf("--lifetime-b 42s: %s", body)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &tok); err != nil {
		t.Fatal(err)
	}

	// The payment API takes bob's token, and nothing else; its requests
	// are no token requests.
	for auth, want := range map[string]int{"Bearer " + tok.AccessToken: 200, "Bearer nope": 401} {
		req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+sandbox.PathProtected, nil)
		req.Header.Set("Authorization", auth)
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", sandbox.PathProtected, resp.StatusCode, want)
		}
	}
	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/api-requests", nil)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var api map[string]sandbox.APICount
	err = json.NewDecoder(resp.Body).Decode(&api)
	resp.Body.Close()
	if want := (map[string]sandbox.APICount{"bob": {Accepted: 1}, "": {Rejected: 1}}); err != nil || len(api) != 2 || api["bob"] != want["bob"] || api[""] != want[""] {
		t.Errorf("/api-requests = %v, %v; want %v", api, err, want)
	}

	req, _ = http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/calls", nil)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var calls map[string]int
	err = json.NewDecoder(resp.Body).Decode(&calls)
	resp.Body.Close()
	if err != nil || calls["alice"] != 1 || calls["bob"] != 1 || len(calls) != 2 {
		t.Errorf("/calls = %v, %v", calls, err)
	}

	stop()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run did not stop")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"client without secret": {"--client", "alice"},
		"unsafe id with --out":  {"--client", "../x:y", "--out", t.TempDir()},
		"stray argument":        {"serve"},
		"bad duration":          {"--lifetime-a", "5"},
		"single-active flow D":  {"--single-active-token", "D"},
		"single-active typo":    {"--single-active-token", "A,X"},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			if err := run(t.Context(), append([]string{"--addr", "127.0.0.1:0"}, args...), &out, &out, nil); err == nil {
				t.Error("run accepted the flags")
			}
		})
	}
}

func TestSingleActiveTokenFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // flows in single-active mode
	}{
		{"default", nil, "C"},
		{"C", []string{"--single-active-token=C"}, "C"},
		{"none", []string{"--single-active-token="}, ""},
		{"lower case list replaces the default", []string{"--single-active-token", "a,b"}, "AB"},
		{"repeated", []string{"--single-active-token=A", "--single-active-token=C"}, "AC"},
		{"spaces and empty items", []string{"--single-active-token", " b , "}, "B"},
		{"all", []string{"--single-active-token=A,B,C"}, "ABC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out syncBuffer
			started := make(chan *sandbox.Server, 1)
			ctx, stop := context.WithCancel(t.Context())
			errc := make(chan error, 1)
			go func() {
				errc <- run(ctx, append([]string{"--addr", "127.0.0.1:0"}, tc.args...), &out, &out,
					func(s *sandbox.Server) { started <- s })
			}()
			select {
			case srv := <-started:
				got := ""
				for _, f := range []string{"A", "B", "C"} {
					if srv.SingleActive(f) {
						got += f
					}
				}
				if got != tc.want {
					t.Errorf("single-active flows %q, want %q", got, tc.want)
				}
				line := "single-active tokens (a new token revokes the previous ones) in flow " + strings.Join(strings.Split(tc.want, ""), ",") + "\n"
				if printed := strings.Contains(out.String(), line); printed != (tc.want != "") {
					t.Errorf("output (want %q printed: %v):\n%s", line, tc.want != "", out.String())
				}
			case err := <-errc:
				t.Fatalf("run: %v\n%s", err, out.String())
			case <-time.After(5 * time.Second):
				t.Fatal("not started")
			}
			stop()
			if err := <-errc; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
}
