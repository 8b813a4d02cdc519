package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/smartauth/smartauth/server/keys"
	"github.com/smartauth/smartauth/server/manage"
	"github.com/smartauth/smartauth/storage"
)

// cliActor is who the audit trail names for command-line changes.
var cliActor = manage.Actor{ID: "cli"}

// listFlag collects a repeatable flag; commas also separate values.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// manageCommand runs the subcommands of the managing commands (nouns).
func manageCommand(ctx context.Context, n noun, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	noun, verbs := n.name, strings.Join(n.verbNames(), ", ")
	if len(args) > 0 && (args[0] == "help" || isHelp(args[:1])) {
		printNounUsage(stdout, n)
		return nil
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usageError{fmt.Sprintf("%s needs a subcommand: %s", noun, verbs)}
	}
	verb := args[0]
	if !n.has(verb) {
		return usageError{fmt.Sprintf("unknown subcommand %q of %s; try %s", verb, noun, verbs)}
	}
	fs := flag.NewFlagSet(noun+" "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	load := storeFlags(fs, env)
	var act func(d *deps) (any, error)
	var required []string
	// names lists, once the flags are parsed, the records the command
	// names besides its --tenant, so that failures about them read plainly.
	names := func() []record { return nil }
	tenant := func() *string {
		required = append(required, "tenant")
		return fs.String("tenant", "", "tenant id (required)")
	}

	switch noun + " " + verb {
	case "tenant create":
		var in manage.TenantInput
		var bases listFlag
		required = append(required, "id")
		fs.StringVar(&in.ID, "id", "", "tenant id, used in URLs (required)")
		fs.StringVar(&in.Name, "name", "", "display name")
		fs.Var(&bases, "fhir-base-url", "FHIR base URL the tenant's tokens are for (repeatable; required)")
		fs.BoolVar(&in.Policy.MFARequired, "mfa-required", false, "require a second factor at every sign-in (an upstream MFA amr counts)")
		fs.BoolVar(&in.Policy.MFAOffered, "mfa-offered", false, "offer a second factor, which users may skip, at password sign-in")
		fs.BoolVar(&in.Policy.JITProvisioning, "jit-provisioning", false, "create users on their first federated sign-in")
		fs.BoolVar(&in.Policy.AllowEmailLinking, "allow-email-linking", false, "link a federated identity to the user with its verified email")
		accessTTL := fs.Duration("access-token-ttl", 0, "access token lifetime (default 1h)")
		refreshTTL := fs.Duration("refresh-token-ttl", 0, "refresh token lifetime (default 2160h, 90 days)")
		idTTL := fs.Duration("id-token-ttl", 0, "ID token lifetime (default 1h)")
		fs.StringVar(&in.Policy.AccessTokenAlg, "access-token-alg", "", "access token signing algorithm: RS256, PS256 or ES256 (default ES256)")
		names = func() []record { return []record{creating(tenantRecord(in.ID))} }
		act = func(d *deps) (any, error) {
			in.FHIRBaseURLs = bases
			in.Policy.AccessTokenTTL = storage.Duration(*accessTTL)
			in.Policy.RefreshTokenTTL = storage.Duration(*refreshTTL)
			in.Policy.IDTokenTTL = storage.Duration(*idTTL)
			t, err := d.manage.CreateTenant(ctx, in, cliActor)
			if err != nil {
				return nil, err
			}
			ks, err := d.store.ListSigningKeys(ctx, t.ID)
			return tenantView(t, ks), err
		}
	case "tenant set-access-token-alg":
		t := tenant()
		required = append(required, "alg")
		alg := fs.String("alg", "", "RS256, PS256 or ES256 (required)")
		act = func(d *deps) (any, error) {
			cur, err := d.store.GetTenant(ctx, *t)
			if err != nil {
				return nil, fmt.Errorf("tenant %q: %w", *t, err)
			}
			// Everything else stays as it is; the version refuses a change
			// made meanwhile rather than undo it.
			p := cur.Policy
			updated, err := d.manage.UpdateTenant(ctx, manage.TenantUpdate{
				ID: cur.ID, Name: cur.Name, FHIRBaseURLs: cur.FHIRBaseURLs,
				MFARequired: p.MFARequired, MFAOffered: p.MFAOffered, AllowEmailLinking: p.AllowEmailLinking,
				JITProvisioning: p.JITProvisioning, OpaqueAccessTokens: p.OpaqueAccessTokens, AccessTokenAlg: *alg,
				AccessTokenTTL: time.Duration(p.AccessTokenTTL), RefreshTokenTTL: time.Duration(p.RefreshTokenTTL), IDTokenTTL: time.Duration(p.IDTokenTTL),
				Version: cur.Version,
			}, cliActor)
			if err != nil {
				return nil, err
			}
			ks, err := d.store.ListSigningKeys(ctx, updated.ID)
			return tenantView(updated, ks), err
		}
	case "tenant set-rate-limits":
		t := tenant()
		clientLimit := fs.Int("client-per-minute", 0, "requests a minute one client may make; 0 means the default, 6000; negative means no limit")
		addressLimit := fs.Int("address-per-minute", 0, "requests a minute one source address may make; 0 means the default, 6000; negative means no limit")
		act = func(d *deps) (any, error) {
			cur, err := d.store.GetTenant(ctx, *t)
			if err != nil {
				return nil, fmt.Errorf("tenant %q: %w", *t, err)
			}
			// A flag not given keeps its limit; everything else stays, and
			// the version refuses a change made meanwhile rather than undo it.
			limits := cur.Policy.RateLimits
			fs.Visit(func(f *flag.Flag) {
				switch f.Name {
				case "client-per-minute":
					limits.ClientPerMinute = *clientLimit
				case "address-per-minute":
					limits.AddressPerMinute = *addressLimit
				}
			})
			p := cur.Policy
			updated, err := d.manage.UpdateTenant(ctx, manage.TenantUpdate{
				ID: cur.ID, Name: cur.Name, FHIRBaseURLs: cur.FHIRBaseURLs,
				MFARequired: p.MFARequired, MFAOffered: p.MFAOffered, AllowEmailLinking: p.AllowEmailLinking,
				JITProvisioning: p.JITProvisioning, OpaqueAccessTokens: p.OpaqueAccessTokens, AccessTokenAlg: p.AccessTokenAlg,
				AccessTokenTTL: time.Duration(p.AccessTokenTTL), RefreshTokenTTL: time.Duration(p.RefreshTokenTTL), IDTokenTTL: time.Duration(p.IDTokenTTL),
				RateLimits: &limits, Version: cur.Version,
			}, cliActor)
			if err != nil {
				return nil, err
			}
			ks, err := d.store.ListSigningKeys(ctx, updated.ID)
			return tenantView(updated, ks), err
		}
	case "tenant set-patient-search", "tenant clear-patient-search":
		var req []string
		act, req = patientSearchCommand(ctx, verb, fs, tenant(), stdin)
		required = append(required, req...)
	case "tenant set-gateway", "tenant clear-gateway":
		var req []string
		act, req = gatewayCommand(ctx, verb, fs, tenant(), stdin)
		required = append(required, req...)
	case "tenant list":
		act = func(d *deps) (any, error) {
			ts, err := d.store.ListTenants(ctx)
			out := []tenantJSON{}
			for _, t := range ts {
				// The operator realm holds operators, not a tenant's data.
				if t.ID != storage.OperatorRealm {
					out = append(out, tenantView(t, nil))
				}
			}
			return out, err
		}
	case "client create":
		var in manage.ClientInput
		var redirects, scopes, grants listFlag
		var typ, jwksFile string
		t := tenant()
		fs.StringVar(&in.ID, "id", "", "client id; generated when empty")
		fs.StringVar(&in.Name, "name", "", "display name (required)")
		fs.StringVar(&typ, "type", "", "public, confidential-symmetric or confidential-asymmetric (required)")
		fs.Var(&redirects, "redirect-uri", "redirect URI, matched exactly (repeatable)")
		fs.Var(&scopes, "scope", "scopes the client may be granted (space- or comma-separated, repeatable)")
		fs.Var(&grants, "grant-type", "authorization_code, refresh_token, client_credentials, "+manage.GrantTokenExchange+" (default by type)")
		fs.StringVar(&in.JWKSURL, "jwks-url", "", "URL of the client's public JWKS (confidential-asymmetric)")
		fs.StringVar(&jwksFile, "jwks-file", "", "file holding the client's public JWKS inline (confidential-asymmetric)")
		fs.StringVar(&in.LaunchURI, "launch-uri", "", "the app's EHR launch URL")
		fs.BoolVar(&in.CanCreateLaunch, "can-create-launch", false, "allow this client to create EHR launch contexts")
		fs.DurationVar(&in.AccessTokenTTL, "access-token-ttl", 0, "access token lifetime for this client (default: the tenant's)")
		names = func() []record { return []record{creating(clientRecord(*t, in.ID))} }
		act = func(d *deps) (any, error) {
			in.TenantID, in.Type, in.RedirectURIs, in.GrantTypes = *t, storage.ClientType(typ), redirects, grants
			for _, s := range scopes {
				in.Scopes = append(in.Scopes, strings.Fields(s)...)
			}
			if jwksFile != "" {
				b, err := os.ReadFile(jwksFile)
				if err != nil {
					return nil, fmt.Errorf("read JWKS file: %w", err)
				}
				in.JWKS = b
			}
			c, secret, err := d.manage.CreateClient(ctx, in, cliActor)
			if err != nil {
				return nil, err
			}
			v := clientView(c)
			v.Secret = secret
			return v, nil
		}
	case "client list":
		t := tenant()
		act = func(d *deps) (any, error) {
			cs, err := d.store.ListClients(ctx, *t)
			out := []clientJSON{}
			for _, c := range cs {
				out = append(out, clientView(c))
			}
			return out, err
		}
	case "client delete":
		t := tenant()
		id := fs.String("id", "", "client id (required)")
		required = append(required, "id")
		names = func() []record { return []record{clientRecord(*t, *id)} }
		act = func(d *deps) (any, error) {
			return map[string]any{"deleted": *id}, d.manage.DeleteClient(ctx, *t, *id, cliActor)
		}
	case "client rotate-secret":
		t := tenant()
		id := fs.String("id", "", "client id (required)")
		required = append(required, "id")
		names = func() []record { return []record{clientRecord(*t, *id)} }
		act = func(d *deps) (any, error) {
			secret, err := d.manage.RotateClientSecret(ctx, *t, *id, cliActor)
			return map[string]string{"client_id": *id, "client_secret": secret}, err
		}
	case "client initial-access-token":
		act = initialAccessTokenCommand(ctx, fs, tenant())
	case "client list-initial-access-tokens":
		act = listInitialAccessTokensCommand(ctx, tenant())
	case "client revoke-initial-access-token":
		required = append(required, "ref")
		t := tenant()
		act = revokeInitialAccessTokenCommand(ctx, fs, t)
		names = func() []record { return []record{initialAccessTokenRecord(*t, fs.Lookup("ref").Value.String())} }
	case "user create":
		var in manage.UserInput
		var profiles listFlag
		t := tenant()
		required = append(required, "email")
		fs.StringVar(&in.Email, "email", "", "email address, the sign-in name (required)")
		fs.Var(&profiles, "profile", "FHIR identity such as Practitioner/123 or Patient/456=Self (repeatable; at least one)")
		noPassword := fs.Bool("no-password", false, "create without a password (federated sign-in only)")
		names = func() []record { return []record{creating(userRecord(*t, in.Email))} }
		act = func(d *deps) (any, error) {
			in.TenantID = *t
			if len(profiles) == 0 {
				return nil, usageError{"user create needs at least one --profile"}
			}
			for _, p := range profiles {
				prof, err := manage.ParseProfile(p)
				if err != nil {
					return nil, err
				}
				in.Profiles = append(in.Profiles, prof)
			}
			if !*noPassword {
				pw, err := readPassword(stdin)
				if err != nil {
					return nil, err
				}
				in.Password = pw
			}
			u, err := d.manage.CreateUser(ctx, in, cliActor)
			if err != nil {
				return nil, err
			}
			return userJSON{Tenant: u.TenantID, ID: u.ID, Email: u.Email, Profiles: u.Profiles, HasPassword: u.PasswordHash != ""}, nil
		}
	case "admin create":
		required = append(required, "email")
		email := fs.String("email", "", "email address, the admin's sign-in name (required)")
		t := fs.String("tenant", "", "make an admin of this tenant only; without it, an operator of every tenant")
		names = func() []record {
			if *t == "" {
				return []record{creating(operatorRecord(*email))}
			}
			return []record{creating(userRecord(*t, *email))}
		}
		act = func(d *deps) (any, error) {
			pw, err := readPassword(stdin)
			if err != nil {
				return nil, err
			}
			u, err := d.manage.CreateAdmin(ctx, *t, *email, pw, cliActor)
			if err != nil {
				return nil, err
			}
			signIn := "/admin/login"
			if *t != "" {
				signIn = "/admin/t/" + *t + "/login"
			}
			return adminJSON{Tenant: *t, ID: u.ID, Email: u.Email, Operator: *t == "", SignInPath: signIn}, nil
		}
	case "admin create-client":
		var req []string
		act, req = adminClientCommand(ctx, fs, env)
		required = append(required, req...)
	case "patient import":
		t := tenant()
		file := fs.String("file", "-", "FHIR Bundle, Patient or NDJSON file; - reads stdin")
		act = func(d *deps) (any, error) {
			r := stdin
			if *file != "-" {
				f, err := os.Open(*file)
				if err != nil {
					return nil, fmt.Errorf("open patients file: %w", err)
				}
				defer f.Close()
				r = f
			}
			res, err := d.manage.ImportPatients(ctx, *t, r, cliActor)
			return map[string]int{"imported": len(res.Patients), "skipped": res.Skipped}, err
		}
	case "keys rotate":
		t := tenant()
		retire := fs.Duration("retire-after", keys.DefaultRetirement, "how long the old keys stay published; at least the tenant's longest token lifetime")
		act = func(d *deps) (any, error) {
			ks, err := d.manage.RotateKeys(ctx, *t, *retire, cliActor)
			return keysView(ks), err
		}
	case "keys list":
		act = keysListCommand(ctx, tenant())
	case "patient list":
		act = patientListCommand(ctx, fs, tenant(), stderr)
	case "idp add", "idp list", "idp delete":
		var req []string
		act, req, names = idpCommand(ctx, verb, fs, tenant(), stdin)
		required = append(required, req...)
	case "launch create":
		var in manage.LaunchInput
		var banner, fhirContext string
		t := tenant()
		required = append(required, "client")
		fs.StringVar(&in.ClientID, "client", "", "id of the app to launch (required)")
		fs.StringVar(&in.Patient, "patient", "", "FHIR id of the patient in context")
		fs.StringVar(&in.Encounter, "encounter", "", "FHIR id of the encounter in context")
		fs.StringVar(&in.User, "user", "", "id or email of the user the app is launched for")
		fs.StringVar(&in.Intent, "intent", "", "intent, such as reconcile-medications")
		fs.StringVar(&in.SmartStyleURL, "style-url", "", "smart_style_url: the EHR's style sheet for the app (https)")
		fs.StringVar(&banner, "banner", "", "need_patient_banner: true or false (default: not said)")
		fs.StringVar(&fhirContext, "fhir-context", "", `fhirContext as a JSON array, such as '[{"reference":"DiagnosticReport/123"}]'`)
		fs.StringVar(&in.Aud, "aud", "", "FHIR base URL of the tenant the app is to use (default: the tenant's first)")
		names = func() []record {
			rs := []record{clientRecord(*t, in.ClientID)}
			if in.User != "" {
				rs = append(rs, userRecord(*t, in.User))
			}
			return rs
		}
		act = func(d *deps) (any, error) {
			in.TenantID = *t
			if banner != "" {
				b, err := strconv.ParseBool(banner)
				if err != nil {
					return nil, usageError{fmt.Sprintf("launch create: --banner %q must be true or false", banner)}
				}
				in.NeedPatientBanner = &b
			}
			in.FHIRContext = []byte(fhirContext)
			return d.manage.LaunchApp(ctx, in, cliActor)
		}
	default:
		return fmt.Errorf("%s %s is listed in help but has no implementation", noun, verb)
	}

	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	for _, name := range required {
		if fs.Lookup(name).Value.String() == "" {
			return usageError{fmt.Sprintf("%s %s: --%s is required", noun, verb, name)}
		}
	}
	c, err := load()
	if err != nil {
		return fmt.Errorf("invalid configuration: %w", err)
	}
	d, err := open(ctx, c, stderr)
	if err != nil {
		return err
	}
	defer d.store.Close()
	records := names()
	if f := fs.Lookup("tenant"); f != nil && f.Value.String() != "" {
		// Every command of a tenant first finds the tenant, so a mistyped
		// one reads the same, and fails the same, whatever the command.
		records = append([]record{tenantRecord(f.Value.String())}, records...)
	}
	r, missing, err := firstMissing(ctx, d.store, records)
	if err != nil {
		return err
	}
	if missing {
		return r.missing()
	}
	out, err := act(d)
	if err != nil {
		// The whole chain, with the layers and constraints it names, is
		// for whoever debugs; the person at the terminal gets one plain line.
		d.log.Debug("command failed", "command", noun+" "+verb, "err", err)
		return explain(ctx, d.store, err, records)
	}
	return printJSON(stdout, out)
}

// readPassword reads one line from stdin, so a password never appears in
// the process list or shell history.
func readPassword(stdin io.Reader) (string, error) {
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", usageError{"smartauth reads the password from stdin: pipe it in (user create also takes --no-password)"}
	}
	return pw, nil
}

// adminJSON describes a new admin account; the second factor is enrolled at its first sign-in.
type adminJSON struct {
	Tenant     string `json:"tenant,omitempty"`
	ID         string `json:"id"`
	Email      string `json:"email"`
	Operator   bool   `json:"operator"`
	SignInPath string `json:"sign_in_path"`
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	// People copy URLs out of this output; \u0026 for & would break them.
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

type tenantJSON struct {
	ID           string               `json:"id"`
	Name         string               `json:"name"`
	FHIRBaseURLs []string             `json:"fhir_base_urls"`
	Policy       storage.TenantPolicy `json:"policy"`
	CreatedAt    time.Time            `json:"created_at"`
	Keys         []keyJSON            `json:"keys,omitempty"`
}

type keyJSON struct {
	KID       string     `json:"kid"`
	Alg       string     `json:"alg"`
	Status    string     `json:"status"`
	CreatedAt time.Time  `json:"created_at"`
	RetiresAt *time.Time `json:"retires_at,omitempty"`
}

type clientJSON struct {
	Tenant          string   `json:"tenant"`
	ID              string   `json:"client_id"`
	Secret          string   `json:"client_secret,omitempty"`
	Name            string   `json:"name"`
	Type            string   `json:"type"`
	RedirectURIs    []string `json:"redirect_uris"`
	Scopes          string   `json:"scope"`
	GrantTypes      []string `json:"grant_types"`
	JWKSURL         string   `json:"jwks_uri,omitempty"`
	JWKS            any      `json:"jwks,omitempty"`
	LaunchURI       string   `json:"launch_uri,omitempty"`
	CanCreateLaunch bool     `json:"can_create_launch"`
	AccessTokenTTL  string   `json:"access_token_ttl,omitempty"`
}

type userJSON struct {
	Tenant      string            `json:"tenant"`
	ID          string            `json:"id"`
	Email       string            `json:"email"`
	Profiles    []storage.Profile `json:"profiles"`
	HasPassword bool              `json:"has_password"`
}

func tenantView(t storage.Tenant, ks []storage.SigningKey) tenantJSON {
	return tenantJSON{ID: t.ID, Name: t.Name, FHIRBaseURLs: t.FHIRBaseURLs, Policy: policyView(t.Policy), CreatedAt: t.CreatedAt, Keys: keysView(ks)}
}

func keysView(ks []storage.SigningKey) []keyJSON {
	var out []keyJSON
	for _, k := range ks {
		v := keyJSON{KID: k.KID, Alg: k.Alg, Status: string(k.Status), CreatedAt: k.CreatedAt}
		if !k.RetiresAt.IsZero() {
			r := k.RetiresAt
			v.RetiresAt = &r
		}
		out = append(out, v)
	}
	return out
}

func clientView(c storage.Client) clientJSON {
	v := clientJSON{
		Tenant: c.TenantID, ID: c.ID, Name: c.Name, Type: string(c.Type), RedirectURIs: c.RedirectURIs,
		Scopes: strings.Join(c.Scopes, " "), GrantTypes: c.GrantTypes, JWKSURL: c.JWKSURL,
		LaunchURI: c.LaunchURI, CanCreateLaunch: c.CanCreateLaunch,
	}
	if len(c.JWKS) > 0 {
		v.JWKS = json.RawMessage(c.JWKS)
	}
	if c.AccessTokenTTL > 0 {
		v.AccessTokenTTL = c.AccessTokenTTL.String()
	}
	if v.RedirectURIs == nil {
		v.RedirectURIs = []string{}
	}
	return v
}
