import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createLab, Lab } from '../../lab/lab';
import { lbdConfig, startLbd } from '../helpers/lbd-process';

// One lab for this file: client, balancer and two Apache real servers on one bridge.
let lab: Lab;
before(() => {
  lab = createLab({ shape: 'one-nic' });
});
after(() => lab?.teardown());

const N = 10;
const PORT = 45000;

/**
 * N short HTTP/1.0 connections from ONE client port, one after the other (a node client: libuv
 * binds with SO_REUSEADDR). Apache closes first and the client answers the FIN only after it has
 * read everything, so the client side ends without TIME_WAIT and binds the port again at once,
 * while lbd, which sees only the client's FIN, still holds the entry in FIN_WAIT (tcpfin 120 s)
 * when the next SYN comes.
 */
const CLIENT = `
const net = require('node:net');
const [vip, port, n] = process.argv.slice(1);
const once = () => new Promise((resolve, reject) => {
  const s = net.connect({ host: vip, port: 80, localPort: Number(port), allowHalfOpen: true });
  let body = '';
  s.setEncoding('utf8');
  s.on('connect', () => s.write('GET / HTTP/1.0\\r\\n\\r\\n'));
  s.on('data', (d) => (body += d));
  s.on('end', () => s.end());
  s.on('close', () => resolve(body.split('\\r\\n\\r\\n')[1]?.trim()));
  s.on('error', reject);
});
(async () => {
  const out = [];
  for (let i = 0; i < Number(n); i++) {
    for (let tries = 0; ; tries++) {
      try { out.push(await once()); break; } catch (e) { if (e.code !== 'EADDRINUSE' || tries > 50) throw e; }
      await new Promise((r) => setTimeout(r, 50));
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
`;

function reuseClient(): string[] {
  return JSON.parse(lab.exec(lab.ns.client, ['node', '-e', CLIENT, lab.addr.vip, String(PORT), String(N)], { timeoutMs: 60000 })) as string[];
}

for (const dataplane of ['native', 'ts'] as const) {
  test(`${dataplane}: conn_reuse_mode 2 (default): SYNs on a port whose entry is in FIN_WAIT are rescheduled and counted, rr alternates`, async () => {
    const lbd = await startLbd(lab, lbdConfig(lab, { scheduler: 'rr', top: `dataplane: ${dataplane}` }));
    try {
      assert.equal(lbd.metric('lbd_dataplane_info', { path: dataplane }), 1);
      const bodies = reuseClient();
      for (let i = 1; i < N; i++) assert.notEqual(bodies[i], bodies[i - 1], `strict alternation: ${bodies.join(' ')}`);
      assert.deepEqual(new Set(bodies), new Set(['server40', 'server111']));
      assert.equal(lbd.metric('lbd_service_connections_total', { service: 'web' }), N, 'every connection counted');
      assert.equal(lbd.metric('lbd_real_server_connections_total', { real: `${lab.addr.rs[0]}:80` }), N / 2);
      assert.equal(lbd.metric('lbd_real_server_connections_total', { real: `${lab.addr.rs[1]}:80` }), N / 2);
    } finally {
      await lbd.stop();
    }
  });

  for (const mode of [0, 1]) {
    test(`${dataplane}: conn_reuse_mode ${mode} (${mode === 0 ? 'the fault' : "IPVS's default: FIN_WAIT is not TIME_WAIT"}): reused connections go to the old server and are not counted`, async () => {
      const lbd = await startLbd(lab, lbdConfig(lab, { scheduler: 'rr', top: `dataplane: ${dataplane}\nconn_reuse_mode: ${mode}` }));
      try {
        assert.equal(lbd.metric('lbd_dataplane_info', { path: dataplane }), 1);
        const bodies = reuseClient();
        assert.equal(new Set(bodies).size, 1, `every connection on the first one's server: ${bodies.join(' ')}`);
        assert.match(bodies[0], /^server(40|111)$/);
        assert.equal(lbd.metric('lbd_service_connections_total', { service: 'web' }), 1, `${N} connections, 1 counted`);
      } finally {
        await lbd.stop();
      }
    });
  }
}
