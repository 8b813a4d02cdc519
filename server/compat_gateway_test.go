package server_test

// fhirclient as a real app behind the SMART gateway: the EHR launches it
// with the gateway's FHIR base as iss, and everything it reads comes from
// the FHIR server behind the gateway.

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/smartauth/smartauth/gateway/fhirtest"
	"github.com/smartauth/smartauth/server/servertest"
	"github.com/smartauth/smartauth/storage"
)

func TestCompatFHIRClientThroughGateway(t *testing.T) {
	t.Parallel()
	dir := compatDir(t, 18, "fhirclient")
	forEachGatewayBackend(t, func(t *testing.T, srv *servertest.Server) {
		g := gatewaySetup(t, srv)
		alice, bob := g.seeded.Alice, g.seeded.Bob
		const clientID = "fhirclient-gateway"
		const scope = "launch openid fhirUser patient/*.rs offline_access"
		bobsObservation := "Observation/" + bob.Laboratory
		paths := []string{"Observation", bobsObservation}
		requests, err := json.Marshal(paths)
		if err != nil {
			t.Fatal(err)
		}
		res := runFHIRClient(t, dir, g.authzEnv, g.base, clientID, scope, map[string]string{"COMPAT_REQUESTS": string(requests)}, func() string {
			return createLaunch(t, srv, authzTenant, clientID, g.userID, storage.LaunchContext{Patient: alice.Patient})
		})

		if res.ServerURL != g.base || !res.CodeVerifierUsed {
			t.Errorf("serverUrl %q, PKCE verifier kept %v; want the gateway base %s", res.ServerURL, res.CodeVerifierUsed, g.base)
		}
		tr := res.TokenResponse
		if sc, _ := tr["scope"].(string); !sameScopes(sc, scope) {
			t.Errorf("token response scope %q, want %q", sc, scope)
		}
		if res.PatientID != alice.Patient || tr["patient"] != alice.Patient {
			t.Errorf("getPatientId() %q, token response patient %v, want Alice, %s", res.PatientID, tr["patient"], alice.Patient)
		}
		at, _ := tr["access_token"].(string)
		if claims, _ := authzVerify(t, g.authzEnv, at, jose.ES256); claims["patient"] != alice.Patient || claims["client_id"] != clientID ||
			!slices.Equal(authzAudience(claims["aud"]), []string{g.base}) {
			t.Errorf("fhirclient's access token claims %v: want patient %s, client_id %s, aud %s", claims, alice.Patient, clientID, g.base)
		}

		// client.patient.read() got Alice from the FHIR server, through the gateway.
		p := res.PatientResource
		name, _ := json.Marshal(p["name"])
		if p["resourceType"] != "Patient" || p["id"] != alice.Patient || !strings.Contains(string(name), `"Example"`) || !strings.Contains(string(name), `"Alice"`) {
			t.Errorf("client.patient.read() gave %v, want Alice Example (%s)", p, alice.Patient)
		}

		if len(res.Requests) != len(paths) {
			t.Fatalf("the app reports %d requests, want %d: %+v", len(res.Requests), len(paths), res.Requests)
		}
		// The search finds Alice's two Observations and nothing else.
		search := res.Requests[0]
		b, _ := json.Marshal(search.Resource)
		found := fhirCall{status: http.StatusOK, body: string(b), doc: search.Resource}
		if search.Error != "" || search.Resource["resourceType"] != "Bundle" ||
			!slices.Equal(found.ids(), sortedRefs(refsOf("Observation", alice.Observations...))) {
			t.Errorf("client.request(%q): %v %s, want Alice's two Observations %v", search.Path, found.ids(), search.Error, alice.Observations)
		}
		g.noneOfBobs(t, "client.request(Observation)", found)

		// Bob's Observation is not found for Alice's token. The error names
		// the URL the app asked for; apart from that it holds nothing of Bob's.
		read := res.Requests[1]
		if read.Status != http.StatusNotFound || read.Resource != nil {
			t.Errorf("client.request(%q): status %d, resource %v, error %q; want a 404 and no resource", read.Path, read.Status, read.Resource, read.Error)
		}
		g.noneOfBobs(t, "client.request("+bobsObservation+")", fhirCall{body: strings.ReplaceAll(read.Error, g.base+"/"+bobsObservation, "")})

		// The FHIR server saw the gateway's credential on every request and
		// never the app's tokens.
		reqs := g.fhir.Requests(t)
		if !slices.ContainsFunc(reqs, func(r fhirtest.Request) bool { return r.Method == "GET" && r.URL == "/fhir/Patient/"+alice.Patient }) {
			t.Errorf("upstream requests %+v: want the app's read of Alice forwarded", reqs)
		}
		rt, _ := tr["refresh_token"].(string)
		secrets := []string{at, rt}
		if res.Refreshed != nil {
			secrets = append(secrets, res.Refreshed.AccessToken, res.Refreshed.RefreshToken)
		} else {
			t.Errorf("client.refresh() failed: %s", res.RefreshError)
		}
		for _, r := range reqs {
			if r.Header.Get("X-Api-Key") != gatewayUpstreamKey || r.Header.Get("Authorization") != "" {
				t.Errorf("upstream %s %s: X-Api-Key %q, Authorization %q; want the gateway's key and no Authorization",
					r.Method, r.URL, r.Header.Get("X-Api-Key"), r.Header.Get("Authorization"))
			}
			for k, vs := range r.Header {
				for _, v := range vs {
					for _, s := range secrets {
						if s != "" && strings.Contains(v, s) {
							t.Errorf("upstream %s %s: header %s carries one of the app's tokens", r.Method, r.URL, k)
						}
					}
				}
			}
			for _, s := range secrets {
				if s != "" && strings.Contains(r.URL, s) {
					t.Errorf("upstream %s %s carries one of the app's tokens", r.Method, r.URL)
				}
			}
		}
	})
}
