package storage

import "testing"

func TestLaunchKey(t *testing.T) {
	// The SHA-256 test vector of "abc" (FIPS 180-2): backends of every kind
	// must compute the same key.
	if got, want := LaunchKey("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Fatalf("LaunchKey(abc) = %s, want %s", got, want)
	}
	if LaunchKey("a") == LaunchKey("b") {
		t.Fatal("two launch values share a key")
	}
}
