// Shared plumbing of the compatibility apps: the line protocol with the Go
// test and a loopback HTTP server that stands for the app's web server.
import http from "node:http";

// emit prints one event as a single JSON line; the Go test reads stdout line
// by line and waits for the events it expects.
// The returned promise resolves once the line is written, as writes to a
// pipe may complete after process.exit otherwise.
export function emit(event, fields = {}) {
  return new Promise((resolve) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n", resolve));
}

// fail reports an error as an event, so the Go test shows it, and exits.
export async function fail(err) {
  await emit("error", { message: String(err && err.message ? err.message : err), stack: err && err.stack ? String(err.stack) : "" });
  process.exit(1);
}

// setting reads a required environment variable.
export function setting(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`environment variable ${name} is not set`);
  }
  return v;
}

// serve listens on an ephemeral loopback port and resolves with its base URL.
// handler(req, res) may be async; a thrown error ends the app with "error".
export function serve(handler) {
  const server = http.createServer((req, res) => {
    Promise.resolve(handler(req, res)).catch((err) => {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(String(err && err.message ? err.message : err));
      fail(err);
    });
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      resolve({ server, base: `http://127.0.0.1:${server.address().port}` });
    });
  });
}

// finish answers the browser, prints the result and exits once the answer is
// out, so the Go test's request and its wait for the result both complete.
export function finish(server, res, result) {
  res.writeHead(200, { "content-type": "text/plain" });
  res.end("done\n", async () => {
    server.close();
    await emit("result", result);
    process.exit(0);
  });
}

// A watchdog: the app never outlives a forgotten test run.
setTimeout(() => fail(new Error("timed out waiting for the authorization to finish")), 120_000).unref();
