package gateway

import (
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		method, path string
		want         Call
		status       int // of the refusal, when refused
	}{
		{method: "GET", path: "Observation/abc-1", want: Call{Interaction: Read, Type: "Observation", ID: "abc-1"}},
		{method: "HEAD", path: "Observation/abc-1", want: Call{Interaction: Read, Type: "Observation", ID: "abc-1"}},
		{method: "GET", path: "Observation/abc/_history/3", want: Call{Interaction: VRead, Type: "Observation", ID: "abc", Version: "3"}},
		{method: "GET", path: "Observation", want: Call{Interaction: Search, Type: "Observation"}},
		{method: "POST", path: "Observation", want: Call{Interaction: Create, Type: "Observation"}},
		{method: "PUT", path: "Observation/1", want: Call{Interaction: Update, Type: "Observation", ID: "1"}},
		{method: "PATCH", path: "Observation/1", want: Call{Interaction: Patch, Type: "Observation", ID: "1"}},
		{method: "DELETE", path: "Observation/1", want: Call{Interaction: Delete, Type: "Observation", ID: "1"}},
		{method: "GET", path: "Observation/1/_history", want: Call{Interaction: HistoryInstance, Type: "Observation", ID: "1"}},
		{method: "GET", path: "Observation/_history", want: Call{Interaction: HistoryType, Type: "Observation"}},
		{method: "GET", path: "Patient/p1/$everything", want: Call{Interaction: Operation, Type: "Patient", ID: "p1", Operation: "$everything"}},

		{method: "POST", path: "", status: http.StatusForbidden},                              // batch or transaction
		{method: "GET", path: "", status: http.StatusForbidden},                               // search across all types
		{method: "GET", path: "_history", status: http.StatusForbidden},                       // history across all types
		{method: "GET", path: "$export", status: http.StatusForbidden},                        // system operation
		{method: "POST", path: "Observation/_search", status: http.StatusMethodNotAllowed},    // search by POST
		{method: "PUT", path: "Observation", status: http.StatusForbidden},                    // conditional update
		{method: "DELETE", path: "Observation", status: http.StatusForbidden},                 // conditional delete
		{method: "GET", path: "Patient/p1/Observation", status: http.StatusForbidden},         // compartment search
		{method: "GET", path: "Observation/$lastn", status: http.StatusForbidden},             // unknown operation
		{method: "POST", path: "Patient/p1/$everything", status: http.StatusMethodNotAllowed}, // known operation, wrong method
		{method: "GET", path: "Encounter/e1/$everything", status: http.StatusForbidden},       // known name, other type
		{method: "GET", path: "observation/1", status: http.StatusNotFound},                   // not a resource type
		{method: "GET", path: "Observation/has space", status: http.StatusNotFound},           // not an id
		{method: "GET", path: "Observation/1/_history/x y", status: http.StatusNotFound},      // not a version id
		{method: "POST", path: "Observation/1", status: http.StatusMethodNotAllowed},
		{method: "GET", path: "Observation/1/_history/2/more", status: http.StatusNotFound},
		{method: "GET", path: "Observation/..", status: http.StatusNotFound}, // would climb out upstream
		{method: "GET", path: "Observation/.", status: http.StatusNotFound},
		{method: "PUT", path: "Observation/_foo", status: http.StatusNotFound},          // not an id
		{method: "GET", path: "Observation/1/_history/..", status: http.StatusNotFound}, // nor a version
		{method: "GET", path: "Observation/a?b", status: http.StatusNotFound},           // an escaped query
		{method: "GET", path: "Observation/a%2Fb", status: http.StatusNotFound},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			got, err := Classify(c.method, c.path, url.Values{})
			if c.status != 0 {
				var re *RefusedError
				if !errors.As(err, &re) || re.Status != c.status {
					t.Fatalf("Classify = %+v, %v; want a refusal with status %d", got, err, c.status)
				}
				return
			}
			if err != nil {
				t.Fatalf("Classify: %v", err)
			}
			got.Query, got.Path = nil, ""
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("Classify = %+v, want %+v", got, c.want)
			}
		})
	}
}

// FuzzClassify checks that whatever path an app sends, a request the
// gateway forwards stays below the resource type it names on the upstream.
func FuzzClassify(f *testing.F) {
	for _, p := range []string{"Observation/1", "Patient/p/$everything", "Observation/1/_history/2", "Observation/..", "a/../b", "Observation/%2e%2e", "Observation/1/_history"} {
		f.Add("GET", p)
	}
	base, _ := url.Parse("https://upstream.example/fhir")
	f.Fuzz(func(t *testing.T, method, path string) {
		c, err := Classify(method, path, url.Values{})
		if err != nil {
			return
		}
		u, perr := url.Parse(upstreamURL(base, c.Path, nil))
		if perr != nil {
			t.Fatalf("forwarded path %q makes an unparsable URL: %v", path, perr)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.Host != "upstream.example" || !strings.HasPrefix(u.Path, "/fhir/"+c.Type) {
			t.Fatalf("forwarded path %q reaches %s", path, u)
		}
		for _, seg := range strings.Split(u.Path, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("forwarded path %q climbs: %s", path, u)
			}
		}
	})
}
