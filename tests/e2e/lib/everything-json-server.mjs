// Child-process entry (run by lib/everything.mjs with { jsonResponse: true }):
// server-everything's own MCP server (its exported createServer(): the same
// tools, resources and prompts as `mcp-server-everything streamableHttp`),
// behind the SDK's StreamableHTTPServerTransport with enableJsonResponse, so
// every POST that carries a request is answered with one application/json
// body instead of an SSE stream.
//
// Why a second entry point: server-everything 2026.8.31's streamableHttp
// transport hard-codes SSE answers (no flag or env switch), and asking it for
// JSON by sending `Accept: application/json` only does not work: SDK 1.32.2
// rejects such a POST with 406 (webStandardStreamableHttp.js, "Client must
// accept both application/json and text/event-stream").
//
// Session handling mirrors server-everything's dist/transports/streamableHttp.js:
// a POST without Mcp-Session-Id creates a server + transport, later requests
// are routed by session id, anything else is 400.
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createServer } from '@modelcontextprotocol/server-everything/dist/server/index.js';

const transports = new Map();

function badSession(res) {
  res.writeHead(400, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: 'Bad Request: No valid session ID provided' }, id: null }));
}

const server = http.createServer(async (req, res) => {
  try {
    if (new URL(req.url, 'http://x').pathname !== '/mcp') {
      res.writeHead(404).end();
      return;
    }
    const sessionId = req.headers['mcp-session-id'];
    const existing = sessionId ? transports.get(sessionId) : undefined;
    if (existing) {
      await existing.handleRequest(req, res);
      return;
    }
    if (sessionId || req.method !== 'POST') {
      badSession(res);
      return;
    }
    const { server: mcp, cleanup } = createServer();
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableJsonResponse: true,
      onsessioninitialized: (sid) => transports.set(sid, transport),
    });
    mcp.server.onclose = async () => {
      const sid = transport.sessionId;
      if (sid && transports.delete(sid)) cleanup(sid);
    };
    await mcp.connect(transport);
    await transport.handleRequest(req, res);
  } catch (err) {
    console.error('everything-json: error handling request', err);
    if (!res.headersSent) {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal server error' }, id: null }));
    }
  }
});

const port = Number(process.env.PORT);
server.listen(port, '127.0.0.1', () => {
  console.error(`everything-json: MCP Streamable HTTP (JSON responses) on 127.0.0.1:${port}`);
});
