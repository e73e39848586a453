/**
 * The admin socket against malformed and abusive clients: every malformed request is answered
 * E_USAGE naming what is wrong and the daemon keeps answering; an over-long line, an idle client
 * and a client that never reads its answers cost bounded memory and are closed or held back.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { adminRequest } from '../../src/control/admin/client';
import { Control } from '../../src/control/admin/control';
import type { PingResult } from '../../src/control/admin/protocol';
import { parseRequest } from '../../src/control/admin/schema';
import { AdminLimits, AdminServer } from '../../src/control/admin/server';
import { BASE_CONFIG, testDaemon } from '../helpers/daemon';
import { adminUnderTest, checkServerLines, fuzzAdmin, readAdminFixtures } from '../fuzz/admin';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-admin-abuse-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;

async function withAdmin(limits: Partial<AdminLimits>, fn: (sock: string, admin: AdminServer) => Promise<void>): Promise<void> {
  const t = await testDaemon(BASE_CONFIG());
  const sock = path.join(tmp, `run-${++n}`, 'lbd.sock');
  const admin = new AdminServer(new Control(t.daemon), sock, undefined, limits);
  await admin.listen();
  try {
    await fn(sock, admin);
  } finally {
    await admin.close();
    await t.daemon.stop();
  }
}

interface Answer {
  ok: boolean;
  result?: unknown;
  error?: { code: string; message: string };
}

/** A raw client: writes what it is given, collects answer lines, and tells when it is closed. */
function rawClient(sock: string) {
  const s = net.createConnection(sock);
  let buf = '';
  const lines: Answer[] = [];
  const waiters: (() => void)[] = [];
  s.setEncoding('utf8');
  s.on('data', (d: string) => {
    buf += d;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buf.slice(0, i)));
      buf = buf.slice(i + 1);
    }
    waiters.splice(0).forEach((w) => w());
  });
  s.on('error', () => {});
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  return {
    s,
    closed,
    lines,
    /** The next `count` answers (waits for them). */
    async answers(count: number, timeoutMs = 5000): Promise<Answer[]> {
      const deadline = Date.now() + timeoutMs;
      while (lines.length < count) {
        if (Date.now() > deadline) throw new Error(`only ${lines.length} of ${count} answers`);
        await Promise.race([new Promise<void>((r) => waiters.push(r)), closed, new Promise((r) => setTimeout(r, 50))]);
      }
      return lines.splice(0, count);
    },
  };
}

test('malformed requests: each answered E_USAGE naming the field, and the daemon answers a good request after', async () => {
  await withAdmin({}, async (sock) => {
    const cases: [string, RegExp][] = [
      ['null', /^a request is one JSON object per line$/],
      ['[]', /^a request is one JSON object per line$/],
      ['"x"', /^a request is one JSON object per line$/],
      ['42', /^a request is one JSON object per line$/],
      ['{}', /missing field "cmd"/],
      ['{"cmd":1}', /unknown admin request 1 .*field "cmd"/],
      ['{"cmd":null}', /unknown admin request null/],
      ['{"cmd":"list","extra":1}', /unknown field "extra" in a request/],
      ['{"cmd":"list","args":5}', /invalid args 5/],
      ['{"cmd":"connections","args":{"limit":"x"}}', /invalid limit "x": expected an integer/],
      ['{"cmd":"change"}', /invalid args undefined: a change is a JSON object/],
      ['{"cmd":"change","args":null}', /invalid args null/],
      ['{"cmd":"change","args":{}}', /missing field "op"/],
      ['{"cmd":"change","args":{"op":"server-frob"}}', /unknown change "server-frob" \(field "op"/],
      // The six wrongly typed fields.
      ['{"cmd":"change","args":{"op":"server-add","service":"web","address":"10.0.10.112","weight":"x"}}', /^invalid weight "x": expected an integer 0-65535$/],
      ['{"cmd":"change","args":{"op":"server-add","service":"web","address":5}}', /^invalid address 5: expected a string/],
      ['{"cmd":"change","args":{"op":"server-remove","service":{"a":1},"address":"10.0.10.40"}}', /^invalid service \{"a":1\}: expected a string/],
      [
        '{"cmd":"change","args":{"op":"server-edit","service":"web","address":"10.0.10.40","u_threshold":-1}}',
        /^invalid u_threshold -1: expected an integer 0-/,
      ],
      ['{"cmd":"change","args":{"op":"server-drain","service":"web","address":"10.0.10.40","wait":"yes"}}', /^unknown field "wait" in a server-drain change/],
      ['{"cmd":"change","args":{"op":"server-add","service":"web","address":"10.0.10.112","wieght":2}}', /^unknown field "wieght" .*did you mean "weight"/],
      // And what used to reach apply.ts as the wrong type.
      ['{"cmd":"change","args":{"op":"service-add","name":"x","vip":"10.0.10.102","port":80,"protocol":7,"servers":["10.0.10.40"]}}', /^invalid protocol 7/],
      ['{"cmd":"change","args":{"op":"service-add","name":"x","vip":"10.0.10.102","port":80,"servers":"10.0.10.40"}}', /^invalid servers "10.0.10.40"/],
      ['{"cmd":"change","args":{"op":"service-add","name":"x","vip":"10.0.10.102","port":80,"servers":[1]}}', /^invalid servers\[0\] 1/],
      ['{"cmd":"change","args":{"op":"service-add","name":"x","vip":"10.0.10.102","port":"80","servers":["10.0.10.40"]}}', /^invalid port "80"/],
      ['{"cmd":"change","args":{"op":"service-edit","service":"web","persistence":{}}}', /^invalid persistence \{\}/],
      ['{"cmd":"change","args":{"op":"service-edit","service":"web","mac":null}}', /^unknown field "mac" in a service-edit change/],
      ['{"cmd":"change","args":{"op":"server-edit","service":"web","address":"10.0.10.40","mac":null}}', /^invalid mac null/],
    ];
    const c = rawClient(sock);
    c.s.write(cases.map(([line]) => line + '\n').join('') + '{"cmd":"ping"}\n');
    const answers = await c.answers(cases.length + 1);
    cases.forEach(([line, re], i) => {
      assert.equal(answers[i].ok, false, line);
      assert.equal(answers[i].error!.code, 'E_USAGE', line);
      assert.match(answers[i].error!.message, re, line);
    });
    assert.equal(answers[cases.length].ok, true, 'the same connection still answers');
    c.s.destroy();
    assert.equal((await adminRequest<PingResult>(sock, 'ping')).pid, process.pid);
  });
});

test('the schema types what it accepts: digits for counts become numbers, unknown and null fields are refused', () => {
  assert.deepEqual(parseRequest({ cmd: 'change', args: { op: 'server-edit', service: 'web', address: '10.0.10.40', u_threshold: '100' } }), {
    cmd: 'change',
    args: { op: 'server-edit', service: 'web', address: '10.0.10.40', u_threshold: 100 },
  });
  assert.deepEqual(parseRequest({ cmd: 'connections', args: { limit: 3 } }), { cmd: 'connections', args: { limit: 3 } });
  assert.deepEqual(parseRequest({ cmd: 'list' }), { cmd: 'list', args: {} });
  assert.throws(() => parseRequest({ cmd: 'ping', args: { x: 1 } }), /unknown field "x" in the args of ping \(it has none\)/);
});

test("the CLI end refuses a malformed request with the daemon's message, before sending it", async () => {
  await assert.rejects(
    adminRequest(path.join(tmp, 'nobody.sock'), 'change', { op: 'server-add', service: 'web', address: 5 }),
    (e: Error & { code?: string }) => {
      assert.equal(e.code, 'E_USAGE');
      assert.match(e.message, /^invalid address 5: expected a string/);
      return true;
    },
  );
});

test('an over-long line: the requests before it are answered, then E_USAGE and the connection closed', async () => {
  await withAdmin({ maxLine: 4096 }, async (sock) => {
    const c = rawClient(sock);
    c.s.write('{"cmd":"ping"}\n' + 'x'.repeat(10000));
    const [first, second] = await c.answers(2);
    assert.equal(first.ok, true);
    assert.equal(second.error!.code, 'E_USAGE');
    assert.match(second.error!.message, /^request too long: a request line is at most 4096 bytes/);
    await c.closed;
    // Also when the long line is complete (has its newline).
    const d = rawClient(sock);
    d.s.write('y'.repeat(5000) + '\n{"cmd":"ping"}\n');
    const [only] = await d.answers(1);
    assert.match(only.error!.message, /^request too long/);
    await d.closed;
    assert.equal(d.lines.length, 0, 'nothing after the long line is answered');
    assert.equal((await adminRequest<PingResult>(sock, 'ping')).pid, process.pid);
  });
});

test('an idle client is closed after the idle timeout; too many clients are refused', async () => {
  await withAdmin({ idleMs: 200, maxClients: 2 }, async (sock) => {
    const c = rawClient(sock);
    const t0 = Date.now();
    await c.closed;
    const took = Date.now() - t0;
    assert.ok(took >= 150 && took < 5000, `closed after ${took} ms`);
    const a = rawClient(sock);
    const b = rawClient(sock);
    await new Promise((r) => setTimeout(r, 50));
    const third = rawClient(sock);
    const [refused] = await third.answers(1);
    assert.equal(refused.error!.code, 'E_ADMIN');
    assert.match(refused.error!.message, /serves 2 admin clients already/);
    await third.closed;
    a.s.destroy();
    b.s.destroy();
    await Promise.all([a.closed, b.closed]);
    assert.equal((await adminRequest<PingResult>(sock, 'ping')).pid, process.pid);
  });
});

test('20,000 pipelined requests never read: the output stays bounded, other clients are answered', async () => {
  await withAdmin({}, async (sock, admin) => {
    const s = net.createConnection(sock);
    s.on('error', () => {});
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.pause(); // never reads its answers
    s.write('{"cmd":"list"}\n'.repeat(20000));
    // Let the server read and answer all it will.
    await new Promise((r) => setTimeout(r, 1000));
    const served = [...(admin as unknown as { sockets: Set<net.Socket> }).sockets];
    const worst = Math.max(...served.map((x) => x.writableLength));
    // One answer is about 1.5 KiB: without backpressure 20,000 of them would be ~30 MiB buffered.
    assert.ok(worst < 1 << 20, `the daemon buffers ${worst} bytes for a client that does not read`);
    const t0 = Date.now();
    for (let i = 0; i < 5; i++) assert.equal((await adminRequest<PingResult>(sock, 'ping')).pid, process.pid);
    assert.ok(Date.now() - t0 < 5000);
    // When it reads, it gets every answer, in order.
    let got = 0;
    let buf = '';
    s.setEncoding('utf8');
    const all = new Promise<void>((resolve) =>
      s.on('data', (d: string) => {
        buf += d;
        const parts = buf.split('\n');
        buf = parts.pop()!;
        for (const p of parts) assert.equal(JSON.parse(p).ok, true);
        got += parts.length;
        if (got === 20000) resolve();
      }),
    );
    s.resume();
    await all;
    s.destroy();
  });
});

// ---- Property-based (test/fuzz/admin.ts; the long run: npm run fuzz -- --target admin) ----------

test('fuzz (smoke, fixed seed): random values through the schema and random lines through the server, answered with a stable code naming the field', async () => {
  const r = await fuzzAdmin({ seed: 0xad, inputs: 3000, runsPerRound: 40 });
  assert.deepEqual(
    r.failures.map((f) => `seed ${f.seed}: ${f.error}`),
    [],
  );
});

test('fuzz: every stored failing batch of request lines (test/fixtures/fuzz/admin) now passes', async () => {
  const stored = readAdminFixtures(path.resolve(__dirname, '../../../test/fixtures/fuzz/admin'));
  if (stored.length === 0) return;
  const a = await adminUnderTest(tmp);
  try {
    for (const f of stored) {
      await checkServerLines(a.sock, f.lines).catch((e: Error) => assert.fail(`${f.file}: ${e.message}`));
    }
  } finally {
    await a.close();
  }
});
