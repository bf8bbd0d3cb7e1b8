// The whole topology most tests need, started in dependency order and torn
// down in reverse (always, even when a later start fails):
//
//   client --> mcpgate (gwPort) --> recorder --> server-everything
//                  |                              (or, with upstream: 'modern', the
//                  |                               2026-07-28 server of lib/modern.mjs)
//                  |
//                  +--> oidc-provider (JWKS)
import { startAuthServer } from './as.mjs';
import { startEverything } from './everything.mjs';
import { startGateway } from './gateway.mjs';
import { startModern } from './modern.mjs';
import { freePort } from './procs.mjs';
import { startRecorder } from './recorder.mjs';

/**
 * `gatewayOptions(as)` may return extra startGateway options ({ jwks, oauthExtra,
 * serverExtra, upstreamExtra, scopesYaml, topExtra }) once the AS (and so its
 * issuer URL) exists. `everything` is passed to startEverything (e.g. { jsonResponse: true });
 * `extraScopes`, `interactive` (login and consent pages for the
 * authorization-code flow), `upstreamResource` (mcpgate's own clients and
 * resource for `upstream.oauth`) and `tokenExchange` (RFC 8693 for that client) to
 * startAuthServer. `upstream: 'modern'` puts
 * lib/modern-server.mjs (MCP 2026-07-28, TypeScript v2 server SDK) behind the
 * recorder instead of server-everything; `stack.upstream` is whichever runs
 * (`stack.everything` is set only for server-everything).
 */
export async function startStack({
  accessTokenTTL,
  extraScopes,
  interactive,
  upstreamResource,
  tokenExchange,
  gatewayOptions = () => ({}),
  everything = {},
  upstream = 'everything',
} = {}) {
  // The gateway's port is chosen before the AS and the upstream start (the AS must
  // know the gateway's URL), so one of them can take it first; the gateway then
  // fails to bind, and the stack is built again on other ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startStackOnce({
        accessTokenTTL,
        extraScopes,
        interactive,
        upstreamResource,
        tokenExchange,
        gatewayOptions,
        everything,
        upstream,
      });
    } catch (err) {
      if (attempt >= 3 || !/address already in use/i.test(String(err?.message))) throw err;
    }
  }
}

async function startStackOnce({
  accessTokenTTL,
  extraScopes,
  interactive,
  upstreamResource,
  tokenExchange,
  gatewayOptions,
  everything,
  upstream,
}) {
  const stoppers = [];
  const stack = {
    async stop() {
      // Errors while stopping one part must not keep the others alive.
      for (const stop of stoppers.reverse()) {
        try {
          await stop();
        } catch (err) {
          console.error('teardown error:', err);
        }
      }
      stoppers.length = 0;
    },
  };
  try {
    // The AS needs the gateway's public URL (its only resource indicator)
    // before the gateway exists, so reserve the gateway port first.
    const gwPort = await freePort();
    const publicUrl = `http://127.0.0.1:${gwPort}/mcp`;

    stack.as = await startAuthServer({
      resource: publicUrl,
      accessTokenTTL,
      extraScopes,
      interactive,
      upstreamResource,
      tokenExchange,
    });
    stoppers.push(() => stack.as.stop());

    if (upstream === 'modern') {
      stack.upstream = await startModern();
    } else {
      stack.upstream = stack.everything = await startEverything(everything);
    }
    stoppers.push(() => stack.upstream.stop());

    stack.recorder = await startRecorder({ targetPort: stack.upstream.port });
    stoppers.push(() => stack.recorder.stop());

    stack.gateway = await startGateway({
      gwPort,
      upstreamUrl: stack.recorder.url,
      issuer: stack.as.issuer,
      ...gatewayOptions(stack.as),
    });
    stoppers.push(() => stack.gateway.stop());

    stack.publicUrl = publicUrl;
    return stack;
  } catch (err) {
    await stack.stop();
    throw err;
  }
}
