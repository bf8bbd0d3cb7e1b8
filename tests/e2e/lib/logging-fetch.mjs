// A fetch wrapper that records every exchange an MCP client makes (MCP
// endpoint, metadata discovery, token endpoint), so tests can assert the
// OAuth discovery sequence from the client's point of view.
//
// With `{ details: true }` each entry also has `requestHeaders` and
// `responseHeaders` (plain objects, lower-case names) and, for an
// application/json answer, `responseText` (read from a clone, so the client
// still reads the body itself; SSE bodies are left alone, a listen stream never ends).
export function loggingFetch(baseFetch = globalThis.fetch, { details = false } = {}) {
  const log = [];
  const wrapped = async (input, init = {}) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const method = init.method ?? (typeof input === 'object' && 'method' in input ? input.method : 'GET');
    const entry = {
      method: method.toUpperCase(),
      url,
      requestBody: typeof init.body === 'string' || init.body instanceof URLSearchParams ? String(init.body) : undefined,
    };
    if (details) {
      const headers = new Headers(init.headers ?? (typeof input === 'object' && 'headers' in input ? input.headers : undefined));
      entry.requestHeaders = Object.fromEntries(headers);
    }
    log.push(entry);
    const res = await baseFetch(input, init);
    entry.status = res.status;
    entry.wwwAuthenticate = res.headers.get('www-authenticate');
    entry.contentType = res.headers.get('content-type');
    if (details) {
      entry.responseHeaders = Object.fromEntries(res.headers);
      if (/^application\/json\b/i.test(entry.contentType ?? '')) entry.responseText = await res.clone().text();
    }
    return res;
  };
  return { fetch: wrapped, log };
}

/** "POST http://…/mcp -> 401" lines, handy in assertion messages. */
export function describeLog(log) {
  return log.map((e) => `${e.method} ${e.url} -> ${e.status}`).join('\n');
}
