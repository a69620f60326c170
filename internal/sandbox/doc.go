// Package sandbox is a fake payment-provider token endpoint for tests and
// local development.
//
// It serves the three refreshable token flows described in docs/providers.md
// over real TLS, byte-for-byte in the shapes the real providers use, so the
// token client can be tested against the wire format rather than against
// our own assumptions:
//
//   - flow A (PathFlowA): GET with mutual TLS plus Basic username:password,
//     answering {"access_token","expires_in":"300"} with expires_in a string;
//   - flow B (PathFlowB): OAuth2 client credentials with a plain Basic
//     key:secret, answering expires_in as a number;
//   - flow C (PathFlowC): a JSON credentials POST answering 201 with a
//     camelCase body and an absolute expiry, where every new token revokes
//     the client's previous one.
//
// That last behaviour is single-active mode: on by default for flow C and
// switchable per flow (Options.SingleActiveToken, Server.SetSingleActive);
// Server.RevokedAt and Server.Revocations tell when each token was revoked
// and whether it was used afterwards. PathProtected stands in for the
// payment API itself: it accepts only tokens that Server.Valid accepts
// (signed here, unexpired, not revoked), so a test can check what a pod
// holding a token would get, and counts accepted and rejected requests per
// client (Server.APIRequests) apart from the token-request counts.
//
// Around those it offers what the operator must survive: a per-IP
// throttle with or without Retry-After, injectable faults (hangs, slow and
// huge bodies, malformed JSON, redirects, arbitrary statuses), per-client
// call counting to prove that no needless token requests are made, a count
// of TLS handshakes (Server.Handshakes) to prove that connections are
// reused, and a
// CA that issues server and client certificates in every key and bundle
// encoding providers hand out.
//
// The package depends only on the standard library and the PKCS#8/#12
// encoders, never on Kubernetes, so it can run standalone (cmd/sandbox).
package sandbox
