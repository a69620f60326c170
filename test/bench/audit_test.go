package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func auditLine(user, verb, res, ns, name string, at time.Time) string {
	return fmt.Sprintf(`{"kind":"Event","stage":"ResponseComplete","verb":%q,"user":{"username":%q},"objectRef":{"resource":%q,"namespace":%q,"name":%q},"responseStatus":{"code":200},"requestReceivedTimestamp":%q}`+"\n",
		verb, user, res, ns, name, at.UTC().Format(time.RFC3339Nano))
}

// The follower counts the operator's requests by verb and resource, and
// says so loudly when the API server rotates the file under it.
func TestAuditFollowerCountsAndDetectsRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	now := time.Now()
	lines := auditLine(operatorUser, "get", "secrets", "ns", "src", now) +
		auditLine(operatorUser, "update", "secrets", "ns", "t-00001", now) +
		auditLine(operatorUser, "patch", "apicredentials", "ns", "c-00001", now) +
		auditLine(loadUser, "update", "secrets", "ns", "t-00002", now) +
		auditLine("someone-else", "get", "secrets", "ns", "x", now)
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &auditLog{path: path}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.follow(ctx)
	deadline := time.Now().Add(5 * time.Second)
	for a.bytesRead() < int64(len(lines)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	op := a.count(false, now.Add(-time.Second), now.Add(time.Second), nil)
	if op.Total != 3 || op.ByVerb["get secrets"] != 1 || op.writes().Total != 2 {
		t.Fatalf("operator requests %+v, want 3 (1 get, 2 writes)", op)
	}
	if load := a.count(true, now.Add(-time.Second), now.Add(time.Second), nil); load.Total != 1 {
		t.Fatalf("load generator requests %+v, want 1", load)
	}
	if err := a.checkCounted("phase", 10, op); err != nil {
		t.Fatalf("checkCounted with requests: %v", err)
	}
	if err := a.checkCounted("phase", 10, newRequestCount()); err == nil || !strings.Contains(err.Error(), "counted no request") {
		t.Fatalf("checkCounted with refreshes and no requests: %v, want an error", err)
	}

	// Rotation as lumberjack does it: rename, then a new file.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(auditLine(operatorUser, "get", "secrets", "ns", "src", now)), 0o600); err != nil {
		t.Fatal(err)
	}
	for a.err() == nil && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.err(); err == nil || !strings.Contains(err.Error(), "rotated") {
		t.Fatalf("after a rotation: %v, want the follower to report it", err)
	}
	if err := a.checkCounted("phase", 10, op); err == nil {
		t.Fatal("checkCounted after the follower stopped: nil, want an error")
	}
}
