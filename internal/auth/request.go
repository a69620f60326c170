package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// prepared is a Request that passed every check that needs no network, so
// a request that could never succeed costs neither the provider nor the
// host's budget anything.
type prepared struct {
	url         *url.URL
	host        string // limiter key
	method      string
	body        []byte
	contentType string
	timeout     time.Duration
}

func (c *Client) prepare(r Request) (*prepared, error) {
	u, err := parseTokenURL(r.URL)
	if err != nil {
		return nil, err
	}
	if !hostAllowed(u.Hostname(), c.allowedHosts) {
		return nil, &ConfigurationError{Field: "url", Problem: "host " + u.Hostname() + " is not in the allowed hosts"}
	}
	method, body, contentType, err := buildBody(r)
	if err != nil {
		return nil, err
	}
	if err := checkHeaders(r); err != nil {
		return nil, err
	}
	if r.Basic != nil && strings.Contains(r.Basic.Username, ":") {
		// RFC 7617: the user-id ends at the first colon; the provider would
		// read a different user than the one configured.
		return nil, &ConfigurationError{Field: "basicAuth", Problem: "the username contains a colon"}
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &prepared{url: u, host: hostKey(u), method: method, body: body, contentType: contentType, timeout: timeout}, nil
}

// httpRequest builds the HTTP request. Headers the user lists come last so
// that they can refine Accept or Content-Type; checkHeaders has already kept
// them off the ones that must not change.
func (p *prepared) httpRequest(ctx context.Context, r Request) (*http.Request, error) {
	target := *p.url
	target.Fragment, target.RawFragment = "", "" // never sent anyway; keep it out of the request line
	req, err := http.NewRequestWithContext(ctx, p.method, target.String(), bytes.NewReader(p.body))
	if err != nil {
		return nil, &ConfigurationError{Field: "url", Problem: "cannot build a request from it"}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tokenwarden")
	if p.contentType != "" {
		req.Header.Set("Content-Type", p.contentType)
	}
	if r.Basic != nil {
		// SetBasicAuth does not URL-encode the parts, which is what the
		// providers expect (docs/reference.md, spec.tokenRequest.basicAuth).
		req.SetBasicAuth(r.Basic.Username, r.Basic.Password)
	}
	for i, h := range r.Headers {
		if i == firstIndex(r.Headers, h.Name) {
			req.Header.Set(h.Name, h.Value)
		} else {
			req.Header.Add(h.Name, h.Value)
		}
	}
	return req, nil
}

// buildBody checks the method and encodes the form or JSON body.
func buildBody(r Request) (method string, body []byte, contentType string, err error) {
	method = strings.ToUpper(r.Method)
	switch method {
	case "":
		method = http.MethodPost
	case http.MethodGet, http.MethodPost:
	default:
		return "", nil, "", &ConfigurationError{Field: "method", Problem: "must be GET or POST"}
	}
	if len(r.Form) > 0 && len(r.JSON) > 0 {
		return "", nil, "", &ConfigurationError{Field: "form", Problem: "form and json are mutually exclusive"}
	}
	if method == http.MethodGet && (len(r.Form) > 0 || len(r.JSON) > 0) {
		return "", nil, "", &ConfigurationError{Field: "method", Problem: "a GET request cannot carry a form or json body"}
	}
	switch {
	case len(r.Form) > 0:
		var b strings.Builder
		for i, f := range r.Form {
			if f.Name == "" {
				return "", nil, "", &ConfigurationError{Field: "form", Problem: "entry " + strconv.Itoa(i) + " has no name"}
			}
			if i > 0 {
				b.WriteByte('&')
			}
			b.WriteString(url.QueryEscape(f.Name) + "=" + url.QueryEscape(f.Value))
		}
		return method, []byte(b.String()), "application/x-www-form-urlencoded", nil
	case len(r.JSON) > 0:
		var b bytes.Buffer
		b.WriteByte('{')
		seen := map[string]bool{}
		for i, f := range r.JSON {
			if f.Name == "" {
				return "", nil, "", &ConfigurationError{Field: "json", Problem: "entry " + strconv.Itoa(i) + " has no name"}
			}
			if seen[f.Name] {
				return "", nil, "", &ConfigurationError{Field: "json", Problem: "entry " + strconv.Itoa(i) + " repeats a name"}
			}
			seen[f.Name] = true
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(f.Name) // strings always marshal
			v, _ := json.Marshal(f.Value)
			b.Write(k)
			b.WriteByte(':')
			b.Write(v)
		}
		b.WriteByte('}')
		return method, b.Bytes(), "application/json", nil
	}
	return method, nil, "", nil
}

// reservedHeaders are set by the transport or derived from the request; a
// user value would either be ignored or corrupt the framing.
var reservedHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true,
	"Connection": true, "Upgrade": true, "Te": true, "Trailer": true,
}

// checkHeaders validates extra headers. Problems name the header by index,
// never by value: a header value is often an API key.
func checkHeaders(r Request) error {
	for i, h := range r.Headers {
		where := "entry " + strconv.Itoa(i)
		if !validHeaderName(h.Name) {
			return &ConfigurationError{Field: "headers", Problem: where + " has an invalid name"}
		}
		canon := http.CanonicalHeaderKey(h.Name)
		if reservedHeaders[canon] {
			return &ConfigurationError{Field: "headers", Problem: where + " sets " + canon + ", which cannot be overridden"}
		}
		if canon == "Authorization" && r.Basic != nil {
			return &ConfigurationError{Field: "headers", Problem: where + " sets Authorization, which conflicts with basicAuth"}
		}
		for j := 0; j < len(h.Value); j++ {
			if b := h.Value[j]; (b < 0x20 && b != '\t') || b == 0x7f {
				return &ConfigurationError{Field: "headers", Problem: where + " has a control character in its value"}
			}
		}
	}
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

func firstIndex(fs []Field, name string) int {
	for i, f := range fs {
		if strings.EqualFold(f.Name, name) {
			return i
		}
	}
	return -1
}
