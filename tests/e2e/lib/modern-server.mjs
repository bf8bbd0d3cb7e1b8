// Child-process entry (run by lib/modern.mjs): a small MCP server speaking the
// stateless 2026-07-28 revision, built with the TypeScript v2 server SDK
// (@modelcontextprotocol/server, createMcpHandler), for what server-everything
// 2026.8.31 cannot show: it is built on SDK 1.x and knows no `server/discover`,
// no `subscriptions/listen`, no multi round-trip results, no cache hints.
//
//   tools      echo(message)        "Echo: <message>"
//              admin_stats          a JSON blob (the gateway hides it without mcp:admin)
//              confirm_action(action)
//                                   multi round-trip: the first round answers
//                                   input_required with an elicitation/create input
//                                   request and an opaque requestState; the retry
//                                   must carry that exact requestState and an
//                                   accepted elicitation, and completes
//              touch                publishes notifications/resources/updated for
//                                   mem://public/a and then mem://secret/b on every
//                                   open subscriptions/listen stream that asked for it
//   resources  mem://public/a, mem://secret/b (text; a per-URI version bumped by touch)
//   lists      tools/list, resources/list and server/discover with ttlMs 60000 and
//              cacheScope "public"
//
// 2025-era requests (initialize, ...) are routed with the SDK's isLegacyRequest to
// a sessionful 2025 wiring (WebStandardStreamableHTTPServerTransport, one server
// per Mcp-Session-Id) built from the same factory, as a deployed dual-era server
// would keep its sessions for older clients; 2026-07-28 requests never get one.
//
// createMcpHandler has a web-standard fetch face; the few lines below adapt it to
// node:http (a request's AbortSignal fires when its client goes away, which ends a
// listen stream the way the spec's cancellation does).
import http from 'node:http';
import { Readable } from 'node:stream';
import { randomUUID } from 'node:crypto';
import {
  McpServer,
  WebStandardStreamableHTTPServerTransport,
  createMcpHandler,
  fromJsonSchema,
  inputRequired,
  inputResponse,
  isLegacyRequest,
} from '@modelcontextprotocol/server';
import { MODERN_RESOURCES as RESOURCES, MODERN_TTL_MS as TTL_MS } from './modern.mjs';

const versions = new Map(Object.values(RESOURCES).map((uri) => [uri, 0]));
const rounds = new Map(); // requestState -> action, for the states this process minted

const objectSchema = (properties = {}, required = []) =>
  fromJsonSchema({ type: 'object', properties, required, additionalProperties: false });

function buildServer() {
  const hint = { ttlMs: TTL_MS, cacheScope: 'public' };
  const server = new McpServer(
    { name: 'mcpgate-e2e-modern', version: '1.0.0' },
    {
      capabilities: { tools: { listChanged: true }, resources: { subscribe: true, listChanged: true } },
      cacheHints: { 'tools/list': hint, 'resources/list': hint, 'server/discover': hint },
    },
  );

  server.registerTool(
    'echo',
    { description: 'Echoes its message', inputSchema: objectSchema({ message: { type: 'string' } }, ['message']) },
    async ({ message }) => ({ content: [{ type: 'text', text: `Echo: ${message}` }] }),
  );

  server.registerTool('admin_stats', { description: 'Administrative statistics', inputSchema: objectSchema() }, async () => ({
    content: [{ type: 'text', text: JSON.stringify({ versions: Object.fromEntries(versions) }) }],
  }));

  server.registerTool(
    'confirm_action',
    {
      description: 'Asks the user to confirm (multi round-trip elicitation), then acts',
      inputSchema: objectSchema({ action: { type: 'string' } }, ['action']),
    },
    async ({ action }, ctx) => {
      const state = ctx.mcpReq.requestState();
      const answer = inputResponse(ctx.mcpReq.inputResponses, 'confirm');
      if (state === undefined) {
        // First round: ask, and hand out a state only this process can recognise.
        const minted = `round2:${Buffer.from(JSON.stringify({ action, nonce: Math.random() })).toString('base64url')}`;
        rounds.set(minted, action);
        return inputRequired({
          inputRequests: {
            confirm: inputRequired.elicit({
              message: `Really ${action}?`,
              requestedSchema: {
                type: 'object',
                properties: { confirmedBy: { type: 'string', description: 'Who confirms' } },
                required: ['confirmedBy'],
              },
            }),
          },
          requestState: minted,
        });
      }
      if (rounds.get(state) !== action) {
        return { isError: true, content: [{ type: 'text', text: `unknown requestState ${JSON.stringify(state)}` }] };
      }
      if (answer.kind !== 'elicit' || answer.action !== 'accept') {
        return { isError: true, content: [{ type: 'text', text: `not confirmed: ${JSON.stringify(answer)}` }] };
      }
      rounds.delete(state);
      return { content: [{ type: 'text', text: `${action} confirmed by ${answer.content?.confirmedBy}` }] };
    },
  );

  server.registerTool('touch', { description: 'Updates both resources', inputSchema: objectSchema() }, async () => {
    for (const uri of Object.values(RESOURCES)) {
      versions.set(uri, versions.get(uri) + 1);
      handler.notify.resourceUpdated(uri);
    }
    return { content: [{ type: 'text', text: `touched ${Object.values(RESOURCES).join(' ')}` }] };
  });

  for (const [name, uri] of Object.entries(RESOURCES)) {
    server.registerResource(name, uri, { mimeType: 'text/plain', cacheHint: { ttlMs: 0, cacheScope: 'private' } }, async (u) => ({
      contents: [{ uri: u.href, mimeType: 'text/plain', text: `${name} v${versions.get(uri)}` }],
    }));
  }
  return server;
}

const handler = createMcpHandler(() => buildServer(), {
  legacy: 'reject',
  onerror: (err) => console.error('modern-server:', err?.message ?? err),
});

const legacySessions = new Map(); // Mcp-Session-Id -> transport

async function serveLegacy(request) {
  const sessionId = request.headers.get('mcp-session-id');
  const existing = sessionId ? legacySessions.get(sessionId) : undefined;
  if (existing) return existing.handleRequest(request);
  if (sessionId || request.method !== 'POST') {
    return Response.json({ jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: No valid session ID provided' }, id: null }, { status: 400 });
  }
  const transport = new WebStandardStreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    onsessioninitialized: (sid) => legacySessions.set(sid, transport),
    onsessionclosed: (sid) => legacySessions.delete(sid),
  });
  await buildServer().connect(transport);
  return transport.handleRequest(request);
}

function toWebRequest(req, signal) {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v);
  }
  const hasBody = req.method !== 'GET' && req.method !== 'HEAD';
  return new Request(`http://${req.headers.host ?? '127.0.0.1'}${req.url}`, {
    method: req.method,
    headers,
    body: hasBody ? Readable.toWeb(req) : undefined,
    duplex: hasBody ? 'half' : undefined,
    signal,
  });
}

const httpServer = http.createServer(async (req, res) => {
  const aborter = new AbortController();
  res.once('close', () => aborter.abort());
  try {
    if (new URL(req.url, 'http://x').pathname !== '/mcp') {
      res.writeHead(404).end();
      return;
    }
    const request = toWebRequest(req, aborter.signal);
    const response = (await isLegacyRequest(request)) ? await serveLegacy(request) : await handler.fetch(request);
    res.writeHead(response.status, Object.fromEntries(response.headers));
    res.flushHeaders();
    if (!response.body) {
      res.end();
      return;
    }
    const body = Readable.fromWeb(response.body);
    body.once('error', () => res.destroy());
    body.pipe(res);
  } catch (err) {
    console.error('modern-server: error handling request', err);
    if (!res.headersSent) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null }));
    } else {
      res.destroy();
    }
  }
});

const port = Number(process.env.PORT);
httpServer.listen(port, '127.0.0.1', () => {
  console.error(`modern-server: MCP 2026-07-28 Streamable HTTP on 127.0.0.1:${port}`);
});
