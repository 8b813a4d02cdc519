package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// Code systems and URLs of the FHIR export.
const (
	// EventTypeSystem names our own event type (such as "token.issue"),
	// carried as a subtype of every exported event so nothing is lost to the
	// coarser standard codes. A fixed URN, not the issuer, keeps one code
	// system across tenants and across a change of host name.
	EventTypeSystem = "urn:smartauth:audit-event-type"
	// ChainExtensionURL is the extension carrying an event's place in its
	// tenant's hash chain: sub-extensions "seq", "prevHash" and "hash", all
	// valueString, the hashes in lower-case hex. seq is a string because R4
	// integers stop at 2^31-1 and a busy tenant's trail need not.
	ChainExtensionURL = "urn:smartauth:audit-chain"

	dcmSystem          = "http://dicom.nema.org/resources/ontology/DCM"
	hl7EventTypeSystem = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	sourceTypeSystem   = "http://terminology.hl7.org/CodeSystem/security-source-type"
)

// AuditEventResource is a FHIR R4 AuditEvent, as far as smartauth fills it.
type AuditEventResource struct {
	ResourceType string      `json:"resourceType"`
	ID           string      `json:"id"`
	Extension    []Extension `json:"extension,omitempty"`
	Type         Coding      `json:"type"`
	Subtype      []Coding    `json:"subtype,omitempty"`
	Action       string      `json:"action,omitempty"`
	Recorded     string      `json:"recorded"`
	Outcome      string      `json:"outcome,omitempty"`
	OutcomeDesc  string      `json:"outcomeDesc,omitempty"`
	Agent        []Agent     `json:"agent"`
	Source       Source      `json:"source"`
	Entity       []Entity    `json:"entity,omitempty"`
}

// Extension is a FHIR extension holding a string or nested extensions.
type Extension struct {
	URL         string      `json:"url"`
	ValueString string      `json:"valueString,omitempty"`
	Extension   []Extension `json:"extension,omitempty"`
}

// Coding is a FHIR Coding: a code from a code system.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code,omitempty"`
	Display string `json:"display,omitempty"`
}

// CodeableConcept is a FHIR CodeableConcept reduced to its codings.
type CodeableConcept struct {
	Coding []Coding `json:"coding"`
}

// Identifier is a FHIR Identifier: a value unique within its system.
type Identifier struct {
	System string `json:"system,omitempty"`
	Value  string `json:"value"`
}

// Reference is a FHIR Reference by identifier or by display text only.
type Reference struct {
	Identifier *Identifier `json:"identifier,omitempty"`
	Display    string      `json:"display,omitempty"`
}

// Agent is an AuditEvent.agent: someone or something that took part.
type Agent struct {
	Type *CodeableConcept `json:"type,omitempty"`
	Who  *Reference       `json:"who,omitempty"`
	// Requestor has no omitempty: R4 requires it even when false.
	Requestor bool          `json:"requestor"`
	Network   *AgentNetwork `json:"network,omitempty"`
}

// AgentNetwork is an AuditEvent.agent.network: where the agent acted from.
type AgentNetwork struct {
	Address string `json:"address"`
	Type    string `json:"type,omitempty"`
}

// Source is an AuditEvent.source: the system that recorded the event.
type Source struct {
	Site     string    `json:"site,omitempty"`
	Observer Reference `json:"observer"`
	Type     []Coding  `json:"type,omitempty"`
}

// Entity is an AuditEvent.entity: what the event was about.
type Entity struct {
	What   *Reference     `json:"what,omitempty"`
	Detail []EntityDetail `json:"detail,omitempty"`
}

// EntityDetail is an AuditEvent.entity.detail: one named value.
type EntityDetail struct {
	Type        string `json:"type"`
	ValueString string `json:"valueString"`
}

// FHIRAuditEvent maps a stored audit event of the tenant whose issuer is
// issuer to a FHIR R4 AuditEvent.
//
// Type follows the DICOM codes FHIR R4 lists for audit events:
// sign-in and MFA events are 110114 User Authentication with subtype 110122
// Login (logout: 110123 Logout); authorize, consent, token and client
// authentication events are also 110114, as IHE BALP records an OAuth
// access-token request (ITI-71); a refused reuse of a code or refresh token
// is 110113 Security Alert; admin changes are 110113 Security Alert with
// subtype 110129 Security Configuration, or 110137 for changes to users,
// except a patient import, 110107 Import; launch creation, an EHR's API call,
// is HL7's "rest"; anything else is 110100 Application Activity. Our own type
// is always added as a subtype in EventTypeSystem.
//
// Action is C, R, U or D from the verb that ends an admin or launch type
// (create, read, update, delete and their synonyms) and from mfa.enroll;
// sign-ins, consent and token operations, revocation included, execute (E).
//
// Outcome is 0 for "success" and 4 (minor failure) for "failure": every
// failure we record is a refused request, the client's or user's doing, not
// a fault of ours (8 and 12). Another outcome leaves the element out.
//
// The first agent is the actor, holding SourceIP; when ActorID is empty it is
// "anonymous" and not the requestor. The client, when known, is a second
// agent. The entity names the Subject and carries each detail, except those
// with an empty key or value, which FHIR strings cannot hold. Strings are
// exported as stored, so the export matches the chain byte for byte; JSON
// escaping keeps control characters and markup inert.
func FHIRAuditEvent(e storage.AuditEvent, issuer string) AuditEventResource {
	base := strings.TrimSuffix(issuer, "/")
	typ, subtypes, action := classify(e.Type)
	if e.Type != "" {
		subtypes = append(subtypes, Coding{System: EventTypeSystem, Code: e.Type})
	}
	r := AuditEventResource{
		ResourceType: "AuditEvent",
		ID:           resourceID(e.TenantID, e.Seq),
		Extension:    []Extension{chainExtension(e)},
		Type:         typ,
		Subtype:      subtypes,
		Action:       action,
		Recorded:     e.Time.UTC().Format(time.RFC3339Nano),
		Outcome:      outcomeCode(e.Outcome),
		OutcomeDesc:  e.Details["reason"],
		Agent:        agents(e, issuer, base),
		Source: Source{
			Site:     e.TenantID,
			Observer: Reference{Display: "smartauth " + issuer},
			Type:     []Coding{{System: sourceTypeSystem, Code: "4", Display: "Application Server"}},
		},
	}
	if entity, ok := subjectEntity(e); ok {
		r.Entity = []Entity{entity}
	}
	return r
}

// WriteBundle writes events as one FHIR R4 Bundle of type "collection",
// each entry's fullUrl under issuer.
func WriteBundle(w io.Writer, events []storage.AuditEvent, issuer string) error {
	type entry struct {
		FullURL  string             `json:"fullUrl"`
		Resource AuditEventResource `json:"resource"`
	}
	type bundle struct {
		ResourceType string  `json:"resourceType"`
		Type         string  `json:"type"`
		Entry        []entry `json:"entry,omitempty"`
	}
	b := bundle{ResourceType: "Bundle", Type: "collection", Entry: make([]entry, 0, len(events))}
	base := strings.TrimSuffix(issuer, "/")
	for _, e := range events {
		r := FHIRAuditEvent(e, issuer)
		b.Entry = append(b.Entry, entry{FullURL: base + "/AuditEvent/" + r.ID, Resource: r})
	}
	if err := json.NewEncoder(w).Encode(b); err != nil {
		return fmt.Errorf("audit: write bundle of %d events: %w", len(events), err)
	}
	return nil
}

// WriteNDJSON writes events as FHIR Bulk Data NDJSON: one AuditEvent per line.
func WriteNDJSON(w io.Writer, events []storage.AuditEvent, issuer string) error {
	enc := json.NewEncoder(w)
	for _, e := range events {
		// Encode ends each resource with a newline and escapes any inside
		// it, so a resource is always exactly one line.
		if err := enc.Encode(FHIRAuditEvent(e, issuer)); err != nil {
			return fmt.Errorf("audit: write event %d as NDJSON: %w", e.Seq, err)
		}
	}
	return nil
}

// fhirID is the syntax of a FHIR resource id.
var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// resourceID is "<tenant>-<seq>" when that is a valid FHIR id. Otherwise
// (the operator realm's "_operators", or a tenant id too long) the tenant is
// replaced by a hash of it after "h.": tenant ids have no dots, so the two
// forms cannot collide.
func resourceID(tenantID string, seq int64) string {
	suffix := "-" + strconv.FormatInt(seq, 10)
	if id := tenantID + suffix; fhirID.MatchString(id) {
		return id
	}
	sum := sha256.Sum256([]byte(tenantID))
	return "h." + hex.EncodeToString(sum[:16]) + suffix
}

func chainExtension(e storage.AuditEvent) Extension {
	ext := Extension{URL: ChainExtensionURL, Extension: []Extension{{URL: "seq", ValueString: strconv.FormatInt(e.Seq, 10)}}}
	// The first event has no predecessor, and FHIR has no empty strings.
	if len(e.PrevHash) > 0 {
		ext.Extension = append(ext.Extension, Extension{URL: "prevHash", ValueString: hex.EncodeToString(e.PrevHash)})
	}
	if len(e.Hash) > 0 {
		ext.Extension = append(ext.Extension, Extension{URL: "hash", ValueString: hex.EncodeToString(e.Hash)})
	}
	return ext
}

func dcm(code, display string) Coding {
	return Coding{System: dcmSystem, Code: code, Display: display}
}

// classify gives an event type its standard type, standard subtypes and
// action; FHIRAuditEvent documents the choices.
func classify(eventType string) (Coding, []Coding, string) {
	family, _, _ := strings.Cut(eventType, ".")
	verb := eventType[strings.LastIndex(eventType, ".")+1:]
	userAuthentication := dcm("110114", "User Authentication")
	securityAlert := dcm("110113", "Security Alert")
	switch family {
	case "login":
		return userAuthentication, []Coding{dcm("110122", "Login")}, "E"
	case "mfa":
		action := "E"
		if verb == "enroll" {
			action = "C"
		}
		return userAuthentication, []Coding{dcm("110122", "Login")}, action
	case "logout":
		return userAuthentication, []Coding{dcm("110123", "Logout")}, "E"
	case "authorize", "consent", "token", "client":
		if strings.HasSuffix(verb, "_reuse") {
			return securityAlert, nil, "E"
		}
		return userAuthentication, nil, "E"
	case "launch":
		return Coding{System: hl7EventTypeSystem, Code: "rest", Display: "RESTful Operation"}, nil, verbAction(verb)
	case "fhir":
		// A request through the SMART gateway: its subtype is the FHIR
		// RESTful interaction itself (read, search-type, history-instance…);
		// a request the gateway could not classify has none.
		if verb == "unknown" {
			return Coding{System: hl7EventTypeSystem, Code: "rest", Display: "RESTful Operation"}, nil, "E"
		}
		return Coding{System: hl7EventTypeSystem, Code: "rest", Display: "RESTful Operation"},
			[]Coding{{System: restfulInteractionSystem, Code: verb}}, interactionAction(verb)
	case "admin":
		if verb == "import" {
			return dcm("110107", "Import"), nil, "C"
		}
		sub := dcm("110129", "Security Configuration")
		if strings.HasPrefix(eventType, "admin.user.") {
			sub = dcm("110137", "User security Attributes Changed")
		}
		return securityAlert, []Coding{sub}, verbAction(verb)
	}
	return dcm("110100", "Application Activity"), nil, verbAction(verb)
}

// restfulInteractionSystem is FHIR's code system of RESTful interactions.
const restfulInteractionSystem = "http://hl7.org/fhir/restful-interaction"

// interactionAction is the action code of a FHIR RESTful interaction.
func interactionAction(interaction string) string {
	switch interaction {
	case "read", "vread", "search-type", "history-instance", "history-type":
		return "R"
	case "create":
		return "C"
	case "update", "patch":
		return "U"
	case "delete":
		return "D"
	}
	return "E"
}

// verbAction maps the last word of an event type to a FHIR action code by
// its leading verb ("reset_password" is a reset), execute (E) for a verb it
// does not know.
func verbAction(word string) string {
	verb, _, _ := strings.Cut(word, "_")
	switch verb {
	case "create", "add", "import", "register", "enroll":
		return "C"
	case "read", "view", "list", "search", "export":
		return "R"
	case "update", "set", "edit", "rotate", "enable", "disable", "reset", "retire":
		return "U"
	case "delete", "remove", "clear", "revoke":
		return "D"
	}
	return "E"
}

func outcomeCode(outcome string) string {
	switch outcome {
	case "success":
		return "0"
	case "failure":
		return "4"
	}
	return ""
}

func agents(e storage.AuditEvent, issuer, base string) []Agent {
	actor := Agent{Who: &Reference{Display: "anonymous"}}
	if e.ActorID != "" {
		actor = Agent{Who: &Reference{Identifier: &Identifier{System: issuer, Value: e.ActorID}}, Requestor: true}
	}
	if e.SourceIP != "" {
		actor.Network = &AgentNetwork{Address: e.SourceIP}
		if _, err := netip.ParseAddr(e.SourceIP); err == nil {
			actor.Network.Type = "2" // IP address
		}
	}
	out := []Agent{actor}
	if e.ClientID != "" {
		out = append(out, Agent{
			Type: &CodeableConcept{Coding: []Coding{dcm("110150", "Application")}},
			Who:  &Reference{Identifier: &Identifier{System: base + "/clients", Value: e.ClientID}},
		})
	}
	return out
}

func subjectEntity(e storage.AuditEvent) (Entity, bool) {
	var entity Entity
	if e.Subject != "" {
		entity.What = &Reference{Identifier: &Identifier{Value: e.Subject}}
	}
	keys := make([]string, 0, len(e.Details))
	for k, v := range e.Details {
		if k != "" && v != "" {
			keys = append(keys, k)
		}
	}
	// Sorted, so one event always exports to the same bytes.
	sort.Strings(keys)
	for _, k := range keys {
		entity.Detail = append(entity.Detail, EntityDetail{Type: k, ValueString: e.Details[k]})
	}
	return entity, entity.What != nil || len(entity.Detail) > 0
}
