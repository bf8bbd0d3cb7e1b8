// The scenario shared by the v1 and v2 SDK tests: a client_credentials
// client discovers everything from mcpgate's 401, gets a token from the AS,
// then lists tools and calls echo through the gateway.
import assert from 'node:assert/strict';
import { M2M } from './as.mjs';
import { UPSTREAM_CREDENTIAL } from './gateway.mjs';
import { assertUpstreamClean, expectedNoTokenChallenge } from './mcp.mjs';
import { describeLog, loggingFetch } from './logging-fetch.mjs';

/**
 * `sdk` supplies the SDK-specific constructors:
 *   { Client, StreamableHTTPClientTransport, ClientCredentialsProvider }
 */
export async function runClientCredentialsFlow(stack, sdk) {
  const { Client, StreamableHTTPClientTransport, ClientCredentialsProvider } = sdk;
  const { fetch, log } = loggingFetch();
  const provider = new ClientCredentialsProvider({
    clientId: M2M.clientId,
    clientSecret: M2M.clientSecret,
    expectedIssuer: stack.as.issuer,
    scope: 'mcp:connect',
  });
  const transport = new StreamableHTTPClientTransport(new URL(stack.publicUrl), { authProvider: provider, fetch });
  const client = new Client({ name: 'mcpgate-e2e', version: '0.0.0' });

  try {
    await client.connect(transport);

    // 1. The discovery sequence, in order, as the first five exchanges.
    const gw = stack.gateway;
    const first = log.slice(0, 5).map((e) => `${e.method} ${e.url} -> ${e.status}`);
    assert.deepEqual(
      first,
      [
        `POST ${gw.publicUrl} -> 401`,
        `GET ${gw.metadataUrl} -> 200`,
        `GET ${stack.as.issuer}/.well-known/oauth-authorization-server -> 200`,
        `POST ${stack.as.issuer}/token -> 200`,
        `POST ${gw.publicUrl} -> 200`,
      ],
      `unexpected exchange sequence:\n${describeLog(log)}`,
    );
    assert.equal(log[0].wwwAuthenticate, expectedNoTokenChallenge(gw));

    // The token request asked for the challenged scope and the resource the
    // gateway advertised (RFC 8707), so the AS bound the token to mcpgate.
    const tokenParams = new URLSearchParams(log[3].requestBody ?? '');
    assert.equal(tokenParams.get('grant_type'), 'client_credentials');
    assert.equal(tokenParams.get('scope'), 'mcp:connect');
    assert.equal(tokenParams.get('resource'), stack.publicUrl);

    const token = provider.tokens()?.access_token;
    assert.ok(token, 'the provider stored no access token');

    // 2. Real MCP traffic through the gateway.
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name);
    assert.ok(names.includes('echo'), `tools/list lacked echo: ${names.join(', ')}`);

    const result = await client.callTool({ name: 'echo', arguments: { message: 'hi' } });
    assert.notEqual(result.isError, true, JSON.stringify(result));
    const text = result.content.filter((c) => c.type === 'text').map((c) => c.text).join('\n');
    assert.match(text, /\bhi\b/);

    // Only one 401 in the whole session: the token was reused, not re-fetched.
    assert.equal(log.filter((e) => e.status === 401).length, 1, describeLog(log));
    assert.equal(log.filter((e) => e.url === `${stack.as.issuer}/token`).length, 1, describeLog(log));

    // 3. What the upstream saw.
    const upstreamLines = stack.recorder.requests.map((r) => `${r.method} ${r.url}`);
    assert.ok(upstreamLines.filter((l) => l.startsWith('POST')).length >= 3, upstreamLines.join('\n'));
    // server-everything answers POSTs with SSE streams; the client parsed
    // them, so they crossed mcpgate intact.
    assert.ok(
      stack.recorder.requests.some((r) => r.method === 'POST' && /^text\/event-stream/.test(r.responseContentType ?? '')),
      'no upstream POST was answered with an SSE stream',
    );
    assertUpstreamClean(stack.recorder, { token, credential: UPSTREAM_CREDENTIAL });
  } finally {
    await client.close().catch(() => {});
  }
}
