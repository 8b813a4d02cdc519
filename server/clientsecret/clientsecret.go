// Package clientsecret makes and checks confidential clients' secrets.
//
// Secrets are 256 random bits generated here, so a fast SHA-256 digest
// stored in place of the secret is as strong as a slow password hash and
// keeps the token endpoint fast; comparison is constant-time.
package clientsecret

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
)

// Bytes is the number of random bytes in a secret.
const Bytes = 32

// Generate returns a new secret, to show once, and the digest to store.
func Generate() (secret string, digest []byte, err error) {
	b := make([]byte, Bytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("generate client secret: %w", err)
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, Digest(secret), nil
}

// Digest returns the SHA-256 digest of a secret.
func Digest(secret string) []byte {
	d := sha256.Sum256([]byte(secret))
	return d[:]
}

// Matches reports whether presented is the secret behind digest.
func Matches(digest []byte, presented string) bool {
	if len(digest) != sha256.Size {
		return false
	}
	return subtle.ConstantTimeCompare(digest, Digest(presented)) == 1
}
