package gateway

import (
	"maps"
	"net/http"
	"net/url"
	"slices"

	"github.com/smartauth/smartauth/gateway/compartment"
	"github.com/smartauth/smartauth/server/smart"
)

// Grant is what a validated access token allows, as the gateway needs it.
type Grant struct {
	ClientID string
	// Subject is the user's id, or the client's for a backend service.
	Subject  string
	FHIRUser string
	// Patient is the patient in context, the one patient/ scopes confine to.
	Patient string
	// Scopes are the token's granted scopes; only resource scopes matter here.
	Scopes []smart.Scope
}

// NewGrant parses the granted scope strings into a Grant; scopes that do
// not parse grant nothing.
func NewGrant(clientID, subject, fhirUser, patient string, scopes []string) Grant {
	g := Grant{ClientID: clientID, Subject: subject, FHIRUser: fhirUser, Patient: patient}
	for _, raw := range scopes {
		if s, err := smart.Parse(raw); err == nil && s.Kind == smart.KindResource {
			g.Scopes = append(g.Scopes, s)
		}
	}
	return g
}

// rule is one scope that could allow an access: confined to the patient in
// context or not, and limited by a granular scope's search parameters or not.
type rule struct {
	patient string     // "" when not confined
	query   url.Values // nil when not granular
}

// rules are the scopes of g that allow perm on resources of type typ. A
// patient/ scope without a patient in context allows nothing: there is no
// compartment to confine it to.
func (g Grant) rules(typ string, perm smart.Perms) []rule {
	var out []rule
	for _, s := range g.Scopes {
		if s.ResourceType != "*" && s.ResourceType != typ || s.Perms&perm == 0 {
			continue
		}
		r := rule{query: s.Query}
		if s.Context == "patient" {
			if g.Patient == "" {
				continue
			}
			r.patient = g.Patient
		}
		out = append(out, r)
	}
	return out
}

// unrestricted reports whether one of rs allows everything of its type.
func unrestricted(rs []rule) bool {
	return slices.ContainsFunc(rs, func(r rule) bool { return r.patient == "" && r.query == nil })
}

// Plan is what the gateway does with one allowed call.
type Plan struct {
	Call Call
	// Query is sent upstream in place of the call's own.
	Query url.Values
	// rules limit the resources the call reads or writes; none means
	// unrestricted, and responses pass without a look at their contents.
	rules []rule
	// exact is true when Query alone confines a search to what rules allow,
	// so the upstream's totals count nothing the app may not see.
	exact bool
}

// Restricted reports whether responses and request bodies must be checked resource by resource.
func (p Plan) Restricted() bool { return len(p.rules) > 0 }

// NeedsCurrent reports whether the resource as stored must be read and
// checked before the call is forwarded: a restricted update or delete
// could otherwise change what the app may not see.
func (p Plan) NeedsCurrent() bool {
	return p.Restricted() && (p.Call.Interaction == Update || p.Call.Interaction == Delete)
}

// perm is the SMART v2 permission an interaction needs.
func perm(i Interaction) smart.Perms {
	switch i {
	case Search, HistoryType:
		return smart.PermSearch
	case Create:
		return smart.PermCreate
	case Update, Patch:
		return smart.PermUpdate
	case Delete:
		return smart.PermDelete
	}
	return smart.PermRead
}

// restrictingParams change what a search returns in ways a per-resource
// check cannot follow: summaries and element lists strip the references
// that prove membership, and contained resources are not checked.
var restrictingParams = []string{"_summary", "_elements", "_contained", "_containedType", "_format"}

// Authorize decides whether g may make call, and how: it returns the Plan
// to carry out or a *RefusedError.
func Authorize(def *compartment.Definition, g Grant, call Call) (Plan, error) {
	rs := g.rules(call.Type, perm(call.Interaction))
	if len(rs) == 0 {
		return Plan{}, refuse(http.StatusForbidden, "forbidden", "The access token's scopes do not allow %s on %s.", call.Interaction, call.Type)
	}
	q := maps.Clone(call.Query)
	if q == nil {
		q = url.Values{}
	}
	// The gateway asks for JSON and checks what it gets; the app's choice of format goes.
	q.Del("_format")
	p := Plan{Call: call, Query: q}
	if unrestricted(rs) {
		return p, nil
	}
	p.rules = rs
	// A Patient named by id must be the patient in context when every rule confines to it.
	if call.ID != "" && call.Type == "Patient" && allConfined(rs) && call.ID != g.Patient {
		return Plan{}, refuse(http.StatusForbidden, "forbidden", "The access token only reaches Patient/%s.", g.Patient)
	}
	switch call.Interaction {
	case Patch:
		return Plan{}, refuse(http.StatusForbidden, "forbidden", "PATCH is not allowed with patient-level or granular scopes: the gateway cannot check the patched resource before it is stored. Use update.")
	case Create:
		if call.Type == "Patient" && allConfined(rs) {
			return Plan{}, refuse(http.StatusForbidden, "forbidden", "A patient-level scope cannot create a Patient.")
		}
		if !def.InCompartment(call.Type) && allConfined(rs) {
			return Plan{}, refuse(http.StatusForbidden, "forbidden", "A patient-level scope cannot write %s, which is outside the patient compartment.", call.Type)
		}
	case Update, Delete:
		if !def.InCompartment(call.Type) && allConfined(rs) {
			return Plan{}, refuse(http.StatusForbidden, "forbidden", "A patient-level scope cannot write %s, which is outside the patient compartment.", call.Type)
		}
	case Search:
		for _, name := range restrictingParams {
			if name == "_summary" && q.Get(name) == "count" {
				continue
			}
			if q.Has(name) {
				return Plan{}, refuse(http.StatusForbidden, "forbidden", "The search parameter %s is not allowed with patient-level or granular scopes: the gateway could not check what it returns.", name)
			}
		}
		p.exact = confine(def, q, call.Type, rs)
		if q.Get("_summary") == "count" && !p.exact {
			return Plan{}, refuse(http.StatusForbidden, "forbidden", "_summary=count is not allowed here: the count would include resources the access token does not reach.")
		}
	}
	return p, nil
}

// allConfined reports whether every rule confines to the patient in context.
func allConfined(rs []rule) bool {
	return !slices.ContainsFunc(rs, func(r rule) bool { return r.patient == "" })
}

// confine adds to a search what the rules demand of every result, when
// the search syntax can say it: the patient's compartment when every rule
// confines to it, and a granular scope's parameters when every rule has
// the same ones. It reports whether q now says all the rules do.
func confine(def *compartment.Definition, q url.Values, typ string, rs []rule) bool {
	exact := true
	switch {
	case allUnconfined(rs):
	case allConfined(rs) && def.InCompartment(typ):
		name := def.SearchParam(typ)
		ref := "Patient/" + rs[0].patient
		if name == "_id" {
			ref = rs[0].patient
		}
		// A compartment with several links (an Observation's subject or
		// performer) is narrowed to the one added; the rest are still checked.
		q.Add(name, ref)
	case allConfined(rs):
		// A type outside the compartment holds no one's record.
	default:
		exact = false
	}
	first := rs[0].query
	same := !slices.ContainsFunc(rs, func(r rule) bool { return !equalQuery(r.query, first) })
	switch {
	case first == nil && same:
	case same:
		for k, vs := range first {
			for _, v := range vs {
				q.Add(k, v)
			}
		}
	default:
		exact = false
	}
	return exact
}

func allUnconfined(rs []rule) bool {
	return !slices.ContainsFunc(rs, func(r rule) bool { return r.patient != "" })
}

func equalQuery(a, b url.Values) bool {
	return maps.EqualFunc(a, b, slices.Equal)
}

// Allowed reports whether the grant lets the app see (or write) res, a
// resource of the given type, with the permission perm: some scope must
// allow it, and that scope's patient and search parameters must hold for res.
func Allowed(def *compartment.Definition, g Grant, typ string, perm smart.Perms, res map[string]any) bool {
	return allowedBy(def, g.rules(typ, perm), typ, res)
}

func allowedBy(def *compartment.Definition, rs []rule, typ string, res map[string]any) bool {
	for _, r := range rs {
		if r.patient != "" && !inPatient(def, typ, res, r.patient) {
			continue
		}
		if !matchesQuery(def, typ, res, r.query) {
			continue
		}
		return true
	}
	return false
}

// inPatient reports whether res is the patient's or belongs to its
// compartment. A resource type outside the compartment (Medication,
// Practitioner) holds no one's record, so a patient/ scope naming it reads it.
func inPatient(def *compartment.Definition, typ string, res map[string]any, patient string) bool {
	if typ == "Patient" {
		id, _ := res["id"].(string)
		return id == patient
	}
	if !def.InCompartment(typ) {
		return true
	}
	return def.Member(res, patient)
}

// matchesQuery applies a granular scope's parameters to a resource: every
// parameter must match, and a parameter the gateway cannot evaluate fails.
func matchesQuery(def *compartment.Definition, typ string, res map[string]any, q url.Values) bool {
	for name, values := range q {
		for _, v := range values {
			ok, known := def.MatchToken(res, typ, name, v)
			if !ok || !known {
				return false
			}
		}
	}
	return true
}
