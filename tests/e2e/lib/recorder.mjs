// A recording reverse proxy: mcpgate -> recorder -> server-everything.
//
// It records the method, path and headers of every request it receives, so
// the tests can assert what the upstream actually saw (never the client's
// token, always the gateway's own credential). Bodies are piped in both
// directions without buffering, so SSE responses reach mcpgate event by event;
// a copy of each body is also kept (record.body, record.responseBody, both
// strings that grow as chunks pass), with the answer's headers
// (record.responseHeaders), so tests can see exactly what the
// upstream received and answered.
import http from 'node:http';
import { StringDecoder } from 'node:string_decoder';

export async function startRecorder({ targetPort, targetHost = '127.0.0.1' }) {
  const requests = [];
  const agent = new http.Agent({ keepAlive: true });
  const server = http.createServer((req, res) => {
    const record = { method: req.method, url: req.url, headers: { ...req.headers }, body: '', responseBody: '' };
    requests.push(record);
    const requestDecoder = new StringDecoder('utf8');
    req.on('data', (chunk) => {
      record.body += requestDecoder.write(chunk);
    });
    const upstream = http.request(
      {
        host: targetHost,
        port: targetPort,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, host: `${targetHost}:${targetPort}` },
        agent,
      },
      (upRes) => {
        record.status = upRes.statusCode;
        record.responseContentType = upRes.headers['content-type'];
        record.responseHeaders = { ...upRes.headers };
        res.writeHead(upRes.statusCode, upRes.statusMessage, upRes.rawHeaders);
        // Send the headers now: an SSE response may not produce a body chunk
        // for a while, and the client must see the stream open.
        res.flushHeaders();
        const responseDecoder = new StringDecoder('utf8');
        upRes.on('data', (chunk) => {
          record.responseBody += responseDecoder.write(chunk);
        });
        upRes.pipe(res);
        upRes.once('error', () => res.destroy());
      },
    );
    upstream.once('error', (err) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`recorder: upstream error ${err.code ?? err.message}`);
      } else {
        res.destroy();
      }
    });
    // If mcpgate drops the connection (e.g. closes an SSE stream), drop ours
    // to the upstream too.
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}/mcp`,
    requests,
    async stop() {
      server.closeAllConnections?.();
      agent.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
