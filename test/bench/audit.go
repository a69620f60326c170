package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// The operator and the bench's load generator each authenticate as their own
// user, so that the audit policy can log every request of theirs, reads,
// watches, events and leases included, and nothing of the bench's own.
const (
	operatorUser = "tokenwarden-bench-operator"
	loadUser     = "tokenwarden-bench-load"
)

// auditPolicy logs, at Metadata level (never a request or response body)
// and once per request (at ResponseComplete), every request of the
// operator and of the load generator, and nothing else.
var auditPolicy = fmt.Sprintf(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
- level: Metadata
  users: [%q, %q]
- level: None
`, operatorUser, loadUser)

// auditMaxSizeMB is the API server's --audit-log-maxsize. Its default (0)
// means lumberjack's 100 MiB, after which the file is renamed and a new one
// started under the same name: the follower would read on from a file that
// no longer grows, and every later phase would count nothing. One TiB is
// more than the disk holds, so the log never rotates in a run.
const auditMaxSizeMB = "1048576"

// auditEvent is one request recorded by the API server.
type auditEvent struct {
	at   time.Time // requestReceivedTimestamp
	ns   string
	name string
	res  string // secrets, apicredentials/status, leases, events, ...
	verb string
	code int
	load bool // the load generator's; otherwise the operator's
}

func (e auditEvent) write() bool {
	switch e.verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

// auditLog follows the API server's audit log file and keeps the requests.
type auditLog struct {
	path string

	mu       sync.Mutex
	events   []auditEvent
	others   int // lines of other users (none with this policy)
	offset   int64
	parseErr int
	broken   error // the follower stopped: rotation, truncation, a read error
	strs     map[string]string
}

func (a *auditLog) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.broken == nil {
		a.broken = err
		logf("AUDIT COUNTER STOPPED: %v", err)
	}
}

// err is non-nil once the follower has stopped counting for any reason.
func (a *auditLog) err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.broken
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
			a.fail(fmt.Errorf("reading %s: %w", a.path, err))
			return
		}
		// At the end of what was written: make sure it is still the file
		// the API server writes to, and that it has not been cut.
		if err := a.sameFile(f); err != nil {
			if ctx.Err() == nil {
				a.fail(err)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (a *auditLog) sameFile(f *os.File) error {
	open, err := f.Stat()
	if err != nil {
		return err
	}
	now, err := os.Stat(a.path)
	if err != nil {
		return fmt.Errorf("audit log %s: %w (rotated away?)", a.path, err)
	}
	if !os.SameFile(open, now) {
		return fmt.Errorf("audit log %s was rotated after %d bytes: later requests would not be counted", a.path, a.bytesRead())
	}
	if now.Size() < a.bytesRead() {
		return fmt.Errorf("audit log %s shrank to %d bytes after %d were read", a.path, now.Size(), a.bytesRead())
	}
	return nil
}

func (a *auditLog) bytesRead() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.offset
}

// intern keeps one copy of the namespaces, names and resources seen.
func (a *auditLog) intern(s string) string {
	if v, ok := a.strs[s]; ok {
		return v
	}
	if a.strs == nil {
		a.strs = map[string]string{}
	}
	a.strs[s] = s
	return s
}

func (a *auditLog) add(line []byte) {
	var ev struct {
		Verb string `json:"verb"`
		User struct {
			Username string `json:"username"`
		} `json:"user"`
		ObjectRef *struct {
			Resource    string `json:"resource"`
			Subresource string `json:"subresource"`
			Namespace   string `json:"namespace"`
			Name        string `json:"name"`
		} `json:"objectRef"`
		RequestURI     string `json:"requestURI"`
		ResponseStatus *struct {
			Code int `json:"code"`
		} `json:"responseStatus"`
		RequestReceived time.Time `json:"requestReceivedTimestamp"`
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.offset += int64(len(line))
	if err := json.Unmarshal(line, &ev); err != nil {
		a.parseErr++
		return
	}
	var load bool
	switch ev.User.Username {
	case operatorUser:
	case loadUser:
		load = true
	default:
		a.others++
		return
	}
	e := auditEvent{at: ev.RequestReceived, verb: a.intern(ev.Verb), load: load}
	if o := ev.ObjectRef; o != nil {
		res := o.Resource
		if o.Subresource != "" {
			res += "/" + o.Subresource
		}
		e.res, e.ns, e.name = a.intern(res), a.intern(o.Namespace), o.Name
	} else {
		// Discovery and other non-resource requests.
		path, _, _ := strings.Cut(ev.RequestURI, "?")
		e.res = a.intern("nonresource " + path)
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
	for time.Now().Before(deadline) && a.err() == nil {
		if a.bytesRead() >= st.Size() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requestCount is what one user sent over a window.
type requestCount struct {
	Total  int            `json:"total"`
	Failed int            `json:"failed"` // answered >= 400 (e.g. 409 conflicts)
	ByVerb map[string]int `json:"by_verb_and_resource"`
}

func newRequestCount() requestCount { return requestCount{ByVerb: map[string]int{}} }

func (c *requestCount) add(e auditEvent) {
	c.Total++
	if e.code >= 400 {
		c.Failed++
	}
	c.ByVerb[e.verb+" "+e.res]++
}

// writes keeps only the writes of c.
func (c requestCount) writes() requestCount {
	w := newRequestCount()
	for k, n := range c.ByVerb {
		verb, _, _ := strings.Cut(k, " ")
		if (auditEvent{verb: verb}).write() {
			w.ByVerb[k] = n
			w.Total += n
		}
	}
	return w
}

// count returns the requests received in [from, to) of the operator (or of
// the load generator) that match keep (nil: all of them, whatever the
// namespace: leases, events, cluster-scoped lists and watches included).
func (a *auditLog) count(load bool, from, to time.Time, keep func(auditEvent) bool) requestCount {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := newRequestCount()
	for _, e := range a.events {
		if e.load != load || e.at.Before(from) || !e.at.Before(to) || (keep != nil && !keep(e)) {
			continue
		}
		c.add(e)
	}
	return c
}

// inNamespace keeps the requests on objects of ns.
func inNamespace(ns string) func(auditEvent) bool {
	return func(e auditEvent) bool { return e.ns == ns }
}

// perRefresh attributes the operator's writes in ns to refreshes without
// edge effects: for each credential (APICredential c-NNNNN, target Secret
// t-NNNNN) it takes the successful Secret updates in [from, to), s1 < … <
// sm, and counts every write of that credential in [s1, sm): the writes of
// the m-1 complete refresh cycles that start at s1 … s(m-1), whatever
// happens between them. It returns the writes and the refreshes (Σ m-1).
func (a *auditLog) perRefresh(ns string, from, to time.Time) (requestCount, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	type cred struct {
		updates []time.Time
		events  []auditEvent
	}
	creds := map[string]*cred{}
	for _, e := range a.events {
		if e.load || !e.write() || e.ns != ns || e.at.Before(from) || !e.at.Before(to) || len(e.name) < 3 {
			continue
		}
		if e.res != "secrets" && !strings.HasPrefix(e.res, "apicredentials") {
			continue
		}
		key := e.name[2:] // c-00012 and t-00012 share 00012
		c := creds[key]
		if c == nil {
			c = &cred{}
			creds[key] = c
		}
		c.events = append(c.events, e)
		if e.res == "secrets" && e.verb == "update" && e.code < 300 {
			c.updates = append(c.updates, e.at)
		}
	}
	w := newRequestCount()
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
			w.add(e)
		}
	}
	return w, refreshes
}

// checkCounted fails a phase whose window saw refreshes while the audit log
// counted no request of the operator: a counter that stopped must not print
// a figure of zero.
func (a *auditLog) checkCounted(what string, refreshes int, counted requestCount) error {
	if err := a.err(); err != nil {
		return fmt.Errorf("%s: the audit counter stopped: %w", what, err)
	}
	if refreshes > 0 && counted.Total == 0 {
		return fmt.Errorf("%s: %d refreshes were seen but the audit log counted no request of the operator (%d bytes read): the counter is broken, no figure is printed", what, refreshes, a.bytesRead())
	}
	return nil
}

func (c requestCount) String() string {
	keys := make([]string, 0, len(c.ByVerb))
	for k := range c.ByVerb {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+itoa(c.ByVerb[k]))
	}
	return strings.Join(parts, ", ")
}

// perEach renders c divided by n, largest first: "2.00 get secrets, …".
func (c requestCount) perEach(n int) string {
	type kv struct {
		k string
		v int
	}
	var kvs []kv
	for k, v := range c.ByVerb {
		kvs = append(kvs, kv{k, v})
	}
	sort.Slice(kvs, func(i, j int) bool {
		if kvs[i].v != kvs[j].v {
			return kvs[i].v > kvs[j].v
		}
		return kvs[i].k < kvs[j].k
	})
	var parts []string
	for _, p := range kvs {
		parts = append(parts, fmt.Sprintf("%.3f %s", float64(p.v)/float64(max(1, n)), p.k))
	}
	return strings.Join(parts, ", ")
}

// perRefreshMap is c divided by n, for the JSON.
func (c requestCount) perRefreshMap(n int) map[string]float64 {
	out := map[string]float64{}
	for k, v := range c.ByVerb {
		out[k] = round(float64(v)/float64(max(1, n)), 4)
	}
	return out
}

// stats says how much of the log was read, to show the counting worked.
func (a *auditLog) stats() map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	load := 0
	for _, e := range a.events {
		if e.load {
			load++
		}
	}
	s := map[string]any{
		"operator_requests": len(a.events) - load, "load_generator_requests": load, "other_lines": a.others,
		"unparsed_lines": a.parseErr, "bytes_read": int(a.offset), "max_size_mb": auditMaxSizeMB,
	}
	if a.broken != nil {
		s["stopped"] = a.broken.Error()
	}
	return s
}
