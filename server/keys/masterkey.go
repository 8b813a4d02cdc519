// Package keys holds smartauth's key material: the master key that encrypts
// secrets at rest, and each tenant's token signing keys.
//
// Private signing keys are generated here, sealed with AES-256-GCM under the
// master key before they reach storage, and opened only in memory. The AEAD
// comes from the standard library; JWKs from go-jose v4.
package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MasterKeySize is the length of the master key: 256 bits for AES-256.
const MasterKeySize = 32

// sealVersion prefixes every sealed blob so the format can change later.
const sealVersion byte = 1

// ParseMasterKey decodes a base64 (standard or URL alphabet) 32-byte key.
func ParseMasterKey(encoded string) ([]byte, error) {
	s := strings.TrimSpace(encoded)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) != MasterKeySize {
				return nil, fmt.Errorf("master key must be %d bytes, got %d", MasterKeySize, len(b))
			}
			return b, nil
		}
	}
	return nil, errors.New("master key must be base64-encoded")
}

// LoadMasterKeyFile reads a master key file; when create is set and the file
// does not exist, it generates a new key and writes it with mode 0600.
func LoadMasterKeyFile(path string, create bool) (key []byte, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if info, statErr := os.Stat(path); statErr == nil && info.Mode().Perm()&0o077 != 0 {
			return nil, false, fmt.Errorf("master key file %s is readable by others (mode %v); chmod 600 it", path, info.Mode().Perm())
		}
		key, err := ParseMasterKey(string(b))
		if err != nil {
			return nil, false, fmt.Errorf("master key file %s: %w", path, err)
		}
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) || !create {
		return nil, false, fmt.Errorf("read master key file: %w", err)
	}
	key = make([]byte, MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, false, fmt.Errorf("generate master key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("create master key folder: %w", err)
	}
	// O_EXCL: two processes starting together must not overwrite each other's key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadMasterKeyFile(path, false)
		}
		return nil, false, fmt.Errorf("create master key file: %w", err)
	}
	if _, err := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n"); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("write master key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("write master key file: %w", err)
	}
	return key, true, nil
}

// Sealer encrypts and authenticates secrets at rest with AES-256-GCM.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer keyed by a 32-byte master key.
func NewSealer(masterKey []byte) (*Sealer, error) {
	if len(masterKey) != MasterKeySize {
		return nil, fmt.Errorf("master key must be %d bytes, got %d", MasterKeySize, len(masterKey))
	}
	block, err := aes.NewCipher(masterKey)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext bound to aad, which must be given again to Open;
// binding to the record's identity stops a sealed blob being moved to another row.
func (s *Sealer) Seal(plaintext, aad []byte) ([]byte, error) {
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	out[0] = sealVersion
	if _, err := rand.Read(out[1:]); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return s.aead.Seal(out, out[1:], plaintext, aad), nil
}

// Open decrypts a blob made by Seal with the same aad.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != sealVersion {
		return nil, errors.New("open: not a sealed blob")
	}
	pt, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], aad)
	if err != nil {
		return nil, errors.New("open: wrong master key or tampered data")
	}
	return pt, nil
}

// DeriveKey returns a 32-byte key for one purpose, derived from the master
// key with HKDF-SHA256, so one master key can key several independent uses.
func DeriveKey(masterKey []byte, purpose string) ([]byte, error) {
	k, err := hkdf.Key(sha256.New, masterKey, nil, "smartauth/"+purpose, 32)
	if err != nil {
		return nil, fmt.Errorf("derive %s key: %w", purpose, err)
	}
	return k, nil
}
