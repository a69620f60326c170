// Command consumer is the payment client of the node test: once a second
// it reads the token a tokenwarden target Secret holds from the file the
// kubelet projects (-token-file) and calls the provider's protected API
// with it. With -watch-secret it reads the Secret through the API watch
// instead (the docs' advice for flow C), with its ServiceAccount's token. It logs one JSON line
// per request (made, rejected, the token's SHA-256 prefix, never the
// token) and serves the running counts on -addr /counts, so the test can
// read them.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "consumer:", err)
		os.Exit(1)
	}
}

// counts are what the test reads.
type counts struct {
	Made     int `json:"made"`
	Rejected int `json:"rejected"`
	Errors   int `json:"errors"`
	// Changes counts token changes seen in the file.
	Changes int `json:"changes"`
	// RejectedSeconds lists the Unix seconds of rejected requests.
	RejectedAt []int64 `json:"rejectedAt,omitempty"`
	// FirstSeen maps a token fingerprint to the Unix time in ms it was
	// first read, for the Secret-to-file delay.
	FirstSeen map[string]int64 `json:"firstSeen"`
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("consumer", flag.ContinueOnError)
	tokenFile := fs.String("token-file", "", "file holding the token (a mounted Secret key)")
	url := fs.String("url", "", "protected API URL, e.g. https://sandbox:8443/api/v1/payments")
	caFile := fs.String("ca", "", "CA bundle of the API's server certificate")
	header := fs.Bool("header-value", false, "the file holds the whole Authorization header value (flow D's \"Bearer ...\"), not a bare token")
	every := fs.Duration("every", time.Second, "interval between requests")
	addr := fs.String("addr", ":8080", "listen address of GET /counts")
	watchSecret := fs.String("watch-secret", "", "read the token from this Secret of the Pod's namespace through the API watch instead of -token-file")
	watchKey := fs.String("watch-key", "authorization", "the key of -watch-secret")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*tokenFile == "") == (*watchSecret == "") || *url == "" {
		return errors.New("-url and one of -token-file and -watch-secret are required")
	}
	value := func() string {
		b, err := os.ReadFile(*tokenFile)
		if err != nil {
			return ""
		}
		return string(b)
	}
	if *watchSecret != "" {
		w, err := watchValue(ctx, *watchSecret, *watchKey)
		if err != nil {
			return err
		}
		value = w
	}
	pool := x509.NewCertPool()
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return fmt.Errorf("-ca: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("-ca %s: no certificate", *caFile)
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}

	var mu sync.Mutex
	c := counts{FirstSeen: map[string]int64{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /counts", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c)
	})
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.ListenAndServe() }()
	defer func() { _ = srv.Close() }()

	last := ""
	tick := time.NewTicker(*every)
	defer tick.Stop()
	// A poll of the file far more often than the requests, so that the
	// moment a new token appears is known to 50 ms.
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	read := func() string {
		v := strings.TrimSpace(value())
		if v != "" && v != last {
			fp := fingerprint(v)
			mu.Lock()
			if _, seen := c.FirstSeen[fp]; !seen {
				c.FirstSeen[fp] = time.Now().UnixMilli()
				if last != "" {
					c.Changes++
				}
			}
			mu.Unlock()
			last = v
		}
		return v
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
			read()
		case <-tick.C:
			tok := read()
			auth := "Bearer " + tok
			if *header {
				auth = tok
			}
			status, err := call(ctx, hc, *url, auth)
			mu.Lock()
			c.Made++
			switch {
			case err != nil:
				c.Errors++
			case status == http.StatusUnauthorized || status == http.StatusForbidden:
				c.Rejected++
				c.RejectedAt = append(c.RejectedAt, time.Now().Unix())
			}
			line, _ := json.Marshal(map[string]any{"made": c.Made, "rejected": c.Rejected, "errors": c.Errors, "status": status, "token": fingerprint(tok)})
			mu.Unlock()
			fmt.Println(string(line))
		}
	}
}

func call(ctx context.Context, hc *http.Client, url, auth string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", auth)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer func() { _ = resp.Body.Close() }()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// fingerprint names a token in logs without revealing it.
func fingerprint(tok string) string {
	if tok == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:6])
}
