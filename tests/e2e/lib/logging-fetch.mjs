// A fetch wrapper that records every exchange an MCP client makes (MCP
// endpoint, metadata discovery, token endpoint), so tests can assert the
// OAuth discovery sequence from the client's point of view.
export function loggingFetch(baseFetch = globalThis.fetch) {
  const log = [];
  const wrapped = async (input, init = {}) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const method = init.method ?? (typeof input === 'object' && 'method' in input ? input.method : 'GET');
    const entry = {
      method: method.toUpperCase(),
      url,
      requestBody: typeof init.body === 'string' || init.body instanceof URLSearchParams ? String(init.body) : undefined,
    };
    log.push(entry);
    const res = await baseFetch(input, init);
    entry.status = res.status;
    entry.wwwAuthenticate = res.headers.get('www-authenticate');
    entry.contentType = res.headers.get('content-type');
    return res;
  };
  return { fetch: wrapped, log };
}

/** "POST http://…/mcp -> 401" lines, handy in assertion messages. */
export function describeLog(log) {
  return log.map((e) => `${e.method} ${e.url} -> ${e.status}`).join('\n');
}
