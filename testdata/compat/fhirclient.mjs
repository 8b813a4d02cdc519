// A server-side SMART app built on fhirclient's Node adapter, as its
// documentation shows: GET /launch calls smart(req, res).authorize(), which
// redirects the browser to the authorization server; GET /callback (the
// redirect URI) calls smart(req, res).ready(), which redeems the code.
//
// Standalone launch: the test opens /launch, and COMPAT_ISS names the FHIR
// server. EHR launch: the test opens /launch?iss=…&launch=…, as an EHR would.
// After ready() the app reads the patient, makes the requests COMPAT_REQUESTS
// lists (if any), refreshes its token and prints what it holds as one
// "result" event.
//
// Environment: SMARTAUTH_CLIENT_ID, COMPAT_SCOPE, COMPAT_ISS (standalone only),
// COMPAT_REQUESTS (optional): a JSON array of FHIR request paths relative to
// the FHIR base, such as ["Observation", "Observation/123"], which the app
// sends with client.request() as it would any other; each one's answer, or
// the error it failed with, is in the result's "requests".
import { randomBytes } from "node:crypto";
import smart from "fhirclient";
import { emit, fail, finish, serve, setting } from "./lib.mjs";

// fhirclient keeps its state in req.session, which Express apps get from
// express-session; this is the same thing for plain node:http, in memory.
const sessions = new Map();
function withSession(req, res) {
  const m = /(?:^|;\s*)compat_sid=([0-9a-f]+)/.exec(req.headers.cookie || "");
  let sid = m && sessions.has(m[1]) ? m[1] : "";
  if (!sid) {
    sid = randomBytes(16).toString("hex");
    sessions.set(sid, {});
    res.setHeader("set-cookie", `compat_sid=${sid}; Path=/; HttpOnly; SameSite=Lax`);
  }
  req.session = sessions.get(sid);
}

// step names a stage of the flow in the error it may throw.
async function step(name, fn) {
  try {
    return await fn();
  } catch (err) {
    throw new Error(`${name}: ${err && err.message ? err.message : err}`, { cause: err });
  }
}

// fhirRequests sends each path with client.request(), which resolves it
// against the FHIR base and sends the access token, and reports what came
// back: { path, resource } or, for a failed request, { path, error, status }.
async function fhirRequests(client, paths) {
  const out = [];
  for (const path of paths) {
    try {
      out.push({ path, resource: await client.request(path) });
    } catch (err) {
      out.push({ path, error: String(err && err.message ? err.message : err), status: (err && (err.status || err.statusCode)) || 0 });
    }
  }
  return out;
}

async function main() {
  const clientId = setting("SMARTAUTH_CLIENT_ID");
  const scope = setting("COMPAT_SCOPE");
  const standaloneIss = process.env.COMPAT_ISS || "";
  const requests = process.env.COMPAT_REQUESTS ? JSON.parse(process.env.COMPAT_REQUESTS) : null;

  const { server, base } = await serve(async (req, res) => {
    withSession(req, res);
    const path = new URL(req.url, base).pathname;
    if (path === "/launch") {
      // An iss query parameter (EHR launch) takes precedence over this one.
      await step("authorize()", () =>
        smart(req, res).authorize({ clientId, scope, redirectUri: "/callback", iss: standaloneIss || undefined }),
      );
      return;
    }
    if (path !== "/callback") {
      res.writeHead(404).end();
      return;
    }
    const client = await step("ready()", () => smart(req, res).ready());
    const tokenResponse = { ...client.getState("tokenResponse") };
    const patient = await step("client.patient.read()", () => client.patient.read());
    const before = {
      serverUrl: client.getState("serverUrl"),
      codeVerifierUsed: Boolean(client.getState("codeVerifier")),
      tokenResponse,
      patientId: client.getPatientId(),
      encounterId: client.getEncounterId(),
      fhirUser: client.getFhirUser(),
      userType: client.getUserType(),
      userId: client.getUserId(),
      idToken: client.getIdToken(),
      patientResource: patient,
      requests: requests ? await fhirRequests(client, requests) : undefined,
    };
    // A refresh failure is reported, not thrown, so the test still sees
    // everything the app obtained before it.
    let refreshed = null;
    let refreshError = "";
    try {
      const st = await client.refresh();
      refreshed = { accessToken: st.tokenResponse.access_token, refreshToken: st.tokenResponse.refresh_token, scope: st.tokenResponse.scope };
    } catch (err) {
      refreshError = String(err && err.message ? err.message : err);
    }
    finish(server, res, { ...before, refreshed, refreshError });
  });
  await emit("listening", { base, redirectUri: base + "/callback" });
}

main().catch(fail);
