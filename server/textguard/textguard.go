// Package textguard tells text apart from bytes no store can keep. A
// request value that is not UTF-8, or that holds a NUL, is the sender's
// mistake: PostgreSQL refuses it (SQLSTATE 22021) and SQLite would keep it
// as it came, so it is refused where it enters, before any lookup.
package textguard

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Valid reports whether s is UTF-8 without a NUL byte.
func Valid(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// ValidValues reports whether every name and value in v is Valid.
func ValidValues(v url.Values) bool {
	for k, vs := range v {
		if !Valid(k) {
			return false
		}
		for _, s := range vs {
			if !Valid(s) {
				return false
			}
		}
	}
	return true
}

// ValidJSON reports whether no string of the JSON text b, name or value, decodes to one holding a NUL.
func ValidJSON(b []byte) bool {
	// Bytes that are not UTF-8 need no check: encoding/json decodes them as
	// U+FFFD. Text that is not JSON is left to the decoder to refuse.
	// Inside a JSON string a NUL can only be written \u0000; most bodies
	// hold no such sequence and need no second pass.
	if !bytes.Contains(b, []byte(`\u0000`)) {
		return true
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err != nil {
			return true
		}
		if s, ok := tok.(string); ok && strings.IndexByte(s, 0) >= 0 {
			return false
		}
	}
}
