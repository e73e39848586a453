/**
 * A running lbd against malformed admin lines: `null` used to escape the admin handler, and lbd
 * undid its host changes and exited, so forwarding stopped. It must answer E_USAGE and go on
 * forwarding.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as net from 'node:net';
import { createLab, Lab } from '../../lab/lab';
import { curl, lbdConfig, startLbd } from '../helpers/lbd-process';

let lab: Lab;
before(() => {
  lab = createLab({ shape: 'one-nic' });
});
after(() => lab?.teardown());

/** Writes `text` on the admin socket and returns the answer lines (until `count` came, or the daemon closed). */
function rawAdmin(socket: string, text: string, count: number): Promise<{ ok: boolean; error?: { code: string; message: string } }[]> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(socket);
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no ${count} answers within 10 s: ${JSON.stringify(buf)}`));
    }, 10000);
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(
        buf
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l)),
      );
    };
    s.setEncoding('utf8');
    s.on('connect', () => s.write(text));
    s.on('data', (d: string) => {
      buf += d;
      if (buf.split('\n').filter(Boolean).length >= count) done();
    });
    s.on('close', done);
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

test('`null` (and other malformed lines) on the admin socket: answered E_USAGE, lbd keeps running and forwarding', async () => {
  const lbd = await startLbd(lab, lbdConfig(lab, { scheduler: 'rr' }));
  try {
    assert.match(curl(lab, `http://${lab.addr.vip}/`), /^server\d+$/);
    const [answer] = await rawAdmin(lbd.socket, 'null\n', 1);
    assert.deepEqual(answer, { ok: false, error: { code: 'E_USAGE', message: 'a request is one JSON object per line' } });
    const more = await rawAdmin(
      lbd.socket,
      ['[]', '{"cmd":1}', '{"cmd":"change","args":{"op":"server-edit","service":"web","address":"' + lab.addr.rs[0] + '","weight":"x"}}'].join('\n') + '\n',
      3,
    );
    assert.deepEqual(
      more.map((a) => a.error?.code),
      ['E_USAGE', 'E_USAGE', 'E_USAGE'],
    );
    assert.match(more[2].error!.message, /^invalid weight "x"/);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(lbd.proc.exitCode, null, 'lbd is still running');
    assert.equal(lbd.proc.signalCode, null);
    for (let i = 0; i < 4; i++) assert.match(curl(lab, `http://${lab.addr.vip}/`), /^server\d+$/, 'still forwarding through the VIP');
    const [ping] = await rawAdmin(lbd.socket, '{"cmd":"ping"}\n', 1);
    assert.equal(ping.ok, true);
    assert.equal(lbd.logs().filter((l) => l.msg === 'admin request failed').length, 0, 'no malformed request is an internal error');
  } finally {
    const { code } = await lbd.stop();
    assert.equal(code, 0);
  }
});
