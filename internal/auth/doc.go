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
package auth
