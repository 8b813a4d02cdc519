// The demo SMART app: a public client that runs the SMART App Launch
// authorization code flow with PKCE in the browser and shows what it gets.
//
// A FHIR server on this origin is the tenant's SMART gateway ({issuer}/fhir):
// the app discovers the endpoints at {iss}/.well-known/smart-configuration,
// as SMART apps do, and after the launch reads the patient in context
// through it. Any other FHIR server (the demo's is fictional, and the page's
// policy lets it talk to this origin only) is not contacted: the endpoints
// come from /t/{tenant}/.well-known/smart-configuration. It keeps its in-flight
// state (PKCE verifier, issuer, token endpoint) in sessionStorage, keyed by
// the random state, so only a response to a request made in this tab is
// accepted. It writes nothing to the console: tokens are secrets.
"use strict";

const CLIENT_ID = "demo-app";
const DEFAULT_SCOPE = "openid fhirUser launch/patient patient/*.rs offline_access";
const FLOW_PREFIX = "smartauth-demo-app:";

// AppError is a failure shown to the person as an OAuth-style code and description.
class AppError extends Error {
  constructor(code, description) {
    super(description);
    this.code = code;
  }
}

const $ = (id) => document.getElementById(id);

document.addEventListener("DOMContentLoaded", () => {
  main().catch((err) => {
    showError(err instanceof AppError ? err.code : "app_error", err.message || String(err));
  });
});

async function main() {
  const query = new URLSearchParams(location.search);
  if (query.has("code") || query.has("error")) {
    return finish(query);
  }
  const tenant = query.get("tenant") || "";
  const aud = query.get("iss") || "";
  const launch = query.get("launch");
  if (launch) {
    // EHR launch: the EHR chose the context; go straight to authorization.
    if (!tenant || !aud) {
      throw new AppError("invalid_launch", "An EHR launch needs tenant and iss in the app's address.");
    }
    const scopes = (query.get("scope") || DEFAULT_SCOPE).split(/\s+/).filter(Boolean);
    if (!scopes.includes("launch")) {
      scopes.unshift("launch");
    }
    return start({ tenant, aud, scope: scopes.join(" "), launch });
  }
  showForm(tenant, aud, query.get("scope") || DEFAULT_SCOPE);
}

// showForm offers a standalone launch with editable settings.
function showForm(tenant, aud, scope) {
  const form = $("start-form");
  $("tenant").value = tenant;
  $("aud").value = aud;
  $("scope").value = scope;
  const showGateway = () => {
    $("gateway-base").textContent = gatewayBase($("tenant").value.trim());
  };
  showGateway();
  $("tenant").addEventListener("input", showGateway);
  $("use-gateway").addEventListener("click", () => {
    $("aud").value = gatewayBase($("tenant").value.trim());
  });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    $("start").disabled = true;
    const settings = { tenant: $("tenant").value.trim(), aud: $("aud").value.trim(), scope: $("scope").value.trim() };
    start(settings).catch((err) => {
      $("start").disabled = false;
      showError(err instanceof AppError ? err.code : "app_error", err.message || String(err));
    });
  });
  form.hidden = false;
  setStatus("ready", "Choose the tenant, FHIR server and scopes, then Start.");
}

// start discovers the endpoints, remembers the request and sends the
// browser to the authorization endpoint.
async function start({ tenant, aud, scope, launch }) {
  if (!window.crypto || !crypto.subtle) {
    throw new AppError("insecure_context", "PKCE needs WebCrypto, which browsers offer only over https or on localhost.");
  }
  setStatus("discovering", "Reading the SMART configuration of tenant " + tenant + "…");
  const config = await discover(tenant, aud);
  const verifier = randomString(32);
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const state = randomString(32);
  const redirectUri = location.origin + location.pathname;
  const flow = {
    verifier, redirectUri, tenant, aud, scope, launch: launch || "",
    issuer: config.issuer, tokenEndpoint: config.token_endpoint,
  };
  sessionStorage.setItem(FLOW_PREFIX + state, JSON.stringify(flow));
  const params = new URLSearchParams({
    response_type: "code",
    client_id: CLIENT_ID,
    redirect_uri: redirectUri,
    scope,
    state,
    aud,
    code_challenge: challenge,
    code_challenge_method: "S256",
  });
  if (launch) {
    params.set("launch", launch);
  }
  setStatus("redirecting", "Going to the sign-in page…");
  location.assign(config.authorization_endpoint + "?" + params.toString());
}

// gatewayBase is the FHIR base URL of the tenant's gateway on this server.
function gatewayBase(tenant) {
  return location.origin + "/t/" + encodeURIComponent(tenant) + "/fhir";
}

// onThisServer reports whether a FHIR base URL is served here: the
// tenant's gateway, which the app may talk to.
function onThisServer(base) {
  try {
    return new URL(base).origin === location.origin;
  } catch {
    return false;
  }
}

// discover reads the SMART configuration at the FHIR server when it is
// this server's gateway, and else the tenant's, from this origin.
async function discover(tenant, aud) {
  const atFHIRBase = onThisServer(aud);
  const url = atFHIRBase
    ? aud.replace(/\/+$/, "") + "/.well-known/smart-configuration"
    : "/t/" + encodeURIComponent(tenant) + "/.well-known/smart-configuration";
  const resp = await fetch(url, { headers: { Accept: "application/json" } });
  if (!resp.ok) {
    const hint = atFHIRBase ? "; is this FHIR server one of the tenant's?" : "; is the tenant right?";
    throw new AppError("discovery_failed", "GET " + url + " answered " + resp.status + hint);
  }
  const config = await resp.json();
  for (const field of ["issuer", "authorization_endpoint", "token_endpoint"]) {
    if (typeof config[field] !== "string" || config[field] === "") {
      throw new AppError("discovery_failed", "The SMART configuration has no " + field + ".");
    }
  }
  const methods = config.code_challenge_methods_supported;
  if (Array.isArray(methods) && !methods.includes("S256")) {
    throw new AppError("discovery_failed", "The server does not offer PKCE S256.");
  }
  return config;
}

// finish handles the redirect back: it checks state and iss, then trades
// the code for tokens, or shows the error the server sent.
async function finish(query) {
  // The code is single use; keep it out of the address bar and history.
  history.replaceState(null, "", location.pathname);
  const state = query.get("state") || "";
  const key = FLOW_PREFIX + state;
  const saved = state ? sessionStorage.getItem(key) : null;
  sessionStorage.removeItem(key);
  if (!saved) {
    throw new AppError("invalid_state", "This response matches no sign-in started in this tab, so the app ignores it.");
  }
  const flow = JSON.parse(saved);
  $("start-form").hidden = true;
  showRestart(flow);
  // RFC 9207: a response must name the issuer the request went to, or it
  // may come from another server mixed up with this one.
  const iss = query.get("iss");
  if (iss !== flow.issuer) {
    throw new AppError("invalid_issuer", "The response names issuer " + (iss || "(none)") + ", but the request went to " + flow.issuer + ".");
  }
  if (query.has("error")) {
    throw new AppError(query.get("error"), query.get("error_description") || "");
  }
  setStatus("exchanging", "Exchanging the authorization code for tokens…");
  const resp = await fetch(flow.tokenEndpoint, {
    method: "POST",
    headers: { Accept: "application/json" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: query.get("code") || "",
      redirect_uri: flow.redirectUri,
      client_id: CLIENT_ID,
      code_verifier: flow.verifier,
    }),
  });
  let body;
  try {
    body = await resp.json();
  } catch {
    throw new AppError("invalid_token_response", "The token endpoint answered " + resp.status + " without JSON.");
  }
  if (!resp.ok) {
    throw new AppError(body.error || "token_error", body.error_description || "The token endpoint answered " + resp.status + ".");
  }
  showTokens(body);
  if (onThisServer(flow.aud)) {
    await readThroughGateway(flow.aud, body);
  }
  setStatus("done", "Signed in. This is what the authorization server returned.");
}

// showTokens displays the token response, its launch context and the
// decoded tokens.
function showTokens(body) {
  const access = decodeJWT(body.access_token);
  const id = decodeJWT(body.id_token);
  const fhirUser = (id && id.payload.fhirUser) || (access && access.payload.fhirUser);
  const context = $("context");
  addFact(context, "Granted scope", body.scope, "granted-scope");
  addFact(context, "Patient", body.patient, "context-patient");
  addFact(context, "Encounter", body.encounter, "context-encounter");
  addFact(context, "fhirUser", fhirUser, "context-fhir-user");
  for (const field of ["fhirContext", "need_patient_banner", "smart_style_url", "intent", "tenant"]) {
    if (body[field] !== undefined) {
      addFact(context, field, typeof body[field] === "string" ? body[field] : JSON.stringify(body[field]));
    }
  }
  $("token-response").textContent = JSON.stringify(body, null, 2);
  showDecoded("access-token", access, body.access_token);
  if (body.id_token) {
    showDecoded("id-token", id, body.id_token);
    $("id-token").hidden = false;
  }
  $("result").hidden = false;
}

// readThroughGateway reads the patient in context at the gateway with the
// access token and shows what it answered: the Patient, or the
// OperationOutcome saying why not.
async function readThroughGateway(base, body) {
  $("fhir").hidden = false;
  if (!body.patient) {
    $("fhir-request").textContent = "(no request)";
    $("fhir-status").textContent = "no patient in context";
    $("fhir-response").textContent = "The token has no patient in context, so there is no patient to read.";
    return;
  }
  const url = base.replace(/\/+$/, "") + "/Patient/" + encodeURIComponent(body.patient);
  $("fhir-request").textContent = "GET " + url;
  setStatus("reading", "Reading the patient in context through the FHIR gateway…");
  let resp;
  try {
    resp = await fetch(url, { headers: { Accept: "application/fhir+json", Authorization: "Bearer " + body.access_token } });
  } catch (err) {
    $("fhir-status").textContent = "no answer";
    $("fhir-response").textContent = err.message || String(err);
    return;
  }
  $("fhir-status").textContent = String(resp.status);
  const text = await resp.text();
  try {
    $("fhir-response").textContent = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    $("fhir-response").textContent = text;
  }
}

function addFact(list, name, value, id) {
  const dt = document.createElement("dt");
  dt.textContent = name;
  const dd = document.createElement("dd");
  if (id) {
    dd.id = id;
  }
  dd.textContent = value === undefined || value === null || value === "" ? "none" : String(value);
  list.append(dt, dd);
}

function showDecoded(prefix, jwt, raw) {
  if (!jwt) {
    $(prefix + "-header").textContent = raw ? "(not a JWT)" : "(none)";
    $(prefix + "-payload").textContent = "";
    return;
  }
  $(prefix + "-header").textContent = JSON.stringify(jwt.header, null, 2);
  $(prefix + "-payload").textContent = JSON.stringify(jwt.payload, null, 2);
}

// decodeJWT reads a JWT's header and payload without verifying anything.
function decodeJWT(token) {
  const parts = typeof token === "string" ? token.split(".") : [];
  if (parts.length !== 3) {
    return null;
  }
  try {
    return { header: decodeSegment(parts[0]), payload: decodeSegment(parts[1]) };
  } catch {
    return null;
  }
}

function decodeSegment(segment) {
  let b64 = segment.replace(/-/g, "+").replace(/_/g, "/");
  b64 += "=".repeat((4 - (b64.length % 4)) % 4);
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

function showError(code, description) {
  $("error-code").textContent = code;
  $("error-description").textContent = description;
  $("error").hidden = false;
  $("again").hidden = false;
  setStatus("error", "The sign-in did not complete.");
}

// showRestart links back to a fresh start with the same tenant and FHIR server.
function showRestart(flow) {
  const params = new URLSearchParams({ tenant: flow.tenant, iss: flow.aud });
  $("restart").href = location.pathname + "?" + params.toString();
  $("again").hidden = false;
}

// setStatus tells the person, and tests through data-status, where the app is.
function setStatus(status, text) {
  document.body.dataset.status = status;
  $("status").textContent = text;
}

function randomString(bytes) {
  const b = new Uint8Array(bytes);
  crypto.getRandomValues(b);
  return base64url(b);
}

function base64url(buffer) {
  let s = "";
  for (const b of new Uint8Array(buffer)) {
    s += String.fromCharCode(b);
  }
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
