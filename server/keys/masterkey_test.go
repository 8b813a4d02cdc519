package keys

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func testSealer(t *testing.T) *Sealer {
	t.Helper()
	s, err := NewSealer(bytes.Repeat([]byte{7}, MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSealOpen(t *testing.T) {
	s := testSealer(t)
	secret := []byte(`{"d":"private-part"}`)
	sealed, err := s.Seal(secret, []byte("tenant-a|kid-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("private-part")) {
		t.Fatal("sealed blob contains the plaintext")
	}
	again, _ := s.Seal(secret, []byte("tenant-a|kid-1"))
	if bytes.Equal(sealed, again) {
		t.Fatal("two seals of one plaintext are equal: nonce reused")
	}
	got, err := s.Open(sealed, []byte("tenant-a|kid-1"))
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open: %q, %v", got, err)
	}

	other, _ := NewSealer(bytes.Repeat([]byte{8}, MasterKeySize))
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	for name, open := range map[string]func() ([]byte, error){
		"wrong aad":        func() ([]byte, error) { return s.Open(sealed, []byte("tenant-b|kid-1")) },
		"wrong master key": func() ([]byte, error) { return other.Open(sealed, []byte("tenant-a|kid-1")) },
		"tampered":         func() ([]byte, error) { return s.Open(tampered, []byte("tenant-a|kid-1")) },
		"truncated":        func() ([]byte, error) { return s.Open(sealed[:10], []byte("tenant-a|kid-1")) },
		"not sealed":       func() ([]byte, error) { return s.Open(secret, nil) },
	} {
		if pt, err := open(); err == nil {
			t.Errorf("%s: opened to %q", name, pt)
		}
	}
}

func TestNewSealerKeySize(t *testing.T) {
	for _, n := range []int{0, 16, 31, 33} {
		if _, err := NewSealer(make([]byte, n)); err == nil {
			t.Errorf("accepted a %d-byte master key", n)
		}
	}
}

func TestParseMasterKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xfb}, 32)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		got, err := ParseMasterKey(" " + enc.EncodeToString(key) + "\n")
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("%v: got %x, %v", enc, got, err)
		}
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString(make([]byte, 16))} {
		if _, err := ParseMasterKey(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestLoadMasterKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "master.key")
	if _, _, err := LoadMasterKeyFile(path, false); err == nil {
		t.Fatal("a missing key file was accepted without create")
	}
	key, created, err := LoadMasterKeyFile(path, true)
	if err != nil || !created || len(key) != MasterKeySize {
		t.Fatalf("create: %d bytes, created=%v, %v", len(key), created, err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600 (%v)", info.Mode().Perm(), err)
	}
	again, created, err := LoadMasterKeyFile(path, true)
	if err != nil || created || !bytes.Equal(again, key) {
		t.Fatalf("reload: created=%v equal=%v %v", created, bytes.Equal(again, key), err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadMasterKeyFile(path, true); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a world-readable key file was accepted: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(bad, []byte("short"), 0o600)
	if _, _, err := LoadMasterKeyFile(bad, true); err == nil {
		t.Fatal("a malformed key file was accepted")
	}
}

func TestDeriveKey(t *testing.T) {
	master := bytes.Repeat([]byte{5}, MasterKeySize)
	a, err := DeriveKey(master, "tokens/alpha")
	if err != nil || len(a) != 32 {
		t.Fatalf("%x %v", a, err)
	}
	a2, _ := DeriveKey(master, "tokens/alpha")
	b, _ := DeriveKey(master, "tokens/beta")
	c, _ := DeriveKey(bytes.Repeat([]byte{6}, MasterKeySize), "tokens/alpha")
	if !bytes.Equal(a, a2) || bytes.Equal(a, b) || bytes.Equal(a, c) {
		t.Fatal("derived keys must be stable per purpose and master key, and differ otherwise")
	}
}
