package auth

import (
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
)

// HostOf returns the limiter key of a token URL: the lower-cased host and the
// port (443 when the URL names none), as "host:port". Two URLs that reach the
// same endpoint share one budget even if one spells out the default port.
func HostOf(rawURL string) (string, error) {
	u, err := parseTokenURL(rawURL)
	if err != nil {
		return "", err
	}
	return hostKey(u), nil
}

// CheckAddresses applies the private-network policy to a token URL as the
// operator's dialer does before it connects: to its host when that is an IP
// literal, else to ips, the addresses the host resolves to. It returns nil
// when one of them may be dialed, else the *ConfigurationError that Fetch
// would return. It makes no lookup and no connection: offline checks (the
// kubectl plugin) use it.
func CheckAddresses(rawURL string, ips []netip.Addr, allowPrivate bool) error {
	u, err := parseTokenURL(rawURL)
	if err != nil {
		return err
	}
	host := u.Hostname()
	subject := "host " + host + " resolves to"
	if ip, err := netip.ParseAddr(host); err == nil {
		ips, subject = []netip.Addr{ip}, "address "+host+" is"
	}
	if len(ips) == 0 {
		return &ConfigurationError{Field: "url", Problem: "host " + host + " has no address to check"}
	}
	if _, err := newPolicyDialer(nil, allowPrivate).admit(subject, ips); err != nil {
		var refused *addressRefusedError
		if errors.As(err, &refused) {
			return &ConfigurationError{Field: "url", Problem: refused.Error() + ", which the private-network policy refuses"}
		}
		return err
	}
	return nil
}

// Check runs every check Fetch makes before it touches the limiter or the
// network (URL, allowed hosts, method and body, headers, Basic username),
// and returns its *ConfigurationError, or nil.
func (c *Client) Check(r Request) error {
	_, err := c.prepare(r)
	return err
}

// parseTokenURL checks everything about a token URL that can be checked
// without the network. Its errors never quote the URL: the query may carry a
// secret.
func parseTokenURL(rawURL string) (*url.URL, error) {
	if rawURL == "" {
		return nil, &ConfigurationError{Field: "url", Problem: "is empty"}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, &ConfigurationError{Field: "url", Problem: "is not a valid URL"}
	}
	if !strings.EqualFold(u.Scheme, "https") {
		return nil, &ConfigurationError{Field: "url", Problem: "must use https"}
	}
	if u.User != nil {
		// Credentials in the URL would travel in logs and proxies; they belong
		// in basicAuth.
		return nil, &ConfigurationError{Field: "url", Problem: "must not contain user information"}
	}
	if u.Opaque != "" || u.Hostname() == "" {
		return nil, &ConfigurationError{Field: "url", Problem: "has no host"}
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, &ConfigurationError{Field: "url", Problem: "has an invalid port"}
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return nil, &ConfigurationError{Field: "url", Problem: "has an invalid port"}
	}
	return u, nil
}

func hostKey(u *url.URL) string {
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	port := u.Port()
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(host, port)
}

// hostAllowed reports whether host (no port) matches the allowlist. An entry
// "*.example.org" matches any name below example.org but not example.org
// itself, like a wildcard certificate would (one or more labels deep).
func hostAllowed(host string, allowed []string) bool {
	if len(allowed) == 0 {
		return true
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	for _, a := range allowed {
		a = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(a)), ".")
		if a == "" {
			continue
		}
		if rest, ok := strings.CutPrefix(a, "*."); ok {
			if strings.HasSuffix(host, "."+rest) && len(host) > len(rest)+1 {
				return true
			}
			continue
		}
		if host == a {
			return true
		}
	}
	return false
}

// refusedPrefixes are ranges that are not the public Internet: dialing them
// from an operator would reach the cluster, the node or the cloud metadata
// service (SSRF). IsPrivate/IsLoopback/... cover the common ones; these are
// the rest.
var refusedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT, often pod/service CIDRs
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, incl. broadcast
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
}

// addressRefusal returns why ip may not be dialed under the private-network
// policy, or "" when it may.
func addressRefusal(ip netip.Addr) string {
	ip = ip.Unmap() // ::ffff:127.0.0.1 is 127.0.0.1
	// NAT64 (64:ff9b::/96) embeds an IPv4 address; judge that address.
	if nat64 := netip.MustParsePrefix("64:ff9b::/96"); nat64.Contains(ip) {
		b := ip.As16()
		ip = netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
	}
	switch {
	case !ip.IsValid():
		return "an invalid address"
	case ip.IsUnspecified():
		return "an unspecified address"
	case ip.IsLoopback():
		return "a loopback address"
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return "a link-local address"
	case ip.IsPrivate():
		return "a private address"
	case ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return "a multicast address"
	}
	for _, p := range refusedPrefixes {
		if p.Contains(ip) {
			return "a non-public address"
		}
	}
	return ""
}
