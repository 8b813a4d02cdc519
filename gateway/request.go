package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// Interaction is a FHIR RESTful interaction the gateway knows.
type Interaction string

// The interactions of FHIR R4's RESTful API that the gateway can reason
// about; anything it cannot name is refused before it reaches the upstream.
const (
	Read            Interaction = "read"
	VRead           Interaction = "vread"
	Search          Interaction = "search-type"
	Create          Interaction = "create"
	Update          Interaction = "update"
	Patch           Interaction = "patch"
	Delete          Interaction = "delete"
	HistoryInstance Interaction = "history-instance"
	HistoryType     Interaction = "history-type"
	Operation       Interaction = "operation"
)

// Call is one classified request to the FHIR API.
type Call struct {
	Interaction Interaction
	// Type is the resource type the request names.
	Type string
	// ID and Version name one resource (version) when the interaction does.
	ID      string
	Version string
	// Operation is the operation's name with its "$", for Interaction Operation.
	Operation string
	// Query is the request's search or operation parameters.
	Query url.Values
	// Path is the request path below the FHIR base, as forwarded upstream.
	Path string
}

// operations are the operations the gateway can prove safe, by the resource
// type they run on and whether they run on an instance. $everything returns
// only resources of the patient's compartment, each of which the gateway
// checks as it would a search result.
var operations = map[string]struct{ instance bool }{
	"Patient/$everything": {instance: true},
}

// FHIR's syntax for resource types and ids (R4 §2.1.0 and §2.34.0).
var (
	resourceTypeSyntax = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)
	idSyntax           = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
)

// RefusedError is a request the gateway will not forward: Status is the
// HTTP status to answer with and Message says why, in words for the app's developer.
type RefusedError struct {
	Status  int
	Code    string // the OperationOutcome issue code
	Message string
}

func (e *RefusedError) Error() string { return e.Message }

func refuse(status int, code, format string, args ...any) *RefusedError {
	return &RefusedError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Classify names the interaction of a request to the FHIR API. path is the
// request path below the FHIR base, without its leading slash. Batches,
// transactions, system-wide search and history, conditional writes,
// compartment searches and unknown operations are refused: none of them can
// be checked against a patient's compartment before it runs.
func Classify(method, path string, query url.Values) (Call, error) {
	segs := strings.Split(strings.Trim(path, "/"), "/")
	if path == "" || segs[0] == "" {
		return Call{}, refuse(http.StatusForbidden, "forbidden", "System-level interactions (batch, transaction, search and history across all types) are not allowed through the gateway.")
	}
	if segs[0] == "_history" {
		return Call{}, refuse(http.StatusForbidden, "forbidden", "History across all resource types is not allowed through the gateway.")
	}
	if strings.HasPrefix(segs[0], "$") {
		return Call{}, refuse(http.StatusForbidden, "forbidden", "The system-level operation %s is not allowed through the gateway.", segs[0])
	}
	c := Call{Type: segs[0], Query: query, Path: strings.Join(segs, "/")}
	if !resourceTypeSyntax.MatchString(c.Type) {
		return Call{}, refuse(http.StatusNotFound, "not-found", "%q is not a FHIR resource type.", c.Type)
	}
	if len(segs) >= 2 && !strings.HasPrefix(segs[1], "$") && !strings.HasPrefix(segs[1], "_") && !idSyntax.MatchString(segs[1]) {
		return Call{}, refuse(http.StatusNotFound, "not-found", "%q is not a FHIR resource id.", segs[1])
	}
	switch {
	case len(segs) == 1:
		switch method {
		case http.MethodGet, http.MethodHead:
			c.Interaction = Search
		case http.MethodPost:
			c.Interaction = Create
		case http.MethodPut, http.MethodPatch, http.MethodDelete:
			return Call{}, refuse(http.StatusForbidden, "forbidden", "Conditional %s is not allowed through the gateway: name the resource by id.", strings.ToLower(method))
		}
	case len(segs) == 2 && segs[1] == "_search":
		return Call{}, refuse(http.StatusMethodNotAllowed, "not-supported", "Search by POST is not supported through the gateway; search with GET.")
	case len(segs) == 2 && segs[1] == "_history":
		if method == http.MethodGet || method == http.MethodHead {
			c.Interaction = HistoryType
		}
	case len(segs) == 2 && strings.HasPrefix(segs[1], "$"):
		c.Operation = segs[1]
		if op, ok := operations[c.Type+"/"+c.Operation]; ok && !op.instance {
			c.Interaction = Operation
		} else {
			return Call{}, refuse(http.StatusForbidden, "forbidden", "The operation %s/%s is not allowed through the gateway.", c.Type, c.Operation)
		}
	case len(segs) == 2:
		c.ID = segs[1]
		switch method {
		case http.MethodGet, http.MethodHead:
			c.Interaction = Read
		case http.MethodPut:
			c.Interaction = Update
		case http.MethodPatch:
			c.Interaction = Patch
		case http.MethodDelete:
			c.Interaction = Delete
		}
	case len(segs) == 3 && segs[2] == "_history":
		c.ID = segs[1]
		if method == http.MethodGet || method == http.MethodHead {
			c.Interaction = HistoryInstance
		}
	case len(segs) == 3 && strings.HasPrefix(segs[2], "$"):
		c.ID, c.Operation = segs[1], segs[2]
		op, ok := operations[c.Type+"/"+c.Operation]
		if !ok || !op.instance {
			return Call{}, refuse(http.StatusForbidden, "forbidden", "The operation %s/[id]/%s is not allowed through the gateway.", c.Type, c.Operation)
		}
		if method == http.MethodGet || method == http.MethodHead {
			c.Interaction = Operation
		}
	case len(segs) == 4 && segs[2] == "_history":
		c.ID, c.Version = segs[1], segs[3]
		if !idSyntax.MatchString(c.Version) {
			return Call{}, refuse(http.StatusNotFound, "not-found", "%q is not a FHIR version id.", c.Version)
		}
		if method == http.MethodGet || method == http.MethodHead {
			c.Interaction = VRead
		}
	case len(segs) == 3:
		return Call{}, refuse(http.StatusForbidden, "forbidden", "Compartment search (%s/[id]/%s) is not allowed through the gateway; search %s with a patient parameter.", c.Type, segs[2], segs[2])
	default:
		return Call{}, refuse(http.StatusNotFound, "not-found", "The path names no FHIR interaction.")
	}
	if c.Interaction == "" {
		return Call{}, refuse(http.StatusMethodNotAllowed, "not-supported", "%s is not a FHIR interaction on this path.", method)
	}
	// Every id goes into the upstream's URL: "." and ".." would climb out
	// of the resource's path there, and "_" starts FHIR's own path words.
	if c.ID != "" && (!idSyntax.MatchString(c.ID) || strings.Trim(c.ID, ".") == "" || strings.HasPrefix(c.ID, "_")) {
		return Call{}, refuse(http.StatusNotFound, "not-found", "%q is not a FHIR resource id.", c.ID)
	}
	if c.Version != "" && strings.Trim(c.Version, ".") == "" {
		return Call{}, refuse(http.StatusNotFound, "not-found", "%q is not a FHIR version id.", c.Version)
	}
	return c, nil
}
