// @modelcontextprotocol/sdk v1 client against mcpgate, full OAuth discovery
// from the 401 challenge (RFC 9728 -> RFC 8414 -> client_credentials).
import { after, before, test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ClientCredentialsProvider } from '@modelcontextprotocol/sdk/client/auth-extensions.js';
import { runClientCredentialsFlow } from '../lib/sdk-flow.mjs';
import { startStack } from '../lib/stack.mjs';

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

test('SDK v1: 401 -> discovery -> token -> tools/list + tools/call echo, upstream never sees the token', async () => {
  await runClientCredentialsFlow(stack, { Client, StreamableHTTPClientTransport, ClientCredentialsProvider });
});
