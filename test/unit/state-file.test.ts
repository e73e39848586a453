import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConnState, SLOT_EMPTY, STATE_LAYOUT_VERSION, flowHash } from '../../src/dataplane/contract';
import { connPort } from '../../src/dataplane/conntable';
import { macToString, ipToInt } from '../../src/dataplane/packet';
import { HEADER_BYTES, readHeader, writeHeader } from '../../src/dataplane/state-file';
import { regionBytes, regionSizes, regionViews } from '../../src/dataplane/state';
import { ACK, MAC, SYN, frame } from '../helpers/frames';
import { BASE_CONFIG, WEB_SERVICE_HEAD, testDaemon } from '../helpers/daemon';
import { parseConfig } from '../../src/config/load';

const CLIENT = ipToInt('10.0.10.50');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-state-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
let n = 0;
const stateFile = () => path.join(dir, `t${++n}.state`);
const dstMac = (f: Buffer) => macToString(f, 0);

/** `count` flows from the client (ports 50000…), the odd ones ESTABLISHED; their real servers' MACs. */
function openFlows(t: Awaited<ReturnType<typeof testDaemon>>, count: number): string[] {
  const macs: string[] = [];
  for (let i = 0; i < count; i++) {
    macs.push(dstMac(t.send(frame({ flags: SYN, sport: 50000 + i }))[0]));
    if (i % 2 === 1) t.send(frame({ flags: ACK, sport: 50000 + i }));
  }
  return macs;
}

test('a restarted lbd adopts every flow: the same real server, TCP state, ActiveConn/InActConn, templates and their references', async () => {
  const file = stateFile();
  const cfg = BASE_CONFIG({ persistence: '300' });
  const a = await testDaemon(cfg, { stateFile: file });
  const macs = openFlows(a, 6);
  const fa = a.daemon.forwarder;
  const before = {
    active: [fa.dests.active[0], fa.dests.active[1]],
    inactive: [fa.dests.inactive[0], fa.dests.inactive[1]],
    persistent: [fa.dests.persistent[0], fa.dests.persistent[1]],
    state: fa.conns.state[fa.conns.find(CLIENT, 50001)],
  };
  await a.daemon.stop();
  a.daemon.releaseStateFile();
  assert.ok(fs.existsSync(file), 'SIGTERM-like stop keeps the state file');

  const b = await testDaemon(cfg, { stateFile: file });
  try {
    const fb = b.daemon.forwarder;
    assert.equal(b.daemon.adoption.previous, 'adoptable');
    assert.equal(b.daemon.adoption.flows, 6);
    assert.equal(b.daemon.adoption.templates, 1);
    assert.equal(b.daemon.adoption.restarts, 1);
    assert.equal(b.daemon.adoption.previousStopped, true);
    assert.equal(fb.conns.size, 6);
    assert.deepEqual([fb.dests.active[0], fb.dests.active[1]], before.active);
    assert.deepEqual([fb.dests.inactive[0], fb.dests.inactive[1]], before.inactive);
    assert.deepEqual([fb.dests.persistent[0], fb.dests.persistent[1]], before.persistent);
    assert.equal(fb.conns.state[fb.conns.find(CLIENT, 50001)], before.state);
    const t = fb.templates.find(CLIENT, connPort(0, 0));
    assert.equal(fb.templates.refs[t], 6, 'every connection holds the template again');
    for (let i = 0; i < 6; i++) assert.equal(dstMac(b.send(frame({ flags: ACK, sport: 50000 + i }))[0]), macs[i], `flow ${i} goes on to its server`);
    assert.equal(
      fb.drops.reduce((x, y) => x + y, 0),
      0,
      'no frame dropped',
    );
  } finally {
    await b.daemon.stop();
  }
});

test('entries follow who the real server is, not its index: another order, a new server first, a removed one drains', async () => {
  const file = stateFile();
  const a = await testDaemon(BASE_CONFIG(), { stateFile: file });
  const macs = openFlows(a, 4);
  await a.daemon.stop();
  a.daemon.releaseStateFile();
  // rs111 first, a new server before it, rs40 gone (on_remove: drain, the default).
  const reordered = `${WEB_SERVICE_HEAD}    real_servers:
      - address: 10.0.10.7
        mac: ${MAC.other}
      - address: 10.0.10.111
        mac: ${MAC.rs111}
`;
  const b = await testDaemon(reordered, { stateFile: file });
  try {
    assert.equal(b.daemon.adoption.flows, 4);
    for (let i = 0; i < 4; i++) assert.equal(dstMac(b.send(frame({ flags: ACK, sport: 50000 + i }))[0]), macs[i], `flow ${i} on its server`);
    const rs40 = b.daemon.forwarder.dests.views.find((r) => r.addr === ipToInt('10.0.10.40'))!;
    assert.ok(rs40.removed, 'the server the config no longer has drains');
    for (let i = 0; i < 6; i++) assert.notEqual(dstMac(b.send(frame({ flags: SYN, sport: 51000 + i }))[0]), MAC.rs40, 'and takes no new flow');
  } finally {
    await b.daemon.stop();
  }
  // The same with on_remove: drop: the removed server's flows are not adopted.
  const file2 = stateFile();
  const c = await testDaemon(BASE_CONFIG(), { stateFile: file2 });
  const macs2 = openFlows(c, 4);
  await c.daemon.stop();
  c.daemon.releaseStateFile();
  const d = await testDaemon(`on_remove: drop\n${reordered}`, { stateFile: file2 });
  try {
    const onRs40 = macs2.filter((m) => m === MAC.rs40).length;
    assert.equal(d.daemon.adoption.rejected.removed, onRs40);
    assert.equal(d.daemon.adoption.flows, 4 - onRs40);
  } finally {
    await d.daemon.stop();
  }
});

test('damaged entries (a SIGKILL mid-write) are dropped one by one and counted; the sound ones are adopted', async () => {
  const file = stateFile();
  const a = await testDaemon(BASE_CONFIG(), { stateFile: file });
  openFlows(a, 10);
  const now = a.daemon.forwarder.now;
  await a.daemon.stop();
  a.daemon.releaseStateFile();
  const bytes = fs.readFileSync(file);
  const header = readHeader(bytes, '');
  assert.ok(typeof header !== 'string', String(header));
  const v = regionViews(bytes.buffer as ArrayBuffer, bytes.byteOffset + HEADER_BYTES, header);
  const slotOf = (port: number) => {
    for (let i = 0; i < v.dest.length; i++) if (v.dest[i] !== SLOT_EMPTY && v.keyPort[i] === connPort(0, port)) return i;
    throw new Error(`no entry for ${port}`);
  };
  v.dest[slotOf(50000)] = 5000; // an index past every table
  v.state[slotOf(50001)] = 99; // no such state
  v.expires[slotOf(50002)] = now - 1; // its time came while no lbd ran
  // An entry far from its home slot with an empty slot on the way: a move cut short.
  const moved = slotOf(50003);
  const home = flowHash(v.keyAddr[moved], v.keyPort[moved]) & (v.dest.length - 1);
  let far = (home + 7) & (v.dest.length - 1);
  while (v.dest[far] !== SLOT_EMPTY || v.dest[(far - 1) & (v.dest.length - 1)] !== SLOT_EMPTY) far = (far + 1) & (v.dest.length - 1);
  for (const k of ['keyAddr', 'keyPort', 'dest', 'state', 'flags', 'expires'] as const) v[k][far] = v[k][moved];
  v.dest[moved] = SLOT_EMPTY;
  // The other half of a move: the same key twice, both on its probe path.
  const dup = slotOf(50004);
  let next = dup;
  while (v.dest[next] !== SLOT_EMPTY) next = (next + 1) & (v.dest.length - 1);
  for (const k of ['keyAddr', 'keyPort', 'dest', 'state', 'flags', 'expires'] as const) v[k][next] = v[k][dup];
  fs.writeFileSync(file, bytes);

  const b = await testDaemon(BASE_CONFIG(), { stateFile: file });
  try {
    const r = b.daemon.adoption.rejected;
    assert.deepEqual(
      { corrupt: r.corrupt, misplaced: r.misplaced, duplicate: r.duplicate, expired: r.expired },
      { corrupt: 2, misplaced: 1, duplicate: 1, expired: 1 },
    );
    assert.equal(b.daemon.adoption.flows, 6, '10 - corrupt 2 - expired 1 - misplaced 1 (the duplicate is the one adopted)');
    assert.equal(b.daemon.forwarder.conns.size, 6);
    const total =
      b.daemon.forwarder.dests.active[0] + b.daemon.forwarder.dests.inactive[0] + b.daemon.forwarder.dests.active[1] + b.daemon.forwarder.dests.inactive[1];
    assert.equal(total, 6, 'ActiveConn + InActConn count what was adopted, not what the file said');
  } finally {
    await b.daemon.stop();
  }
});

test('a state file that does not match is set aside and lbd starts empty: another layout, a damaged header, cut short, another boot', () => {
  const sizes = regionSizes(1024);
  const good = Buffer.alloc(HEADER_BYTES + regionBytes(sizes));
  writeHeader(good, sizes, 'boot-a', 0);
  assert.equal(typeof readHeader(good, 'boot-a'), 'object');
  const other = Buffer.from(good);
  other.writeUInt32LE(STATE_LAYOUT_VERSION - 1, 8);
  assert.match(readHeader(other, 'boot-a') as string, /^layout version \d+, this lbd reads \d+$/);
  const damaged = Buffer.from(good);
  damaged.writeUInt32LE(4096, 16); // the connection capacity, after the checksum was made
  assert.match(readHeader(damaged, 'boot-a') as string, /checksum/);
  assert.match(readHeader(good.subarray(0, good.length - 4096), 'boot-a') as string, /cut short/);
  assert.match(readHeader(good, 'boot-b') as string, /before the last boot/);
  assert.match(readHeader(Buffer.from('hello'), 'boot-a') as string, /shorter than a header/);
});

test('set aside: a file of another layout is renamed .rejected, lbd starts empty; --fresh starts empty on purpose', async () => {
  const file = stateFile();
  const sizes = regionSizes(1024);
  const old = Buffer.alloc(HEADER_BYTES + regionBytes(sizes));
  writeHeader(old, sizes, '', 0);
  old.writeUInt32LE(STATE_LAYOUT_VERSION + 1, 8);
  fs.writeFileSync(file, old);
  const a = await testDaemon(BASE_CONFIG(), { stateFile: file });
  try {
    assert.equal(a.daemon.adoption.previous, 'set-aside');
    assert.match(a.daemon.adoption.reason!, /layout version/);
    assert.deepEqual(fs.readFileSync(`${file}.rejected`), old);
    openFlows(a, 3);
  } finally {
    await a.daemon.stop();
    a.daemon.releaseStateFile();
  }
  const b = await testDaemon(BASE_CONFIG(), { stateFile: file, fresh: true });
  try {
    assert.equal(b.daemon.adoption.previous, 'fresh');
    assert.equal(b.daemon.forwarder.conns.size, 0);
    assert.equal(b.send(frame({ flags: ACK, sport: 50001 })).length, 0, 'the old flows are gone');
  } finally {
    await b.daemon.stop();
  }
});

test('one lbd per state file: a second one is refused (E_INSTANCE) while the first runs, and starts once it stopped', async () => {
  const file = stateFile();
  const a = await testDaemon(BASE_CONFIG(), { stateFile: file });
  await assert.rejects(
    testDaemon(BASE_CONFIG(), { stateFile: file }),
    (e: Error & { code?: string }) => e.code === 'E_INSTANCE' && /another lbd runs with the state file/.test(e.message),
  );
  await a.daemon.stop();
  a.daemon.releaseStateFile();
  const b = await testDaemon(BASE_CONFIG(), { stateFile: file });
  await b.daemon.stop();
  b.daemon.releaseStateFile();
});

test('stop("clean") removes the state file and its lock; a plain stop keeps it', async () => {
  const file = stateFile();
  const a = await testDaemon(BASE_CONFIG(), { stateFile: file });
  await a.daemon.stop();
  a.daemon.releaseStateFile();
  assert.ok(fs.existsSync(file), 'a plain stop keeps the state file');
  const b = await testDaemon(BASE_CONFIG(), { stateFile: file });
  await b.daemon.stop('clean');
  b.daemon.releaseStateFile();
  assert.ok(!fs.existsSync(file) && !fs.existsSync(`${file}.new`), 'clean removes it');
});

test('a table adopted into a larger one keeps its flows (connection_table.size may change across a restart)', async () => {
  const file = stateFile();
  const a = await testDaemon(BASE_CONFIG({ size: 1024 }), { stateFile: file });
  const macs = openFlows(a, 5);
  await a.daemon.stop();
  a.daemon.releaseStateFile();
  const b = await testDaemon(BASE_CONFIG({ size: 8192 }), { stateFile: file });
  try {
    assert.equal(b.daemon.adoption.flows, 5);
    for (let i = 0; i < 5; i++) assert.equal(dstMac(b.send(frame({ flags: ACK, sport: 50000 + i }))[0]), macs[i]);
    assert.equal(b.daemon.forwarder.conns.state[b.daemon.forwarder.conns.find(CLIENT, 50001)], ConnState.Established);
  } finally {
    await b.daemon.stop();
  }
});

/** Rewrites the previous lbd's file in place: `edit` gets its region's arrays. */
function editFile(file: string, edit: (v: ReturnType<typeof regionViews>) => void): void {
  const bytes = fs.readFileSync(file);
  const header = readHeader(bytes, '');
  if (typeof header === 'string') throw new Error(header);
  edit(regionViews(bytes.buffer as ArrayBuffer, bytes.byteOffset + HEADER_BYTES, header));
  fs.writeFileSync(file, bytes);
}

test('a smaller table: what does not fit is counted table_full, and the template is held by exactly the connections adopted', async () => {
  const file = stateFile();
  const a = await testDaemon(BASE_CONFIG({ size: 4096, persistence: '300' }), { stateFile: file });
  for (let i = 0; i < 1100; i++) a.send(frame({ flags: SYN, sport: 20000 + i }));
  await a.daemon.stop();
  a.daemon.releaseStateFile();
  const b = await testDaemon(BASE_CONFIG({ size: 1024, persistence: '300' }), { stateFile: file });
  try {
    const fb = b.daemon.forwarder;
    assert.equal(b.daemon.adoption.flows, 1024);
    assert.equal(b.daemon.adoption.rejected.table_full, 76);
    assert.equal(fb.templates.refs[fb.templates.find(CLIENT, connPort(0, 0))], 1024, 'no reference left by a connection that was not adopted');
  } finally {
    await b.daemon.stop();
    b.daemon.releaseStateFile();
  }
});

test('a timeout lowered by a reload before the restart: the entries are adopted with their expiry brought down, not thrown away', async () => {
  const file = stateFile();
  const a = await testDaemon(BASE_CONFIG(), { stateFile: file });
  openFlows(a, 4); // ESTABLISHED ones expire 900 s from now
  const lowered = parseConfig(`${BASE_CONFIG()}\ntimeouts:\n  tcp: 60\n  tcpfin: 30\n  udp: 30\n`, 'test.yaml');
  await a.daemon.apply(lowered);
  await a.daemon.stop();
  a.daemon.releaseStateFile();
  const b = await testDaemon(`${BASE_CONFIG()}\ntimeouts:\n  tcp: 60\n  tcpfin: 30\n  udp: 30\n`, { stateFile: file });
  try {
    assert.equal(b.daemon.adoption.flows, 4);
    assert.equal(b.daemon.adoption.rejected.corrupt, 0);
    const fb = b.daemon.forwarder;
    const longest = Math.max(...fb.state.arrays.timeouts);
    assert.ok(longest < 900);
    assert.ok(fb.conns.expires[fb.conns.find(CLIENT, 50001)] <= fb.now + longest, `at most the longest timeout (${longest} s) away, not 900 s`);
  } finally {
    await b.daemon.stop();
    b.daemon.releaseStateFile();
  }
});

test('a template past its time that connections still hold is adopted and re-armed; one nobody holds is not', async () => {
  const file = stateFile();
  const a = await testDaemon(BASE_CONFIG({ persistence: '300' }), { stateFile: file });
  openFlows(a, 2);
  a.send(frame({ flags: SYN, sport: 40000, src: '10.0.10.60' }));
  a.send(frame({ flags: SYN | ACK, sport: 40000, src: '10.0.10.60' })); // keeps nothing: a SYN-ACK never opens a flow
  const now = a.daemon.forwarder.now;
  await a.daemon.stop();
  a.daemon.releaseStateFile();
  editFile(file, (v) => {
    for (let i = 0; i < v.tplDest.length; i++) {
      if (v.tplDest[i] === SLOT_EMPTY) continue;
      v.tplExpires[i] = now - 1;
      if (v.tplKeyAddr[i] === ipToInt('10.0.10.60')) {
        // Its one connection gone: nobody holds it.
        v.tplRefs[i] = 0;
        for (let j = 0; j < v.dest.length; j++) if (v.dest[j] !== SLOT_EMPTY && v.keyAddr[j] === ipToInt('10.0.10.60')) v.expires[j] = now - 1;
      }
    }
  });
  const b = await testDaemon(BASE_CONFIG({ persistence: '300' }), { stateFile: file });
  try {
    const fb = b.daemon.forwarder;
    assert.equal(b.daemon.adoption.templates, 1, 'the held one, the other expired');
    assert.equal(b.daemon.adoption.rejected.expired, 2, 'the unheld template and its expired connection');
    const t = fb.templates.find(CLIENT, connPort(0, 0));
    assert.ok(fb.templates.expires[t] >= fb.now + 299, 're-armed for another period');
  } finally {
    await b.daemon.stop();
    b.daemon.releaseStateFile();
  }
});

test("flows on a server that is now the service's sorry server go on to it (made at adoption, listed once)", async () => {
  const file = stateFile();
  const a = await testDaemon(BASE_CONFIG(), { stateFile: file });
  const macs = openFlows(a, 4);
  await a.daemon.stop();
  a.daemon.releaseStateFile();
  const cfg = `on_remove: drop
${WEB_SERVICE_HEAD}    sorry_server:
      address: 10.0.10.40
      mac: ${MAC.rs40}
    real_servers:
      - address: 10.0.10.111
        mac: ${MAC.rs111}
`;
  const b = await testDaemon(cfg, { stateFile: file });
  try {
    assert.equal(b.daemon.adoption.flows, 4, 'none taken for a removed server');
    for (let i = 0; i < 4; i++) assert.equal(dstMac(b.send(frame({ flags: ACK, sport: 50000 + i }))[0]), macs[i]);
    const svc = b.daemon.findService('10.0.10.100:80/tcp')!;
    assert.equal(svc.reals.filter((r) => r.addr === ipToInt('10.0.10.40')).length, 1, 'the sorry server once');
    assert.equal(svc.sorry?.addr, ipToInt('10.0.10.40'));
  } finally {
    await b.daemon.stop();
    b.daemon.releaseStateFile();
  }
});
