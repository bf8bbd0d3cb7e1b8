// Preload (node --import) for the conformance runner, which has no option to
// send credentials in server mode. It wraps the global fetch so every request
// the runner's MCP client makes carries `Authorization: Bearer $MCP_BEARER`,
// unless the caller set one itself. Requests made with undici's own request()
// (not fetch) are untouched.
const bearer = process.env.MCP_BEARER;
const originalFetch = globalThis.fetch;

if (bearer) {
  globalThis.fetch = function fetchWithBearer(input, init = {}) {
    const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
    if (!headers.has('authorization')) headers.set('authorization', `Bearer ${bearer}`);
    return originalFetch(input, { ...init, headers });
  };
}
