// A real GraphQL server (graphql-yoga) for the GraphQL upstream: it serves
// tests/fixtures/graphql/schema.graphql with small fixed data, so mcpgate's
// operation tools (tests/fixtures/graphql/operations/) and execute_graphql run
// against a server that parses, validates and executes like any production one.
//
// Two ways to use it:
// - as a child process: `node lib/graphql-server.mjs [PORT]` (or PORT=… in the
//   environment; 0 or nothing picks a free port). It listens on 127.0.0.1 and,
//   once ready, prints one line to stdout: the endpoint URL,
//   e.g. `http://127.0.0.1:4567/graphql`. SCHEMA=<path> serves another SDL file.
// - from a test: `await startGraphqlServer()` (below) does exactly that and
//   returns { url, base, port, proc, lastRequest(), stop() }.
//
// Besides POST /graphql it answers:
// - GET /last-request: the last request to /graphql as JSON, so a test can check
//   what reached the API (the caller's Authorization must never):
//   { count, request: { method, path, headers, body } | null }, where `headers`
//   are Node's (lowercase names; repeated ones joined) and `body` is the
//   GraphQL params as Yoga parsed them ({ query, variables, operationName,
//   extensions }) or null when the request had none that parsed.
// - GET /healthz: 200 "ok".
//
// The SDL uses @requiresScopes without declaring it (mcpgate declares it when
// needed; so do federation composers), so it is declared here before the SDL.
// The directive only informs mcpgate: this server enforces no scope.
//
// State: `addFact` appends to the facts for the life of the process (and
// publishes to `factAdded`); everything else is read-only.
//
// Error on purpose: `node(id:)` with an unknown id, and `employee(id: "boom")`,
// fail with a GraphQL error (partial data, `errors` in a 200 answer).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createGraphQLError, createPubSub, createSchema, createYoga } from 'graphql-yoga';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const GRAPHQL_SERVER_ENTRY = fileURLToPath(import.meta.url);
export const GRAPHQL_FIXTURES = path.resolve(HERE, '../../fixtures/graphql');
export const GRAPHQL_SCHEMA = path.join(GRAPHQL_FIXTURES, 'schema.graphql');
export const GRAPHQL_OPERATIONS = path.join(GRAPHQL_FIXTURES, 'operations');

const REQUIRES_SCOPES =
  'directive @requiresScopes(scopes: [[String!]!]!) on FIELD_DEFINITION | OBJECT | INTERFACE | SCALAR | ENUM\n';

/** The SDL, with the @requiresScopes declaration added when it lacks one. */
function typeDefs(schemaPath) {
  const sdl = readFileSync(schemaPath, 'utf8');
  return /directive\s+@requiresScopes\b/.test(sdl) ? sdl : REQUIRES_SCOPES + sdl;
}

function fixedData() {
  const facts = [
    { id: 'fact-1', title: 'Water is wet', body: 'At room temperature.', private: 'Not always.', level: 'PUBLIC' },
    { id: 'fact-2', title: 'The sky is blue', body: 'By day.', private: 'Rayleigh did it.', level: 'PUBLIC' },
    { id: 'fact-3', title: 'Payroll runs on Fridays', body: null, private: 'Except in December.', level: 'INTERNAL' },
    { id: 'fact-4', title: 'The launch date', body: 'Soon.', private: '2030-01-01', level: 'SECRET' },
  ];
  const employees = [
    { id: 'emp-1', name: 'Ada Lovelace', salary: 300, managerId: null },
    { id: 'emp-2', name: 'Charles Babbage', salary: 200, managerId: 'emp-1' },
    { id: 'emp-3', name: 'Grace Hopper', salary: 250, managerId: 'emp-1' },
    { id: 'emp-4', name: 'Alan Turing', salary: 220, managerId: 'emp-3' },
  ];
  return { facts, employees };
}

function resolvers(data) {
  const pubsub = createPubSub();
  const employeeById = (id) => data.employees.find((e) => e.id === id) ?? null;
  const reportsOf = (id) => data.employees.filter((e) => e.managerId === id);
  const matches = (employee, filter) => {
    if (!filter) return true;
    if (filter.name != null && !employee.name.toLowerCase().includes(filter.name.toLowerCase())) return false;
    if (filter.managerId != null && employee.managerId !== filter.managerId) return false;
    // "Reports of reports, to any depth": someone under this employee matches the nested filter.
    if (filter.reports != null) {
      const below = (id) => reportsOf(id).some((r) => matches(r, filter.reports) || below(r.id));
      if (!below(employee.id)) return false;
    }
    return true;
  };
  const kindOf = (value) => (value.id.startsWith('fact-') ? 'Fact' : 'Employee');
  return {
    Query: {
      facts: (_, { limit }) => data.facts.filter((f) => f.level !== 'SECRET').slice(0, limit ?? undefined),
      topSecretFacts: () => data.facts.filter((f) => f.level === 'SECRET'),
      employee: (_, { id }) => {
        if (id === 'boom') throw createGraphQLError('employee records are unavailable');
        return employeeById(id);
      },
      employees: (_, { filter }) => data.employees.filter((e) => matches(e, filter)),
      search: (_, { text }) => {
        const needle = text.toLowerCase();
        return [
          ...data.facts.filter((f) => f.title.toLowerCase().includes(needle)),
          ...data.employees.filter((e) => e.name.toLowerCase().includes(needle)),
        ];
      },
      node: (_, { id }) => {
        const found = data.facts.find((f) => f.id === id) ?? employeeById(id);
        if (!found) throw createGraphQLError(`no node with id ${JSON.stringify(id)}`);
        return found;
      },
      status: () => ({ healthy: true }),
      audit: () => ({ cpu: 0.25, memory: 0.5, disk: 0.75, network: 0.125 }),
    },
    Mutation: {
      addFact: (_, { input }) => {
        const fact = {
          id: `fact-${data.facts.length + 1}`,
          title: input.title,
          body: input.body ?? null,
          private: null,
          level: input.level ?? 'PUBLIC',
        };
        data.facts.push(fact);
        pubsub.publish('factAdded', fact);
        return fact;
      },
    },
    Subscription: {
      factAdded: {
        subscribe: () => pubsub.subscribe('factAdded'),
        resolve: (fact) => fact,
      },
    },
    Employee: {
      manager: (employee) => (employee.managerId ? employeeById(employee.managerId) : null),
    },
    Node: { __resolveType: kindOf },
    SearchResult: { __resolveType: kindOf },
  };
}

/** Builds the server (not listening yet). */
export function createGraphqlServer({ schemaPath = GRAPHQL_SCHEMA } = {}) {
  const recorded = { count: 0, request: null };
  const yoga = createYoga({
    schema: createSchema({ typeDefs: typeDefs(schemaPath), resolvers: resolvers(fixedData()) }),
    graphqlEndpoint: '/graphql',
    graphiql: false,
    landingPage: false,
    logging: false,
    plugins: [
      {
        // Yoga has parsed the body: keep what it understood with the headers.
        onParams({ params }) {
          if (recorded.request) recorded.request.body = params;
        },
      },
    ],
  });
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url, 'http://localhost');
    if (pathname === '/graphql') {
      recorded.count += 1;
      recorded.request = { method: req.method, path: req.url, headers: { ...req.headers }, body: null };
      yoga(req, res);
      return;
    }
    if (req.method === 'GET' && pathname === '/last-request') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(recorded));
      return;
    }
    if (req.method === 'GET' && pathname === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found');
  });
  return server;
}

/**
 * Starts this file as a child process on a free loopback port and waits for
 * its URL line. `lastRequest()` fetches GET /last-request.
 */
export async function startGraphqlServer({ schemaPath } = {}) {
  const { startProcess } = await import('./procs.mjs');
  const env = schemaPath ? { SCHEMA: schemaPath } : {};
  const proc = startProcess('graphql', process.execPath, [GRAPHQL_SERVER_ENTRY, '0'], { env });
  const url = await new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => reject(new Error(`graphql server did not start:\n${proc.output}`)), 20_000);
    proc.child.stdout.on('data', (chunk) => {
      seen += chunk.toString();
      const line = seen.split('\n').find((l) => l.startsWith('http://'));
      if (line) {
        clearTimeout(timer);
        resolve(line.trim());
      }
    });
    proc.exited.then((info) => {
      clearTimeout(timer);
      reject(new Error(`graphql server exited (${JSON.stringify(info)}):\n${proc.output}`));
    });
  });
  const base = new URL('/', url).href.replace(/\/$/, '');
  return {
    url,
    base,
    port: Number(new URL(url).port),
    proc,
    async lastRequest() {
      const res = await fetch(`${base}/last-request`);
      return res.json();
    },
    stop: () => proc.stop(),
  };
}

// Run directly: listen and print the URL.
if (process.argv[1] && path.resolve(process.argv[1]) === GRAPHQL_SERVER_ENTRY) {
  const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`graphql-server: not a port: ${process.argv[2] ?? process.env.PORT}`);
    process.exit(2);
  }
  const server = createGraphqlServer({ schemaPath: process.env.SCHEMA || GRAPHQL_SCHEMA });
  server.listen(port, '127.0.0.1', () => {
    const { port: bound } = server.address();
    console.log(`http://127.0.0.1:${bound}/graphql`);
  });
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => {
      server.close(() => process.exit(0));
      server.closeAllConnections();
    });
  }
}
