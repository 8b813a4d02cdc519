package clientauth

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"syscall"
	"time"
)

// errRedirect refuses JWKS redirects: a redirect could lead anywhere,
// including to an address the URL itself was not allowed to name.
var errRedirect = errors.New("a JWKS URL must answer directly, not redirect")

// fetchClient is the HTTP client for client JWKS URLs.
func fetchClient(timeout time.Duration, allowPrivate bool) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		Transport:     PublicTransport(timeout, allowPrivate),
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
	}
}

// PublicTransport returns a transport for URLs that someone other than the
// operator of this server may name: unless allowPrivate is set it connects
// only to public addresses, and every wait is bounded by timeout. The address
// check runs when the connection is made, after DNS resolution, so a name
// that resolves to an internal address is refused too.
func PublicTransport(timeout time.Duration, allowPrivate bool) *http.Transport {
	dialer := &net.Dialer{Timeout: timeout, Control: func(_, address string, _ syscall.RawConn) error {
		if allowPrivate {
			return nil
		}
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		if ip := net.ParseIP(host); ip == nil || !publicIP(ip) {
			return fmt.Errorf("refusing to connect to the non-public address %s", host)
		}
		return nil
	}}
	return &http.Transport{
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
	}
}

// cgnat is the shared address space of RFC 6598, private in practice.
var cgnat = &net.IPNet{IP: net.IPv4(100, 64, 0, 0), Mask: net.CIDRMask(10, 32)}

// publicIP reports whether ip is a globally routable unicast address.
func publicIP(ip net.IP) bool {
	return ip.IsGlobalUnicast() && !ip.IsPrivate() && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() && !cgnat.Contains(ip)
}
