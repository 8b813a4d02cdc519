// Package netguard keeps outbound requests to addresses that tenants,
// clients or their administrators name away from this server's own
// network: a check made when each connection is dialled, after DNS
// resolution, refuses loopback, private, link-local and other non-public
// addresses, so a name that resolves to an internal address, or a redirect
// to one, is refused too. The JWKS fetcher, the FHIR patient search and the
// identity-provider connectors all use it.
package netguard

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrNotPublic is the cause of a refused connection.
var ErrNotPublic = errors.New("refusing to connect to a non-public address")

// nonPublic are ranges that net/netip calls global unicast but that reach
// no public host, or that embed an IPv4 address the check would not see.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // shared address space (RFC 6598), private in practice
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("192.88.99.0/24"),  // 6to4 relay anycast
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64, which embeds any IPv4 address
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/32"),       // Teredo, which embeds an IPv4 address
	netip.MustParsePrefix("2001:10::/28"),    // ORCHID
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4, which embeds an IPv4 address
	netip.MustParsePrefix("fec0::/10"),       // deprecated site-local
}

// Public reports whether ip is a globally routable unicast address.
func Public(ip netip.Addr) bool {
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// Control returns a net.Dialer Control function that refuses connections
// to non-public addresses, or nil, which checks nothing, if allowPrivate.
func Control(allowPrivate bool) func(network, address string, c syscall.RawConn) error {
	if allowPrivate {
		return nil
	}
	return check
}

func check(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %s is not an IP address and port", ErrNotPublic, address)
	}
	if !Public(ap.Addr()) {
		return fmt.Errorf("%w %s", ErrNotPublic, ap.Addr())
	}
	return nil
}

// Transport returns a transport for URLs that someone other than the
// operator of this server may name: unless allowPrivate is set it connects
// only to public addresses, and every wait is bounded by timeout. It uses no
// proxy, since the check would then see only the proxy's address.
func Transport(timeout time.Duration, allowPrivate bool) *http.Transport {
	dialer := &net.Dialer{Timeout: timeout, Control: Control(allowPrivate)}
	return &http.Transport{
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       90 * time.Second,
	}
}
