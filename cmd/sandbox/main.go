// Command sandbox runs the sandbox token provider standalone, for trying
// the operator against a local "payment provider" by hand or from scripts.
//
//	sandbox --client demo:s3cret --out ./sandbox-certs
//
// It serves flows A, B and C (see internal/sandbox) over TLS, writes the CA
// and per-client certificates to --out, and answers GET /calls with the
// per-client request counts so tooling can check how often the operator
// asked for a token.
//
// It also serves the protected payment API resource GET /api/v1/payments
// (sandbox.PathProtected): with "Authorization: Bearer <token>" it answers
// 200 if the token is one the sandbox issued, unexpired and not revoked,
// and 401 otherwise, so a pod (or a script) can check the token it holds.
// GET /api-requests answers {"<client id>": {"accepted": n, "rejected": m}}
// for those requests, "" holding the ones no client can be named for; they
// are not token requests and do not appear under /calls.
//
// --single-active-token lists the flows in which every new token revokes
// the client's previous tokens of that flow (default C, as flow C's
// provider does; --single-active-token= turns it off everywhere).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tokenwarden/tokenwarden/internal/sandbox"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sandbox:", err)
		os.Exit(1)
	}
}

// client is one --client id:secret.
type client struct{ id, secret string }

type clientFlag []client

func (c *clientFlag) String() string {
	ids := make([]string, len(*c))
	for i, cl := range *c {
		ids[i] = cl.id // never echo secrets, not even in --help defaults
	}
	return strings.Join(ids, ",")
}

func (c *clientFlag) Set(v string) error {
	id, secret, ok := strings.Cut(v, ":")
	if !ok || id == "" || secret == "" {
		return errors.New("want id:secret")
	}
	*c = append(*c, client{id, secret})
	return nil
}

// flowsFlag is --single-active-token: a set of flows, given comma-separated
// and/or repeatedly. The first use replaces the default.
type flowsFlag struct {
	flows map[string]bool
	set   bool
}

func (f *flowsFlag) String() string {
	if f == nil {
		return ""
	}
	var out []string
	for _, fl := range []string{"A", "B", "C"} {
		if f.flows[fl] {
			out = append(out, fl)
		}
	}
	return strings.Join(out, ",")
}

func (f *flowsFlag) Set(v string) error {
	if !f.set {
		f.flows, f.set = map[string]bool{}, true
	}
	for _, fl := range strings.Split(v, ",") {
		fl = strings.ToUpper(strings.TrimSpace(fl))
		switch fl {
		case "":
		case "A", "B", "C":
			f.flows[fl] = true
		default:
			return fmt.Errorf("unknown flow %q, want A, B or C", fl)
		}
	}
	return nil
}

// options returns the set as Options.SingleActiveToken, naming every flow.
func (f *flowsFlag) options() map[string]bool {
	return map[string]bool{"A": f.flows["A"], "B": f.flows["B"], "C": f.flows["C"]}
}

type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// safeID keeps client ids usable as file names under --out.
var safeID = regexp.MustCompile(`^[A-Za-z0-9_@-][A-Za-z0-9._@-]*$`)

// run is main without the process: it serves until ctx ends. started, if
// not nil, is called with the running server (tests use it).
func run(ctx context.Context, args []string, stdout, stderr io.Writer, started func(*sandbox.Server)) error {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var clients clientFlag
	var hostnames stringsFlag
	singleActive := flowsFlag{flows: map[string]bool{}}
	for _, f := range []string{"A", "B", "C"} {
		singleActive.flows[f] = sandbox.DefaultSingleActive(f)
	}
	addr := fs.String("addr", "127.0.0.1:8443", "listen address")
	fs.Var(&clients, "client", "client credentials `id:secret`, valid for every flow (repeatable)")
	fs.Var(&hostnames, "hostname", "extra DNS name or IP for the server certificate (repeatable); localhost, 127.0.0.1 and ::1 are always included")
	lifeA := fs.Duration("lifetime-a", sandbox.DefaultLifetimeA, "token lifetime of flow A")
	lifeB := fs.Duration("lifetime-b", sandbox.DefaultLifetimeB, "token lifetime of flow B")
	lifeC := fs.Duration("lifetime-c", sandbox.DefaultLifetimeC, "token lifetime of flow C")
	perMinute := fs.Int("throttle-per-minute", 0, "token requests allowed per client IP and minute before 429 (0 = unlimited)")
	retryAfter := fs.String("retry-after", "", "Retry-After value sent with 429 (seconds or an HTTP-date; empty = no header)")
	out := fs.String("out", "", "directory to write ca.crt and, per client, <id>.crt, <id>.key and <id>.p12")
	passphrase := fs.String("p12-passphrase", "changeit", "passphrase of the <id>.p12 files")
	legacy := fs.Bool("p12-legacy", false, "encode <id>.p12 with legacy 3DES/SHA-1 instead of AES/SHA-256")
	rsaKeys := fs.Bool("rsa", false, "issue RSA-2048 client keys instead of ECDSA P-256")
	requireCert := fs.Bool("require-client-certificate", false, "demand a client certificate in the TLS handshake on every path, not only flow A")
	fs.Var(&singleActive, "single-active-token", "`flows` (comma-separated A,B,C; repeatable) in which every new token revokes the client's previous tokens of that flow, as flow C's provider does; empty = none. "+
		"The always-served payment API GET "+sandbox.PathProtected+" (Authorization: Bearer <token>) answers 401 to revoked and expired tokens; GET "+pathAPIRequests+" counts its answers per client")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *out != "" {
		for _, c := range clients {
			if !safeID.MatchString(c.id) {
				return fmt.Errorf("client id %q cannot be used as a file name under --out", c.id)
			}
		}
	}

	ca, err := sandbox.NewCA("tokenwarden sandbox CA")
	if err != nil {
		return err
	}
	// The /calls handler is mounted before the server exists; it answers 503
	// in the instant between listening and Start returning.
	var current atomic.Pointer[sandbox.Server]
	srv, err := sandbox.Start(sandbox.Options{
		Addr:                     *addr,
		CA:                       ca,
		Hostnames:                hostnames,
		RequireClientCertificate: *requireCert,
		SingleActiveToken:        singleActive.options(),
		Fallback:                 callsHandler(&current),
		ErrorLog:                 log.New(stderr, "sandbox: ", log.LstdFlags),
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	current.Store(srv)
	// SetLifetime rather than Options so that an explicit 0 means 0, not
	// "default".
	srv.SetLifetime("A", *lifeA)
	srv.SetLifetime("B", *lifeB)
	srv.SetLifetime("C", *lifeC)
	srv.SetThrottle(*perMinute, *retryAfter)
	for _, c := range clients {
		srv.AddClient(c.id, c.secret)
	}

	if *out != "" {
		keyType := sandbox.KeyECDSA
		if *rsaKeys {
			keyType = sandbox.KeyRSA
		}
		if err := writeFiles(*out, ca, clients, keyType, *passphrase, *legacy); err != nil {
			return err
		}
	}

	fmt.Fprintf(stdout, "sandbox token provider on %s\n", srv.URL)
	fmt.Fprintf(stdout, "  flow A  GET   %s   (client certificate + Basic username:password)\n", srv.FlowURL("A"))
	fmt.Fprintf(stdout, "  flow B  POST  %s   (Basic key:secret, grant_type=client_credentials)\n", srv.FlowURL("B"))
	fmt.Fprintf(stdout, "  flow C  POST  %s   (JSON clientId/clientSecret)\n", srv.FlowURL("C"))
	fmt.Fprintf(stdout, "  api     GET   %s%s   (Authorization: Bearer <token>)\n", srv.URL, sandbox.PathProtected)
	fmt.Fprintf(stdout, "  calls   GET   %s/calls   (token requests per client)\n", srv.URL)
	fmt.Fprintf(stdout, "  counts  GET   %s%s   (accepted and rejected API requests per client)\n", srv.URL, pathAPIRequests)
	if s := singleActive.String(); s != "" {
		fmt.Fprintf(stdout, "single-active tokens (a new token revokes the previous ones) in flow %s\n", s)
	}
	if len(clients) == 0 {
		fmt.Fprintln(stdout, "no --client given: every token request will be rejected")
	}
	if *out != "" {
		fmt.Fprintf(stdout, "CA certificate and client certificates in %s\n", *out)
	} else {
		fmt.Fprintf(stdout, "no --out given; CA certificate:\n%s", ca.CertPEM)
	}
	if started != nil {
		started(srv)
	}

	<-ctx.Done()
	fmt.Fprintln(stdout, "shutting down")
	srv.Close()
	return nil
}

// pathAPIRequests reports the sandbox.PathProtected counters. /calls keeps
// its shape (a flat id -> count map, which internal/demo decodes), so they
// get a path of their own.
const (
	pathAPIRequests = "/api-requests"
	pathAppToken    = "/console/app-token" //nolint:gosec // a URL path, not a credential
)

// callsHandler serves GET /calls (token requests per client id) and GET
// /api-requests (accepted and rejected sandbox.PathProtected requests per
// client id).
func callsHandler(current *atomic.Pointer[sandbox.Server]) http.Handler {
	mux := http.NewServeMux()
	serve := func(report func(*sandbox.Server) any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			srv := current.Load()
			if srv == nil {
				http.Error(w, "starting", http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(report(srv))
		}
	}
	mux.HandleFunc("GET /calls", serve(func(s *sandbox.Server) any { return s.AllCalls() }))
	mux.HandleFunc("GET "+pathAPIRequests, serve(func(s *sandbox.Server) any { return s.AllAPIRequests() }))
	// The console of the static flow (D): POST /console/app-token?client=ID&exp=UNIX
	// answers {"token": "<JWT>"}, an application token PathProtected accepts.
	mux.HandleFunc("POST "+pathAppToken, func(w http.ResponseWriter, r *http.Request) {
		srv := current.Load()
		if srv == nil {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		exp, err := strconv.ParseInt(r.URL.Query().Get("exp"), 10, 64)
		id := r.URL.Query().Get("client")
		if err != nil || id == "" {
			http.Error(w, "client and exp (Unix seconds) are required", http.StatusBadRequest)
			return
		}
		tok, err := srv.AppToken(id, time.Unix(exp, 0))
		if err != nil {
			http.Error(w, "signing failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"token": tok})
	})
	return mux
}

// writeFiles writes the CA certificate and a fresh client certificate per
// client. Keys and bundles are 0600: they are credentials even here, and
// users copy them into Secrets.
func writeFiles(dir string, ca *sandbox.CA, clients []client, keyType sandbox.KeyType, passphrase string, legacy bool) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "ca.crt"), ca.CertPEM, 0o644); err != nil {
		return err
	}
	for _, c := range clients {
		cc, err := ca.IssueClient(c.id, keyType, time.Time{}, time.Time{})
		if err != nil {
			return err
		}
		pfx, err := cc.PKCS12(passphrase, legacy)
		if err != nil {
			return err
		}
		for name, f := range map[string]struct {
			data []byte
			mode os.FileMode
		}{
			c.id + ".crt": {cc.CertPEM, 0o644},
			c.id + ".key": {cc.KeyPEM, 0o600},
			c.id + ".p12": {pfx, 0o600},
		} {
			if err := writeFile(filepath.Join(dir, name), f.data, f.mode); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeFile is os.WriteFile that also tightens the mode of an existing file,
// which os.WriteFile leaves as it was.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}
