package manage

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/smartauth/smartauth/storage"
)

// LaunchTTL is how long a launch value stays usable. The EHR hands it to
// the app at once and the app authorizes straight away, so a short life
// limits what a leaked value is worth; SMART only asks that it be short.
const LaunchTTL = 10 * time.Minute

// Limits on fhirContext, far above what an EHR sends, so that a launch
// record stays small.
const (
	maxFHIRContextItems = 100
	maxFHIRContextBytes = 16 << 10
)

var (
	// fhirIDPattern is a FHIR resource id (FHIR R4 id datatype).
	fhirIDPattern = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	// resourceTypePattern is the shape of a FHIR resource type name.
	resourceTypePattern = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)
	// relativeReferencePattern is "Type/id", optionally with a version.
	relativeReferencePattern = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?$`)
	// intentPattern keeps intent a short token, as SMART's examples are
	// ("reconcile-medications"): nothing an app could mistake for markup.
	intentPattern = regexp.MustCompile(`^[A-Za-z0-9._:/-]{1,64}$`)
)

// LaunchInput is what an EHR gives to launch an app in a clinical context.
type LaunchInput struct {
	TenantID string
	// ClientID is the app the launch is for; only that app may use it.
	ClientID string
	// Patient and Encounter are FHIR resource ids, not references.
	Patient   string
	Encounter string
	// FHIRContext is SMART 2.2's fhirContext: a JSON array of objects, each
	// with a reference, canonical or identifier.
	FHIRContext       []byte
	NeedPatientBanner *bool
	// SmartStyleURL is an https URL (http only on loopback).
	SmartStyleURL string
	Intent        string
	// User is a user id or email of the tenant; empty for none.
	User string
	// Aud is the tenant FHIR base URL the app is to use; empty means the first.
	Aud string
}

// LaunchResult is a new launch as the EHR launch API and the command line
// report it.
type LaunchResult struct {
	// Launch is the opaque value the app passes as the launch parameter.
	Launch string `json:"launch"`
	// ExpiresIn is the lifetime of the value in seconds.
	ExpiresIn int64 `json:"expires_in"`
	// Iss is the FHIR base URL the app is launched against.
	Iss string `json:"iss"`
	// LaunchURL opens the app: its launch URI with iss and launch added;
	// empty when the app has registered no launch URI.
	LaunchURL string `json:"launch_url,omitempty"`
}

// CreateLaunch validates in and stores a launch context for one app, valid
// for LaunchTTL. It returns the launch as stored and the raw launch value,
// which is shown to the EHR and never written to the audit trail.
func (s *Service) CreateLaunch(ctx context.Context, in LaunchInput, who Actor) (storage.Launch, string, error) {
	l, value, _, err := s.createLaunch(ctx, in, who)
	return l, value, err
}

// LaunchApp creates a launch as CreateLaunch does and returns what the EHR
// needs to open the app.
func (s *Service) LaunchApp(ctx context.Context, in LaunchInput, who Actor) (LaunchResult, error) {
	_, value, res, err := s.createLaunch(ctx, in, who)
	if err != nil {
		return LaunchResult{}, err
	}
	res.Launch = value
	res.ExpiresIn = int64(LaunchTTL / time.Second)
	return res, nil
}

func (s *Service) createLaunch(ctx context.Context, in LaunchInput, who Actor) (storage.Launch, string, LaunchResult, error) {
	var res LaunchResult
	t, err := s.store.GetTenant(ctx, in.TenantID)
	if err != nil {
		return storage.Launch{}, "", res, fmt.Errorf("tenant %q: %w", in.TenantID, err)
	}
	if res.Iss, err = launchIssuer(t, in.Aud); err != nil {
		return storage.Launch{}, "", res, err
	}
	if strings.TrimSpace(in.ClientID) == "" {
		return storage.Launch{}, "", res, invalid("client_id, the app to launch, is required")
	}
	c, err := s.store.GetClient(ctx, in.TenantID, in.ClientID)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Launch{}, "", res, invalid("client %q is not registered with tenant %q", in.ClientID, in.TenantID)
	}
	if err != nil {
		return storage.Launch{}, "", res, fmt.Errorf("client %q: %w", in.ClientID, err)
	}
	if !slices.Contains(c.GrantTypes, GrantAuthorizationCode) {
		return storage.Launch{}, "", res, invalid("client %q does not use the authorization_code grant, so it cannot be launched", c.ID)
	}
	lc, err := validateLaunchContext(in)
	if err != nil {
		return storage.Launch{}, "", res, err
	}
	userID, err := s.launchUser(ctx, in.TenantID, strings.TrimSpace(in.User))
	if err != nil {
		return storage.Launch{}, "", res, err
	}

	value := newLaunchValue()
	now := s.timestamp()
	l := storage.Launch{
		TenantID:  in.TenantID,
		ID:        value,
		ClientID:  c.ID,
		UserID:    userID,
		Aud:       res.Iss,
		Context:   lc,
		CreatedAt: now,
		ExpiresAt: now.Add(LaunchTTL),
	}
	// The URL first: a launch stored for a URL that cannot be built would
	// be left behind, unused.
	if c.LaunchURI != "" {
		if res.LaunchURL, err = launchURL(c.LaunchURI, res.Iss, value); err != nil {
			return storage.Launch{}, "", res, err
		}
	}
	if err := s.store.CreateLaunch(ctx, l); err != nil {
		return storage.Launch{}, "", res, fmt.Errorf("create launch for client %q: %w", c.ID, err)
	}
	details := map[string]string{"client_id": c.ID, "iss": res.Iss}
	for k, v := range map[string]string{"patient": lc.Patient, "encounter": lc.Encounter, "intent": lc.Intent} {
		if v != "" {
			details[k] = v
		}
	}
	_, err = s.store.AppendAudit(ctx, storage.AuditEvent{
		TenantID: in.TenantID,
		Time:     now,
		Type:     "launch.create",
		Outcome:  "success",
		ActorID:  who.ID,
		ClientID: c.ID,
		Subject:  userID,
		SourceIP: who.SourceIP,
		Details:  details,
	})
	if err != nil {
		return storage.Launch{}, "", res, fmt.Errorf("record audit event launch.create: %w", err)
	}
	return l, value, res, nil
}

// launchIssuer is the FHIR base URL a launch names as iss: aud when it is
// one of the tenant's, else the tenant's first.
func launchIssuer(t storage.Tenant, aud string) (string, error) {
	if len(t.FHIRBaseURLs) == 0 {
		return "", invalid("tenant %q has no FHIR base URL to launch against", t.ID)
	}
	aud = strings.TrimRight(strings.TrimSpace(aud), "/")
	if aud == "" {
		return t.FHIRBaseURLs[0], nil
	}
	for _, u := range t.FHIRBaseURLs {
		if u == aud {
			return u, nil
		}
	}
	return "", invalid("aud %q is not one of the tenant's FHIR base URLs", aud)
}

// launchURL adds iss and launch to the app's launch URI, keeping its own
// query parameters.
func launchURL(launchURI, iss, value string) (string, error) {
	u, err := url.Parse(launchURI)
	if err != nil {
		return "", fmt.Errorf("launch URI %q of the client: %w", launchURI, err)
	}
	q := u.Query()
	q.Set("iss", iss)
	q.Set("launch", value)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// validateLaunchContext checks every context field of in and returns them
// as stored.
func validateLaunchContext(in LaunchInput) (storage.LaunchContext, error) {
	lc := storage.LaunchContext{
		Patient:           strings.TrimSpace(in.Patient),
		Encounter:         strings.TrimSpace(in.Encounter),
		NeedPatientBanner: in.NeedPatientBanner,
		SmartStyleURL:     strings.TrimSpace(in.SmartStyleURL),
		Intent:            strings.TrimSpace(in.Intent),
	}
	for _, f := range []struct{ name, value string }{{"patient", lc.Patient}, {"encounter", lc.Encounter}} {
		if f.value != "" && !fhirIDPattern.MatchString(f.value) {
			return lc, invalid("%s %q must be a FHIR id (letters, digits, - and ., at most 64), not a reference", f.name, f.value)
		}
	}
	if lc.SmartStyleURL != "" {
		if err := checkAppURL("smart_style_url", lc.SmartStyleURL); err != nil {
			return lc, err
		}
	}
	if lc.Intent != "" && !intentPattern.MatchString(lc.Intent) {
		return lc, invalid("intent %q must be a short token: letters, digits and . _ : / - (at most 64)", lc.Intent)
	}
	fc, err := checkFHIRContext(in.FHIRContext)
	if err != nil {
		return lc, err
	}
	lc.FHIRContext = fc
	return lc, nil
}

// checkFHIRContext applies SMART 2.2's rules to fhirContext and returns it
// compacted, or nil when it is absent, null or empty.
func checkFHIRContext(raw []byte) ([]byte, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if len(raw) > maxFHIRContextBytes {
		return nil, invalid("fhirContext must be at most %d bytes", maxFHIRContextBytes)
	}
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, invalid("fhirContext must be a JSON array of objects: %v", err)
	}
	if len(items) == 0 {
		return nil, nil
	}
	if len(items) > maxFHIRContextItems {
		return nil, invalid("fhirContext must hold at most %d items", maxFHIRContextItems)
	}
	for i, item := range items {
		if err := checkFHIRContextItem(item); err != nil {
			return nil, invalid("fhirContext item %d: %v", i+1, err)
		}
	}
	var out bytes.Buffer
	if err := json.Compact(&out, raw); err != nil {
		return nil, invalid("fhirContext is not valid JSON: %v", err)
	}
	return out.Bytes(), nil
}

// checkFHIRContextItem checks one fhirContext object: it names its
// resource by a relative reference, a canonical URL or an identifier, may
// say its type and its role, and names a Patient or Encounter only in a
// role other than the launch itself, which patient and encounter carry.
func checkFHIRContextItem(item map[string]json.RawMessage) error {
	str := func(key string) (string, bool, error) {
		v, ok := item[key]
		if !ok {
			return "", false, nil
		}
		var s string
		if err := json.Unmarshal(v, &s); err != nil || strings.TrimSpace(s) == "" {
			return "", true, fmt.Errorf("%s must be a non-empty string", key)
		}
		return s, true, nil
	}
	ref, hasRef, err := str("reference")
	if err != nil {
		return err
	}
	canonical, hasCanonical, err := str("canonical")
	if err != nil {
		return err
	}
	typ, hasType, err := str("type")
	if err != nil {
		return err
	}
	role, hasRole, err := str("role")
	if err != nil {
		return err
	}
	_, hasIdentifier := item["identifier"]
	if !hasRef && !hasCanonical && !hasIdentifier {
		return errors.New("needs a reference, a canonical or an identifier")
	}
	if hasRef && !relativeReferencePattern.MatchString(ref) {
		return fmt.Errorf("reference %q must be a relative reference such as DiagnosticReport/123", ref)
	}
	if hasCanonical {
		base, _, _ := strings.Cut(canonical, "|")
		u, err := url.Parse(base)
		if err != nil || !u.IsAbs() {
			return fmt.Errorf("canonical %q must be an absolute URL, optionally followed by |version", canonical)
		}
	}
	if hasIdentifier {
		var id struct {
			System *string `json:"system"`
			Value  *string `json:"value"`
		}
		if err := json.Unmarshal(item["identifier"], &id); err != nil || id.Value == nil || strings.TrimSpace(*id.Value) == "" {
			return errors.New("identifier must be an object with a value")
		}
	}
	if hasType && !resourceTypePattern.MatchString(typ) {
		return fmt.Errorf("type %q must be a FHIR resource type", typ)
	}
	if hasRef && hasType && !strings.HasPrefix(ref, typ+"/") {
		return fmt.Errorf("type %q does not match reference %q", typ, ref)
	}
	if hasRole {
		if u, err := url.Parse(role); role != "launch" && (err != nil || !u.IsAbs()) {
			return fmt.Errorf("role %q must be an absolute URI or launch", role)
		}
	}
	if !hasRole || role == "launch" {
		resourceType, _, _ := strings.Cut(ref, "/")
		if !hasRef {
			resourceType = typ
		}
		if resourceType == "Patient" || resourceType == "Encounter" {
			return fmt.Errorf("a %s in the launch role goes in %s, not fhirContext", resourceType, strings.ToLower(resourceType))
		}
	}
	return nil
}

// launchUser resolves the user a launch is for, given by id or email, to
// its id; empty stays empty.
func (s *Service) launchUser(ctx context.Context, tenantID, user string) (string, error) {
	if user == "" {
		return "", nil
	}
	var u storage.User
	var err error
	if strings.Contains(user, "@") {
		u, err = s.store.GetUserByEmail(ctx, tenantID, user)
	} else {
		u, err = s.store.GetUser(ctx, tenantID, user)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return "", invalid("user %q is not a user of tenant %q", user, tenantID)
	}
	if err != nil {
		return "", fmt.Errorf("user %q: %w", user, err)
	}
	if u.Disabled {
		return "", invalid("user %q is disabled", user)
	}
	return u.ID, nil
}

// newLaunchValue returns 256 random bits, base64url-encoded: unguessable,
// so holding the value is what entitles an app to the context.
func newLaunchValue() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // the platform is broken; nothing safe to do
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
