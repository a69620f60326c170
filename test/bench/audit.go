package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// auditPolicy logs, at Metadata level and once per request (at
// ResponseComplete), every write to Secrets and APICredentials, status
// included, and nothing else.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
  resources:
  - group: ""
    resources: ["secrets"]
  - group: "auth.tokenwarden.io"
    resources: ["apicredentials", "apicredentials/status"]
- level: None
`

// operatorUserAgent is how the manager's requests show in the audit log:
// client-go's default user agent starts with the binary's name.
const operatorUserAgent = "manager/"

// auditEvent is one write recorded by the API server.
type auditEvent struct {
	at       time.Time // requestReceivedTimestamp
	ns       string
	name     string
	kind     string // secrets, apicredentials, apicredentials/status
	verb     string
	code     int
	operator bool
}

// auditLog follows the API server's audit log file and keeps the writes.
type auditLog struct {
	path string

	mu       sync.Mutex
	events   []auditEvent // operator writes only
	others   int          // writes by anyone else (the bench itself)
	offset   int64
	parseErr int
}

func (a *auditLog) follow(ctx context.Context) {
	var f *os.File
	for f == nil {
		var err error
		if f, err = os.Open(a.path); err != nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var partial []byte
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			partial = append(partial, line...)
		}
		if err == nil {
			a.add(partial)
			partial = partial[:0]
			continue
		}
		if !errors.Is(err, io.EOF) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *auditLog) add(line []byte) {
	var ev struct {
		Verb      string `json:"verb"`
		UserAgent string `json:"userAgent"`
		ObjectRef *struct {
			Resource    string `json:"resource"`
			Subresource string `json:"subresource"`
			Namespace   string `json:"namespace"`
			Name        string `json:"name"`
		} `json:"objectRef"`
		ResponseStatus *struct {
			Code int `json:"code"`
		} `json:"responseStatus"`
		RequestReceived time.Time `json:"requestReceivedTimestamp"`
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.offset += int64(len(line))
	if err := json.Unmarshal(line, &ev); err != nil || ev.ObjectRef == nil {
		a.parseErr++
		return
	}
	if !strings.HasPrefix(ev.UserAgent, operatorUserAgent) {
		a.others++
		return
	}
	e := auditEvent{at: ev.RequestReceived, ns: ev.ObjectRef.Namespace, name: ev.ObjectRef.Name, kind: ev.ObjectRef.Resource, verb: ev.Verb, operator: true}
	if ev.ObjectRef.Subresource != "" {
		e.kind += "/" + ev.ObjectRef.Subresource
	}
	if ev.ResponseStatus != nil {
		e.code = ev.ResponseStatus.Code
	}
	a.events = append(a.events, e)
}

// sync waits until everything the API server wrote to the log up to now
// has been read (at most 30 s). Call it a second or two after a window ends.
func (a *auditLog) sync() {
	st, err := os.Stat(a.path)
	if err != nil {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		a.mu.Lock()
		done := a.offset >= st.Size()
		a.mu.Unlock()
		if done {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeCount is what the operator wrote in one namespace over a window.
type writeCount struct {
	Total      int            `json:"total"`
	Failed     int            `json:"failed"` // answered >= 400 (e.g. 409 conflicts)
	ByKindVerb map[string]int `json:"by_kind_verb"`
}

// count returns the operator's writes in namespace ns received in [from, to).
func (a *auditLog) count(ns string, from, to time.Time) writeCount {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Events are appended roughly in time order; a binary search on a
	// sorted copy is not worth it at these sizes.
	c := writeCount{ByKindVerb: map[string]int{}}
	for _, e := range a.events {
		if e.ns != ns || e.at.Before(from) || !e.at.Before(to) {
			continue
		}
		c.Total++
		if e.code >= 400 {
			c.Failed++
		}
		c.ByKindVerb[e.kind+" "+e.verb]++
	}
	return c
}

// perRefresh attributes the operator's writes in ns to refreshes without
// edge effects: for each credential (APICredential c-NNNNN, target Secret
// t-NNNNN) it takes the successful Secret updates in [from, to), s1 < … <
// sm, and counts every write of that credential in [s1, sm): the writes of
// the m-1 complete refresh cycles that start at s1 … s(m-1), whatever
// happens between them. It returns the writes and the refreshes (Σ m-1).
func (a *auditLog) perRefresh(ns string, from, to time.Time) (writeCount, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	type cred struct {
		updates []time.Time
		events  []auditEvent
	}
	creds := map[string]*cred{}
	for _, e := range a.events {
		if e.ns != ns || e.at.Before(from) || !e.at.Before(to) || len(e.name) < 3 {
			continue
		}
		key := e.name[2:] // c-00012 and t-00012 share 00012
		c := creds[key]
		if c == nil {
			c = &cred{}
			creds[key] = c
		}
		c.events = append(c.events, e)
		if e.kind == "secrets" && e.verb == "update" && e.code < 300 {
			c.updates = append(c.updates, e.at)
		}
	}
	w := writeCount{ByKindVerb: map[string]int{}}
	refreshes := 0
	for _, c := range creds {
		if len(c.updates) < 2 {
			continue
		}
		sort.Slice(c.updates, func(i, j int) bool { return c.updates[i].Before(c.updates[j]) })
		first, last := c.updates[0], c.updates[len(c.updates)-1]
		refreshes += len(c.updates) - 1
		for _, e := range c.events {
			if e.at.Before(first) || !e.at.Before(last) {
				continue
			}
			w.Total++
			if e.code >= 400 {
				w.Failed++
			}
			w.ByKindVerb[e.kind+" "+e.verb]++
		}
	}
	return w, refreshes
}

func (c writeCount) String() string {
	keys := make([]string, 0, len(c.ByKindVerb))
	for k := range c.ByKindVerb {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+itoa(c.ByKindVerb[k]))
	}
	return strings.Join(parts, ", ")
}

// stats says how much of the log was read, to show the counting worked.
func (a *auditLog) stats() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return map[string]int{
		"operator_writes": len(a.events), "other_writes": a.others,
		"unparsed_lines": a.parseErr, "bytes_read": int(a.offset),
	}
}
