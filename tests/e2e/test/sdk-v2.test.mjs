// @modelcontextprotocol/client (SDK v2) against mcpgate: same scenario as
// the v1 test, different client implementation of discovery and retries.
import { after, before, test } from 'node:test';
import { Client, ClientCredentialsProvider, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { runClientCredentialsFlow } from '../lib/sdk-flow.mjs';
import { startStack } from '../lib/stack.mjs';

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

test('SDK v2: 401 -> discovery -> token -> tools/list + tools/call echo, upstream never sees the token', async () => {
  await runClientCredentialsFlow(stack, { Client, StreamableHTTPClientTransport, ClientCredentialsProvider });
});
