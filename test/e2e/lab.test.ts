/**
 * End-to-end tests of the network-namespace lab itself (needs root). Every test builds its own
 * lab with a fresh prefix and tears it down in `finally`; after each, no namespace with that
 * prefix and no process the lab started may be left.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createLab, groupMembers, isLive, listNamespaces, procStat, run, withLab, type Lab } from '../../lab/lab';
import { cleanupPrefix } from '../../lab/cleanup';
import { spawnProgram, type ChildProcess } from '../../src/host/programs';

const LAB_JS = path.join(__dirname, '..', '..', 'lab', 'lab.js');
const UDP_ECHO_JS = path.join(__dirname, '..', '..', 'lab', 'udp-echo.js');
const HELD_DOWNLOAD_JS = path.join(__dirname, '..', '..', 'lab', 'held-download.js');

function rootLinks(): string[] {
  return (JSON.parse(run('ip', ['-j', 'link', 'show']).stdout) as { ifname: string }[]).map((l) => l.ifname).sort();
}

function nsOf(prefix: string): string[] {
  return listNamespaces().filter((n) => n.startsWith(`${prefix}-`));
}

/** leaders the lab started, with start times, so we can check after teardown that they are gone */
function processesOf(lab: Lab): { pid: number; start: number }[] {
  const d = lab.describe();
  return [...d.pids.apache, ...d.pids.udpEcho].filter((p): p is number => p !== null).map((pid) => ({ pid, start: procStat(pid)!.start }));
}

function assertGone(prefix: string, dir: string, procs: { pid: number; start: number }[]): void {
  assert.deepEqual(nsOf(prefix), [], 'namespaces left');
  assert.equal(fs.existsSync(dir), false, `${dir} left`);
  for (const p of procs) {
    assert.equal(isLive(p.pid, p.start), false, `process ${p.pid} still alive`);
    assert.deepEqual(groupMembers(p.pid, p.start), [], `process group ${p.pid} still has members`);
  }
}

function curl(lab: Lab, url: string, extra: string[] = []): { status: number | null; body: string } {
  const r = lab.tryExec(lab.ns.client, ['curl', '-s', '--max-time', '2', ...extra, url]);
  return { status: r.status, body: r.stdout };
}

function udpFromRs(lab: Lab, i: number, message: string): string {
  return lab.exec(lab.ns.rs[i], ['node', UDP_ECHO_JS, 'send', '--host', lab.addr.vip, '--port', String(lab.ports.udp), '--message', message]);
}

/** the checks both shapes share */
function commonChecks(lab: Lab): void {
  // every namespace exists and carries the prefix
  const all = [lab.ns.bridge, lab.ns.client, lab.ns.balancer, ...lab.ns.rs];
  assert.deepEqual(nsOf(lab.prefix).sort(), [...all].sort());
  for (const n of all) assert.ok(n.startsWith(`${lab.prefix}-`));

  // the client reaches each real server's own address and gets its name
  assert.deepEqual(
    lab.addr.rs.map((a) => curl(lab, `http://${a}/`).body),
    ['server40\n', 'server111\n'],
  );
  // keep-alive on, and the big file is there
  const big = lab.exec(lab.ns.client, [
    'curl',
    '-s',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code} %{size_download} %{num_connects}\n',
    `http://${lab.addr.rs[0]}/big.bin`,
    '-o',
    '/dev/null',
    `http://${lab.addr.rs[0]}/`,
  ]);
  assert.deepEqual(big.trim().split('\n'), ['200 20971520 1', '200 9 0'], 'second request reuses the connection');

  // MACs: read back, the readable fixed scheme
  assert.equal(lab.macs.rs[0], '02:00:00:00:00:40');
  assert.equal(lab.macs.rs[1], '02:00:00:00:01:11');
  assert.equal(lab.macs.balancerEgress, '02:00:00:00:00:30');

  // offloads at the kernel's defaults on the client (tx checksum offload and TSO on, like a real
  // sender), GRO turned on on the balancer's capture interface (like a real NIC)
  const k = lab.exec(lab.ns.client, ['ethtool', '-k', 'eth0']);
  assert.match(k, /^tx-checksumming: on/m);
  assert.match(k, /^\s*tx-tcp-segmentation: on/m);
  assert.match(lab.exec(lab.ns.balancer, ['ethtool', '-k', lab.ifaces.balancerCapture]), /^generic-receive-offload: on/m);

  // real servers: VIP on lo, ARP suppressed
  for (const ns of lab.ns.rs) {
    assert.match(lab.exec(ns, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'lo']), new RegExp(` ${lab.addr.vip.replace(/\./g, '\\.')}/32 `));
    const s = lab.exec(ns, [
      'sysctl',
      '-n',
      'net.ipv4.conf.all.arp_ignore',
      'net.ipv4.conf.all.arp_announce',
      'net.ipv4.conf.eth0.arp_ignore',
      'net.ipv4.conf.eth0.arp_announce',
    ]);
    assert.deepEqual(s.trim().split('\n'), ['1', '2', '1', '2']);
  }
  // the balancer has no VIP, and nobody has a static ARP entry
  assert.doesNotMatch(lab.exec(lab.ns.balancer, ['ip', '-4', '-o', 'addr']), new RegExp(lab.addr.vip.replace(/\./g, '\\.')));
  for (const ns of [lab.ns.client, lab.ns.balancer, ...lab.ns.rs]) {
    assert.equal(lab.exec(ns, ['ip', 'neigh', 'show', 'nud', 'permanent']).trim(), '', `static ARP in ${ns}`);
  }

  // UDP echo: bound to the VIP (not 0.0.0.0), replies "<name>:" + payload with source VIP
  for (let i = 0; i < lab.ns.rs.length; i++) {
    assert.equal(udpFromRs(lab, i, 'hello'), `${lab.names[i]}:hello\t${lab.addr.vip}:${lab.ports.udp}\n`);
    const ss = lab.exec(lab.ns.rs[i], ['ss', '-Hnul']);
    assert.match(ss, new RegExp(`${lab.addr.vip.replace(/\./g, '\\.')}:${lab.ports.udp}\\b`));
    assert.doesNotMatch(ss, new RegExp(`0\\.0\\.0\\.0:${lab.ports.udp}\\b`));
  }

  // the VIP is NOT reachable from the client: nobody answers ARP for it (the daemon will)
  const vip = curl(lab, `http://${lab.addr.vip}/`);
  assert.notEqual(vip.status, 0, 'VIP answered without a balancer');
  const neigh = lab.exec(lab.ns.client, ['ip', 'neigh', 'show', lab.addr.vip]);
  assert.doesNotMatch(neigh, /lladdr/, `someone answered ARP for the VIP: ${neigh}`);
}

function apacheStopStart(lab: Lab): void {
  const url0 = `http://${lab.addr.rs[0]}/`;
  const url1 = `http://${lab.addr.rs[1]}/`;
  for (let round = 0; round < 2; round++) {
    const pid = lab.apachePid(0)!;
    assert.ok(pid > 1);
    const start = procStat(pid)!.start;
    lab.stopApache(0);
    assert.equal(lab.apachePid(0), null);
    assert.deepEqual(groupMembers(pid, start), [], 'Apache workers left');
    assert.equal(curl(lab, url0).status, 7, 'connection refused while stopped');
    assert.equal(curl(lab, url1).body, 'server111\n', 'the other real server is unaffected');
    lab.stopApache(0); // idempotent
    lab.startApache(0);
    assert.notEqual(lab.apachePid(0), pid);
    assert.equal(curl(lab, url0).body, 'server40\n');
  }
}

test('one-nic lab: topology, Apache, UDP echo, no ARP for the VIP, stop/start, teardown', () => {
  const before = rootLinks();
  const lab = createLab({ shape: 'one-nic' });
  const procs = processesOf(lab);
  try {
    assert.match(lab.prefix, /^lbd[0-9a-f]{6}$/);
    assert.deepEqual(lab.addr, {
      client: '10.0.10.50',
      balancer: '10.0.10.30',
      balancerEgress: '10.0.10.30',
      rs: ['10.0.10.40', '10.0.10.111'],
      vip: '10.0.10.100',
      clientGateway: null,
    });
    assert.deepEqual(lab.ifaces, { client: 'eth0', balancerCapture: 'eth0', balancerEgress: 'eth0', rs: 'eth0' });
    assert.equal(lab.macs.client, '02:00:00:00:00:50');
    assert.equal(lab.macs.balancerCapture, '02:00:00:00:00:30');
    assert.deepEqual(rootLinks(), before, 'nothing may appear in the root namespace');
    assert.equal(lab.exec(lab.ns.balancer, ['sysctl', '-n', 'net.ipv4.ip_forward']).trim(), '0');

    commonChecks(lab);
    apacheStopStart(lab);

    // a held download keeps its connection open (drain tests need one), and spawn()/kill() handle it
    const dl = lab.spawn(lab.ns.client, ['node', HELD_DOWNLOAD_JS, '--host', lab.addr.rs[1], '--path', '/big.bin', '--max-ms', '20000']);
    const dlStart = procStat(dl.pid!)!.start;
    // Connected once node has started (~0.1-1 s): ESTABLISHED, and still so a second later.
    const established = () => /:80\b/.test(lab.exec(lab.ns.client, ['ss', '-Htn', 'state', 'established', 'dst', lab.addr.rs[1]]));
    const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
    for (const t0 = Date.now(); !established(); pause(100)) assert.ok(Date.now() - t0 < 10_000, 'the held download connected within 10 s');
    pause(1000);
    assert.ok(isLive(dl.pid!, dlStart), 'held download still running after 1 s');
    assert.ok(established(), 'and its connection still open');
    lab.kill(dl);
    assert.equal(isLive(dl.pid!, dlStart), false);
    procs.push({ pid: lab.apachePid(0)!, start: procStat(lab.apachePid(0)!)!.start });
  } finally {
    lab.teardown();
  }
  assertGone(lab.prefix, lab.dir, procs);
  assert.deepEqual(rootLinks(), before);
  lab.teardown(); // idempotent
  assert.throws(() => lab.exec(lab.ns.client, ['true']), /torn down/);
});

test('two-nic lab: client reaches the real servers through the balancer, VIP unreachable, teardown', () => {
  const lab = createLab({ shape: 'two-nic' });
  const procs = processesOf(lab);
  try {
    assert.deepEqual(lab.addr, {
      client: '192.168.11.50',
      balancer: '192.168.11.30',
      balancerEgress: '10.0.10.30',
      rs: ['10.0.10.40', '10.0.10.111'],
      vip: '192.168.11.100',
      clientGateway: '192.168.11.30',
    });
    assert.deepEqual(lab.ifaces, { client: 'eth0', balancerCapture: 'eth0', balancerEgress: 'eth1', rs: 'eth0' });
    assert.equal(lab.macs.client, '02:00:00:01:00:50');
    assert.equal(lab.macs.balancerCapture, '02:00:00:01:00:30');

    const s = lab.exec(lab.ns.balancer, [
      'sysctl',
      '-n',
      'net.ipv4.ip_forward',
      'net.ipv4.conf.all.rp_filter',
      'net.ipv4.conf.eth0.rp_filter',
      'net.ipv4.conf.eth1.rp_filter',
    ]);
    assert.deepEqual(s.trim().split('\n'), ['1', '0', '0', '0']);
    assert.match(lab.exec(lab.ns.client, ['ip', 'route', 'show', 'default']), /via 192\.168\.11\.30 dev eth0/);
    for (const ns of lab.ns.rs) assert.match(lab.exec(ns, ['ip', 'route', 'show', 'default']), /via 10\.0\.10\.30 dev eth0/);
    // the client's path to a real server crosses the balancer (TTL decremented once)
    const ping = lab.exec(lab.ns.client, ['ping', '-c', '1', '-W', '1', lab.addr.rs[0]]);
    assert.match(ping, /ttl=63/);

    commonChecks(lab);
    apacheStopStart(lab);
    procs.push({ pid: lab.apachePid(0)!, start: procStat(lab.apachePid(0)!)!.start });
  } finally {
    lab.teardown();
  }
  assertGone(lab.prefix, lab.dir, procs);
});

test('withLab tears down when the body throws; two labs side by side do not collide', async () => {
  let seen: { prefix: string; dir: string; procs: { pid: number; start: number }[] }[] = [];
  await assert.rejects(
    withLab({ udpEcho: false, bigFileMB: 1 }, async (a) => {
      seen.push({ prefix: a.prefix, dir: a.dir, procs: processesOf(a) });
      await withLab({ udpEcho: false, bigFileMB: 1 }, (b) => {
        seen.push({ prefix: b.prefix, dir: b.dir, procs: processesOf(b) });
        assert.notEqual(a.prefix, b.prefix);
        assert.equal(curl(a, 'http://10.0.10.40/').body, 'server40\n');
        assert.equal(curl(b, 'http://10.0.10.40/').body, 'server40\n');
        throw new Error('boom');
      });
    }),
    /boom/,
  );
  assert.equal(seen.length, 2);
  for (const s of seen) assertGone(s.prefix, s.dir, s.procs);
  seen = [];
});

/** a separate node process that builds a lab, prints its description, then idles */
function labInChild(): Promise<{ child: ChildProcess; desc: ReturnType<Lab['describe']> }> {
  const code = `const l = require(${JSON.stringify(LAB_JS)}).createLab({ bigFileMB: 1 });
process.stdout.write(JSON.stringify(l.describe()) + '\\n'); setInterval(() => {}, 1000);`;
  const child = spawnProgram('node', ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve({ child, desc: JSON.parse(buf.slice(0, nl)) });
    });
    child.on('exit', (c, s) => reject(new Error(`lab child exited early (${c ?? s})`)));
  });
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.on('exit', (code, signal) => resolve({ code, signal }));
  });
}

test('SIGTERM to a process holding a lab tears the lab down', async () => {
  const { child, desc } = await labInChild();
  const procs = [...desc.pids.apache, ...desc.pids.udpEcho].map((pid) => ({ pid: pid!, start: procStat(pid!)!.start }));
  assert.equal(nsOf(desc.prefix).length, 5);
  child.kill('SIGTERM');
  const ex = await exitOf(child);
  assert.equal(ex.signal, 'SIGTERM', 'the process still dies of the signal');
  assertGone(desc.prefix, desc.dir, procs);
});

test('cleanup removes the leftovers of a lab whose process was SIGKILLed', async () => {
  const { child, desc } = await labInChild();
  const procs = [...desc.pids.apache, ...desc.pids.udpEcho].map((pid) => ({ pid: pid!, start: procStat(pid!)!.start }));
  try {
    child.kill('SIGKILL');
    await exitOf(child);
    assert.equal(nsOf(desc.prefix).length, 5, 'SIGKILL leaves the lab behind');
    assert.ok(
      procs.every((p) => isLive(p.pid, p.start)),
      'and its servers',
    );
  } finally {
    const r = cleanupPrefix(desc.prefix);
    assert.deepEqual(r.problems, []);
    assert.equal(r.namespaces.length, 5);
  }
  assertGone(desc.prefix, desc.dir, procs);
  assert.deepEqual(cleanupPrefix(desc.prefix).namespaces, [], 'cleanup is idempotent');
});
