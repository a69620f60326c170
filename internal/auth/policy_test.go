package auth

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/tokenwarden/tokenwarden/internal/failure"
)

func TestHostOf(t *testing.T) {
	tests := []struct{ url, want string }{
		{"https://API.Example.com/api/token", "api.example.com:443"},
		{"https://api.example.com:443/x", "api.example.com:443"},
		{"https://api.example.com.:8443/x?q=1", "api.example.com:8443"},
		{"https://[2001:db8::1]/x", "[2001:db8::1]:443"},
		{"HTTPS://127.0.0.1:9443", "127.0.0.1:9443"},
	}
	for _, tt := range tests {
		got, err := HostOf(tt.url)
		if err != nil || got != tt.want {
			t.Errorf("HostOf(%q) = %q, %v; want %q", tt.url, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "http://a.example.com/", "https://user:pw@a.example.com/", "https:///x",
		"https:opaque", "https://a.example.com:0/", "https://a.example.com:99999/", "https://a.example.com:/", "::", "ftp://a"} {
		if _, err := HostOf(bad); failure.ReasonOf(err) != failure.InvalidSpec {
			t.Errorf("HostOf(%q): err = %v, want a ConfigurationError", bad, err)
		}
	}
}

func TestHostAllowed(t *testing.T) {
	allowed := []string{"a.example.com", "*.example.org", " B.Example.NET. "}
	tests := []struct {
		host string
		want bool
	}{
		{"a.example.com", true},
		{"A.EXAMPLE.COM.", true},
		{"b.a.example.com", false},
		{"x.example.org", true},
		{"y.x.example.org", true},
		{"example.org", false},
		{"evilexample.org", false},
		{"b.example.net", true},
		{"example.com", false},
	}
	for _, tt := range tests {
		if got := hostAllowed(tt.host, allowed); got != tt.want {
			t.Errorf("hostAllowed(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	if !hostAllowed("anything.example", nil) {
		t.Error("an empty allowlist must allow every host")
	}
}

func TestAddressRefusal(t *testing.T) {
	refused := []string{
		"127.0.0.1", "127.8.9.10", "::1", "169.254.169.254", "fe80::1", "10.1.2.3", "172.16.0.1",
		"192.168.1.1", "100.64.0.1", "fc00::1", "fd12::1", "0.0.0.0", "::", "::ffff:127.0.0.1",
		"::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "224.0.0.1", "255.255.255.255",
	}
	for _, s := range refused {
		if addressRefusal(netip.MustParseAddr(s)) == "" {
			t.Errorf("%s must be refused", s)
		}
	}
	for _, s := range []string{"8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "64:ff9b::808:808", "100.128.0.1"} {
		if r := addressRefusal(netip.MustParseAddr(s)); r != "" {
			t.Errorf("%s must be allowed, got %q", s, r)
		}
	}
}

func TestCheckAddresses(t *testing.T) {
	pub, loop, priv := netip.MustParseAddr("93.184.215.14"), netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.1.2.3")
	tests := []struct {
		url          string
		ips          []netip.Addr
		allowPrivate bool
		want         string // "" when allowed
	}{
		{"https://api.example.com/t", []netip.Addr{pub}, false, ""},
		{"https://api.example.com/t", []netip.Addr{loop}, false, "host api.example.com resolves to a loopback address, which the private-network policy refuses"},
		{"https://api.example.com/t", []netip.Addr{priv, pub}, false, ""},
		{"https://api.example.com/t", []netip.Addr{priv}, true, ""},
		{"https://10.1.2.3:8443/t", nil, false, "address 10.1.2.3 is a private address, which the private-network policy refuses"},
		{"https://[::ffff:169.254.169.254]/t", nil, false, "a link-local address"},
		{"https://api.example.com/t", nil, false, "has no address to check"},
	}
	for _, tt := range tests {
		err := CheckAddresses(tt.url, tt.ips, tt.allowPrivate)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckAddresses(%s, %v) = %v, want nil", tt.url, tt.ips, err)
		case tt.want != "" && (failure.ReasonOf(err) != failure.InvalidSpec || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckAddresses(%s, %v) = %v, want a ConfigurationError with %q", tt.url, tt.ips, err, tt.want)
		}
	}
}
