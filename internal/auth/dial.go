package auth

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
)

// addressRefusedError is returned from the dialer when the private-network
// policy refuses every address of a host. Fetch turns it into a
// ConfigurationError; it never leaves the package.
type addressRefusedError struct {
	subject string // "host example.com resolves to" or "address 10.0.0.1 is"
	reason  string // "a loopback address", ...
}

func (e *addressRefusedError) Error() string {
	return e.subject + " " + e.reason
}

// policyDialer resolves names itself and checks every resolved address
// before connecting. Resolving here, rather than letting net.Dialer do it,
// means the address that is checked is the address that is dialed: a DNS
// answer that changes between check and connect (rebinding) cannot slip a
// private address through. The Control hook checks the socket address once
// more, as a last line that also covers IP literals.
type policyDialer struct {
	resolver     Resolver
	allowPrivate bool
	dialer       net.Dialer
}

func newPolicyDialer(r Resolver, allowPrivate bool) *policyDialer {
	d := &policyDialer{resolver: r, allowPrivate: allowPrivate}
	d.dialer.Control = d.control
	return d
}

func (d *policyDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []netip.Addr
	subject := "host " + host + " resolves to"
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
		subject = "address " + host + " is"
	} else {
		addrs, err := d.resolver.LookupIPAddr(ctx, host)
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				ips = append(ips, ip.Unmap())
			}
		}
		if len(ips) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
	}
	allowed, err := d.admit(subject, ips)
	if err != nil {
		return nil, err
	}
	var lastErr error
	for _, ip := range allowed {
		c, err := d.dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return c, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// admit returns the addresses of ips the policy lets the dialer connect
// to, or an *addressRefusedError when it refuses every one.
func (d *policyDialer) admit(subject string, ips []netip.Addr) ([]netip.Addr, error) {
	var allowed []netip.Addr
	reason := ""
	for _, ip := range ips {
		if r := d.refusal(ip); r != "" {
			reason = r
			continue
		}
		allowed = append(allowed, ip)
	}
	if len(allowed) == 0 {
		return nil, &addressRefusedError{subject: subject, reason: reason}
	}
	return allowed, nil
}

func (d *policyDialer) refusal(ip netip.Addr) string {
	if d.allowPrivate {
		return ""
	}
	return addressRefusal(ip)
}

func (d *policyDialer) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return errors.New("cannot check the dialed address")
	}
	if r := d.refusal(ap.Addr()); r != "" {
		return &addressRefusedError{subject: "address " + ap.Addr().String() + " is", reason: r}
	}
	return nil
}
