package netguard_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/smartauth/smartauth/server/netguard"
)

func TestPublic(t *testing.T) {
	for _, tt := range []struct {
		ip   string
		want bool
	}{
		{"93.184.215.14", true},
		{"2606:4700::6810:84e5", true},
		{"8.8.8.8", true},
		{"127.0.0.1", false},
		{"127.8.9.10", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:10.1.2.3", false},
		{"10.0.0.1", false},
		{"172.16.5.4", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"fe80::1", false},
		{"fd00:ec2::254", false},
		{"100.64.0.1", false},
		{"0.0.0.0", false},
		{"0.1.2.3", false},
		{"::", false},
		{"224.0.0.1", false},
		{"255.255.255.255", false},
		{"198.18.0.1", false},
		{"240.0.0.1", false},
		{"64:ff9b::a00:1", false},
		{"2002:a00:1::", false},
	} {
		if got := netguard.Public(netip.MustParseAddr(tt.ip)); got != tt.want {
			t.Errorf("Public(%s) = %v, want %v", tt.ip, got, tt.want)
		}
	}
}

func TestControl(t *testing.T) {
	if netguard.Control(true) != nil {
		t.Error("Control(true) checks addresses; it should check none")
	}
	check := netguard.Control(false)
	for _, tt := range []struct {
		address string
		ok      bool
	}{
		{"93.184.215.14:443", true},
		{"[2606:4700::6810:84e5]:443", true},
		{"127.0.0.1:80", false},
		{"[::1]:443", false},
		{"169.254.169.254:80", false},
		{"localhost:80", false},
		{"garbage", false},
	} {
		err := check("tcp", tt.address, nil)
		if (err == nil) != tt.ok {
			t.Errorf("check(%s) = %v, want ok %v", tt.address, err, tt.ok)
		}
		if err != nil && !errors.Is(err, netguard.ErrNotPublic) {
			t.Errorf("check(%s) = %v, not ErrNotPublic", tt.address, err)
		}
	}
}

// TestTransport: a server on loopback is reached only when private
// networks are allowed, whatever name the URL used.
func TestTransport(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	for _, allow := range []bool{false, true} {
		c := &http.Client{Transport: netguard.Transport(5*time.Second, allow)}
		resp, err := c.Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		if allow && err != nil {
			t.Errorf("allowed private networks, but: %v", err)
		}
		if !allow && !errors.Is(err, netguard.ErrNotPublic) {
			t.Errorf("loopback reached with private networks refused: %v", err)
		}
	}
}
