package conformance

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
	"time"
)

// mustEqual fails the test when got differs from want, naming the first
// differing field. Backends keep instants to the microsecond in UTC, so want's
// times are truncated before comparing and got's must be in UTC; a nil slice
// or map equals an empty one, since a backend may return either.
func mustEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if d := diff(what, reflect.ValueOf(got), reflect.ValueOf(want)); d != "" {
		t.Fatalf("%s\n got: %+v\nwant: %+v", d, got, want)
	}
}

var timeType = reflect.TypeFor[time.Time]()

func diff(path string, got, want reflect.Value) string {
	if got.Type() == timeType {
		g, w := got.Interface().(time.Time), want.Interface().(time.Time)
		w = w.UTC().Truncate(time.Microsecond)
		if g.IsZero() != w.IsZero() || !g.Equal(w) {
			return fmt.Sprintf("%s: got %v, want %v", path, g, w)
		}
		if !g.IsZero() && g.Location() != time.UTC {
			return fmt.Sprintf("%s: got %v in %v, want UTC", path, g, g.Location())
		}
		return ""
	}
	switch got.Kind() {
	case reflect.Struct:
		for i := range got.NumField() {
			name := path + "." + got.Type().Field(i).Name
			if d := diff(name, got.Field(i), want.Field(i)); d != "" {
				return d
			}
		}
	case reflect.Slice:
		if got.Type().Elem().Kind() == reflect.Uint8 {
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				return fmt.Sprintf("%s: got %q, want %q", path, got.Bytes(), want.Bytes())
			}
			return ""
		}
		if got.Len() != want.Len() {
			return fmt.Sprintf("%s: got %d elements, want %d", path, got.Len(), want.Len())
		}
		for i := range got.Len() {
			if d := diff(fmt.Sprintf("%s[%d]", path, i), got.Index(i), want.Index(i)); d != "" {
				return d
			}
		}
	case reflect.Map:
		if got.Len() != want.Len() {
			return fmt.Sprintf("%s: got %v, want %v", path, got, want)
		}
		for _, k := range want.MapKeys() {
			g := got.MapIndex(k)
			if !g.IsValid() {
				return fmt.Sprintf("%s: key %v missing", path, k)
			}
			if d := diff(fmt.Sprintf("%s[%v]", path, k), g, want.MapIndex(k)); d != "" {
				return d
			}
		}
	case reflect.Pointer:
		if got.IsNil() || want.IsNil() {
			if got.IsNil() != want.IsNil() {
				return fmt.Sprintf("%s: got %v, want %v", path, got, want)
			}
			return ""
		}
		return diff(path, got.Elem(), want.Elem())
	default:
		if !reflect.DeepEqual(got.Interface(), want.Interface()) {
			return fmt.Sprintf("%s: got %#v, want %#v", path, got.Interface(), want.Interface())
		}
	}
	return ""
}
