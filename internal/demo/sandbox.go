package demo

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// SandboxOptions configure StartSandbox.
type SandboxOptions struct {
	// Binary is the built cmd/sandbox (bin/sandbox).
	Binary string
	// Dir receives the CA and client certificates and sandbox.log.
	Dir string
	// Clients are the client ids and secrets the sandbox accepts.
	Clients map[string]string
	// Passphrase of the PKCS#12 files written for each client.
	Passphrase string
	// Lifetime of the tokens of every flow (A, B and C).
	Lifetime time.Duration
	// ExtraArgs are appended to the command line, e.g.
	// --throttle-per-minute=1 --retry-after=5.
	ExtraArgs []string
}

// Sandbox is a running bin/sandbox process.
type Sandbox struct {
	*Process
	URL     string // https://127.0.0.1:port
	Dir     string
	LogPath string
	caPEM   []byte
	client  *http.Client
}

// StartSandbox runs the sandbox provider on a free loopback port and waits
// until it has written its certificates and printed its URL.
func StartSandbox(opts SandboxOptions) (*Sandbox, error) {
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	args := []string{
		"--addr=127.0.0.1:0",
		"--out=" + opts.Dir,
		"--p12-passphrase=" + opts.Passphrase,
	}
	if opts.Lifetime > 0 {
		for _, f := range []string{"a", "b", "c"} {
			args = append(args, fmt.Sprintf("--lifetime-%s=%s", f, opts.Lifetime))
		}
	}
	ids := make([]string, 0, len(opts.Clients))
	for id := range opts.Clients {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		args = append(args, "--client="+id+":"+opts.Clients[id])
	}
	args = append(args, opts.ExtraArgs...)

	logPath := filepath.Join(opts.Dir, "sandbox.log")
	logFile, err := openLog(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(opts.Binary, args...)
	cmd.Stderr = logFile
	// An os.Pipe rather than StdoutPipe: Wait runs concurrently and must not
	// close the reading end under the scanner.
	stdout, w, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	cmd.Stdout = w
	proc, err := startProcess("sandbox", cmd)
	w.Close()
	if err != nil {
		stdout.Close()
		logFile.Close()
		return nil, err
	}
	urls := make(chan string, 1)
	go func() {
		defer logFile.Close()
		defer stdout.Close()
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			// The URL line comes before the certificates line, and the files
			// are written before either is printed.
			if u, ok := strings.CutPrefix(line, "sandbox token provider on "); ok && !sent {
				urls <- strings.TrimSpace(u)
				sent = true
			}
		}
		_, _ = io.Copy(logFile, stdout)
	}()
	var url string
	select {
	case url = <-urls:
	case <-proc.Done():
		_, err := proc.Exited()
		return nil, fmt.Errorf("sandbox exited before it was ready (%w); see %s", err, logPath)
	case <-time.After(20 * time.Second):
		_ = proc.Stop(2 * time.Second)
		return nil, fmt.Errorf("sandbox did not print its URL within 20s; see %s", logPath)
	}
	ca, err := os.ReadFile(filepath.Join(opts.Dir, "ca.crt"))
	if err != nil {
		_ = proc.Stop(2 * time.Second)
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		_ = proc.Stop(2 * time.Second)
		return nil, errors.New("sandbox ca.crt holds no certificate")
	}
	return &Sandbox{
		Process: proc,
		URL:     url,
		Dir:     opts.Dir,
		LogPath: logPath,
		caPEM:   ca,
		client: &http.Client{
			Timeout:   5 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
		},
	}, nil
}

// BaseURL implements Provider.
func (s *Sandbox) BaseURL() string { return s.URL }

// CACertPEM implements Provider.
func (s *Sandbox) CACertPEM() []byte { return s.caPEM }

// ClientFile implements Provider.
func (s *Sandbox) ClientFile(clientID, ext string) ([]byte, error) {
	return os.ReadFile(filepath.Join(s.Dir, clientID+"."+ext))
}

// HTTPClient trusts the sandbox CA.
func (s *Sandbox) HTTPClient() *http.Client { return s.client }

// Calls returns GET /calls: how many token requests each client id made,
// successful or not.
func (s *Sandbox) Calls(ctx context.Context) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/calls", nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /calls: %s", resp.Status)
	}
	out := map[string]int{}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("GET /calls: %w", err)
	}
	return out, nil
}

// AppToken asks the sandbox's console for a static application token (flow
// D) for subject, valid until exp, which its protected API accepts.
func (s *Sandbox) AppToken(subject string, exp time.Time) (string, error) {
	u := fmt.Sprintf("%s/console/app-token?client=%s&exp=%d", s.URL, url.QueryEscape(subject), exp.Unix())
	req, err := http.NewRequest(http.MethodPost, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST /console/app-token: %s", resp.Status)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("POST /console/app-token: %w", err)
	}
	if out.Token == "" {
		return "", errors.New("POST /console/app-token: no token in the answer")
	}
	return out.Token, nil
}
