// Package demo runs tokenwarden locally end to end: a control plane built
// from the project's own binaries, the sandbox token provider and the
// manager as child processes, and the shipped samples of config/samples
// rewritten to point at the sandbox. It is shared by the end-to-end suite
// (test/e2e) and by `make demo` (cmd/demo), so that the demo a user watches
// is the setup the suite checks.
package demo
