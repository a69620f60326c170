// Package auth talks to the token endpoints of payment providers: it builds
// one HTTPS request from a fully resolved description (URL, Basic
// credentials, client certificate, form, JSON or header values), sends it
// under hard limits, and turns the answer into a Token or into an error of a
// class the caller can act on.
//
// The package knows nothing of Kubernetes on purpose: the controller resolves
// Secrets into plain values before calling it, so everything here can be
// tested against a local HTTPS server without a cluster.
//
// Every error built here carries safe facts only (host, HTTP status code, a
// standard RFC 6749 error code, a fixed description of the problem). Bodies,
// headers, URL paths and queries, credentials and tokens never reach an error
// string, because error strings end up in conditions, events and logs.
//
// Connections are kept alive and reused, because a TLS handshake per refresh
// is most of the operator's CPU at a few thousand credentials. A connection
// is bound to what it was opened with (the client certificate it presented,
// the roots it verified the server against), so a Client keeps one
// transport per identity: scheme and host:port, every certificate of the
// client chain and its private key, the CA bundle and the per-call timeout,
// keyed by an HMAC under a random in-memory key. A request only ever gets a
// connection of its own identity's transport; a request whose roots are a
// pool without their PEM bytes cannot be identified and gets a connection of
// its own. Every dial still goes through the address policy, and after a
// transport failure the transport's idle connections are closed so that a
// half-open one is not reused.
package auth
