// A load balancer without stickiness, for the portal walk against two gateway
// replicas (issue 16): each request of a browser goes to the other replica
// than that browser's last one (browsers told apart by their portal cookie;
// requests without one take turns among themselves). On SIGTERM it prints how
// many requests each replica served and exits.
//
//   node alternating-proxy.mjs LISTEN_PORT http://127.0.0.1:A http://127.0.0.1:B

import http from 'node:http';

const [port, ...targets] = process.argv.slice(2);
if (!port || targets.length < 2) {
  console.error('usage: alternating-proxy.mjs PORT TARGET TARGET...');
  process.exit(2);
}
const upstreams = targets.map((target) => new URL(target));
const served = upstreams.map(() => 0);
const turns = new Map();
const agent = new http.Agent({ keepAlive: true });

function replicaFor(request) {
  const session = /(?:^|;\s*)tavana_portal=([^;]*)/.exec(request.headers.cookie ?? '')?.[1] ?? '';
  const turn = turns.get(session) ?? 0;
  turns.set(session, turn + 1);
  return turn % upstreams.length;
}

const server = http.createServer((request, response) => {
  const replica = replicaFor(request);
  served[replica] += 1;
  const upstream = upstreams[replica];
  const forwarded = http.request(
    {
      agent,
      hostname: upstream.hostname,
      port: upstream.port,
      method: request.method,
      path: request.url,
      // The Host stays the client's, as behind a real load balancer.
      headers: request.headers,
    },
    (answer) => {
      response.writeHead(answer.statusCode, answer.rawHeaders);
      answer.pipe(response);
    },
  );
  forwarded.on('error', (error) => {
    response.writeHead(502, { 'content-type': 'text/plain' });
    response.end(`replica ${replica} (${upstream}): ${error.message}\n`);
  });
  request.pipe(forwarded);
});

process.on('SIGTERM', () => {
  console.log(`served ${served.map((count, replica) => `replica ${replica}: ${count}`).join(', ')}`);
  process.exit(0);
});

server.listen(Number(port), '127.0.0.1', () => {
  console.log(`alternating over ${targets.join(', ')} on http://127.0.0.1:${port}`);
});
