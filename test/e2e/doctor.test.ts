import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { createLab, Lab, type Command } from '../../lab/lab';
import { lbdConfig as baseConfig, startLbd } from '../helpers/lbd-process';
import type { DoctorReport, Finding } from '../../src/doctor/checks';

const LBD_BIN = path.resolve(__dirname, '../../../bin/lbd');

// Our own admin socket and state file: /run/lbd is shared by every namespace (and every test
// file running). The state file on a tmpfs, as lbd's default /run is on a Debian host (on a
// machine whose /run is on disk, doctor rightly warns): /dev/shm, removed after the file.
const stateFile = (l: Lab) => `/dev/shm/lbd-${l.prefix}.state`;
const lbdConfig = (l: Lab, o: Parameters<typeof baseConfig>[1] = {}) =>
  `${baseConfig(l, o)}\nadmin:\n  socket: ${path.join(l.dir, 'lbd.sock')}\nstate_file: ${stateFile(l)}\n`;

// One lab for this file, offloads at their defaults (GRO on on the balancer's capture interface).
let lab: Lab;
let configFile: string;
before(() => {
  lab = createLab({ shape: 'one-nic' });
  configFile = path.join(lab.dir, 'doctor.yaml');
  writeFileSync(configFile, lbdConfig(lab));
});
after(() => {
  if (lab) for (const suffix of ['', '.new', '.lock', '.rejected']) rmSync(`${stateFile(lab)}${suffix}`, { force: true });
  lab?.teardown();
});

function doctor(): { status: number | null; report: DoctorReport; text: string } {
  const r = lab.tryExec(lab.ns.balancer, ['node', LBD_BIN, 'doctor', '--config', configFile, '--json'], { timeoutMs: 30000 });
  let report: DoctorReport;
  try {
    report = JSON.parse(r.stdout);
  } catch {
    throw new Error(`doctor printed no JSON (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
  return { status: r.status, report, text: JSON.stringify(report.findings, null, 1) };
}
const problems = (r: DoctorReport) => r.findings.filter((f) => f.severity === 'error' || f.severity === 'warn');
const finding = (r: DoctorReport, check: string): Finding | undefined => r.findings.find((f) => f.check === check);

const rsExec = (i: number, cmd: Command) => lab.exec(lab.ns.rs[i], cmd);
const sysctl = (i: number, key: string) => rsExec(i, ['sysctl', '-n', key]).trim();
const curlVip = (maxTime = 2) => lab.tryExec(lab.ns.client, ['curl', '-sS', '--max-time', String(maxTime), `http://${lab.addr.vip}/`]);

/** Takes real server 0 back to a fresh host: no VIP on lo, ARP sysctls at the kernel defaults. */
function freshRealServer0(): void {
  lab.tryExec(lab.ns.rs[0], ['ip', 'addr', 'del', `${lab.addr.vip}/32`, 'dev', 'lo']);
  rsExec(0, ['sysctl', '-q', '-w', ...['all', 'lo', 'eth0'].flatMap((d) => [`net.ipv4.conf.${d}.arp_ignore=0`, `net.ipv4.conf.${d}.arp_announce=0`])]);
}
/** The lab's own setup of real server 0, whatever a test did. */
function restoreRealServer0(): void {
  lab.tryExec(lab.ns.rs[0], ['iptables', '-t', 'nat', '-D', 'PREROUTING', '-d', `${lab.addr.vip}/32`, '-j', 'REDIRECT']);
  lab.tryExec(lab.ns.rs[0], ['ip', 'addr', 'add', `${lab.addr.vip}/32`, 'dev', 'lo']);
  rsExec(0, ['sysctl', '-q', '-w', ...['all', 'lo', 'eth0'].flatMap((d) => [`net.ipv4.conf.${d}.arp_ignore=1`, `net.ipv4.conf.${d}.arp_announce=2`])]);
}

test('a healthy lab passes, before lbd starts and while it runs', async () => {
  const before_ = doctor();
  assert.equal(before_.status, 0, before_.text);
  assert.deepEqual(problems(before_.report), [], before_.text);
  assert.equal(before_.report.lbdRunning, false);
  assert.equal(finding(before_.report, `realserver.vip:web:${lab.addr.rs[0]}`)?.severity, 'ok', before_.text);
  assert.equal(finding(before_.report, `realserver.vip:web:${lab.addr.rs[1]}`)?.severity, 'ok', before_.text);
  assert.match(finding(before_.report, `realserver.arp:${lab.addr.rs[1]}`)!.what, new RegExp(lab.macs.rs[1]));
  // Doctor used to warn about GRO and tx checksum offload, which real hosts have on: lbd now forwards what they make.
  assert.match(finding(before_.report, 'offload.gro')!.what, /GRO is on on eth0: merged super-frames are forwarded whole/, before_.text);

  const lbd = await startLbd(lab, lbdConfig(lab));
  try {
    const during = doctor();
    assert.equal(during.status, 0, during.text);
    assert.deepEqual(problems(during.report), [], during.text);
    assert.equal(during.report.lbdRunning, true);
    assert.match(finding(during.report, 'guard')!.what, /installed with an element for every service/);
    // The probes did not disturb lbd: nothing it saw was dropped for lack of a connection.
    assert.equal(lbd.metric('lbd_dropped_packets_total', { reason: 'no_connection' }), 0);
  } finally {
    await lbd.stop();
  }
});

test('a real server without the VIP on lo: error with the realserver-setup fix, exit 1', () => {
  rsExec(0, ['ip', 'addr', 'del', `${lab.addr.vip}/32`, 'dev', 'lo']);
  try {
    const { status, report, text } = doctor();
    assert.equal(status, 1, text);
    const f = finding(report, `realserver.vip:web:${lab.addr.rs[0]}`);
    assert.equal(f?.severity, 'error', text);
    assert.match(f!.what, /does not accept traffic for VIP/);
    assert.match(f!.fix!, new RegExp(`lbd realserver-setup --vip ${lab.addr.vip.replace(/\./g, '\\.')} --apply`));
    assert.equal(finding(report, `realserver.vip:web:${lab.addr.rs[1]}`)?.severity, 'ok', 'the other server is fine');
  } finally {
    restoreRealServer0();
  }
  assert.equal(doctor().status, 0);
});

test('a real server answering ARP for the VIP (arp_ignore=0): error naming it', () => {
  rsExec(0, ['sysctl', '-q', '-w', 'net.ipv4.conf.all.arp_ignore=0', 'net.ipv4.conf.lo.arp_ignore=0', 'net.ipv4.conf.eth0.arp_ignore=0']);
  try {
    const { status, report, text } = doctor();
    assert.equal(status, 1, text);
    const f = report.findings.find((x) => x.check === `arp.vip:${lab.addr.vip}` && x.severity === 'error');
    assert.ok(f, text);
    assert.match(f!.what, new RegExp(`real server ${lab.addr.rs[0].replace(/\./g, '\\.')} \\(${lab.macs.rs[0]}\\) answers ARP`));
  } finally {
    restoreRealServer0();
  }
});

test("the text report names each finding and its fix: a crashed lbd's guard, still leased, is a warning saying when it lapses", async () => {
  const lbd = await startLbd(lab, lbdConfig(lab));
  lbd.proc.kill('SIGKILL');
  await lbd.stop();
  const guard = `lbd_${lab.ifaces.balancerCapture}`;
  try {
    const r = lab.tryExec(lab.ns.balancer, ['node', LBD_BIN, 'doctor', '--config', configFile], { timeoutMs: 30000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      new RegExp(`^ {2}WARN {3}the nftables guard "netdev ${guard}" still drops ${lab.addr.vip.replace(/\./g, '\\.')}:80/tcp but no lbd answers`, 'm'),
    );
    assert.match(r.stdout, new RegExp(`^ {9}fix: wait 15 s, or start lbd \\(it takes the table over\\), or nft delete table netdev ${guard}`, 'm'));
    assert.match(r.stdout, /\d+ ok, 1 warning, 0 errors/);
  } finally {
    lab.tryExec(lab.ns.balancer, ['nft', 'delete', 'table', 'netdev', guard]);
  }
});

test('realserver-setup --apply on a fresh real server makes DSR work through lbd; --undo removes it', async () => {
  freshRealServer0();
  const lbd = await startLbd(lab, lbdConfig(lab, { scheduler: 'rr' }));
  try {
    // rr: one of two connections goes to the fresh server, which drops frames for the VIP.
    const before_ = [curlVip(), curlVip()];
    assert.ok(
      before_.some((r) => r.status !== 0),
      `a fresh real server cannot serve the VIP: ${JSON.stringify(before_)}`,
    );

    const printed = lab.exec(lab.ns.rs[0], ['node', LBD_BIN, 'realserver-setup', '--vip', lab.addr.vip]);
    assert.match(printed, new RegExp(`^ip addr add ${lab.addr.vip.replace(/\./g, '\\.')}/32 dev lo$`, 'm'));
    assert.doesNotMatch(
      lab.exec(lab.ns.rs[0], ['ip', '-4', 'addr', 'show', 'dev', 'lo']),
      new RegExp(lab.addr.vip.replace(/\./g, '\\.')),
      'printing changes nothing',
    );

    const applied = lab.exec(lab.ns.rs[0], ['node', LBD_BIN, 'realserver-setup', '--vip', lab.addr.vip, '--apply']);
    assert.match(applied, /applied \(lo\)/);
    assert.match(lab.exec(lab.ns.rs[0], ['ip', '-4', 'addr', 'show', 'dev', 'lo']), new RegExp(`${lab.addr.vip.replace(/\./g, '\\.')}/32`));
    assert.equal(sysctl(0, 'net.ipv4.conf.all.arp_ignore'), '1');
    assert.equal(sysctl(0, 'net.ipv4.conf.all.arp_announce'), '2');
    // Applying twice is harmless.
    assert.match(lab.exec(lab.ns.rs[0], ['node', LBD_BIN, 'realserver-setup', '--vip', lab.addr.vip, '--apply']), /already on lo/);

    const bodies: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = curlVip(5);
      assert.equal(r.status, 0, r.stderr);
      bodies.push(r.stdout.trim());
    }
    assert.deepEqual(new Set(bodies), new Set(lab.names), bodies.join(' '));
    const d = doctor();
    assert.equal(d.status, 0, d.text);

    lab.exec(lab.ns.rs[0], ['node', LBD_BIN, 'realserver-setup', '--vip', lab.addr.vip, '--undo', '--apply']);
    assert.doesNotMatch(lab.exec(lab.ns.rs[0], ['ip', '-4', 'addr', 'show', 'dev', 'lo']), new RegExp(lab.addr.vip.replace(/\./g, '\\.')));
    assert.equal(sysctl(0, 'net.ipv4.conf.all.arp_ignore'), '0');
    assert.equal(sysctl(0, 'net.ipv4.conf.all.arp_announce'), '0');
    const after_ = doctor();
    assert.equal(after_.status, 1);
    assert.equal(finding(after_.report, `realserver.vip:web:${lab.addr.rs[0]}`)?.severity, 'error');
  } finally {
    await lbd.stop();
    restoreRealServer0();
  }
});

test("realserver-setup --method redirect: the seed's iptables REDIRECT variant works too", async () => {
  assert.ok(hasIptablesBinary(), 'iptables is installed by scripts/setup.sh');
  freshRealServer0();
  const lbd = await startLbd(lab, lbdConfig(lab, { scheduler: 'rr' }));
  try {
    lab.exec(lab.ns.rs[0], ['node', LBD_BIN, 'realserver-setup', '--vip', lab.addr.vip, '--method', 'redirect', '--apply']);
    assert.match(lab.exec(lab.ns.rs[0], ['iptables', '-t', 'nat', '-S', 'PREROUTING']), new RegExp(`-d ${lab.addr.vip.replace(/\./g, '\\.')}/32 -j REDIRECT`));
    const bodies: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = curlVip(5);
      assert.equal(r.status, 0, r.stderr);
      bodies.push(r.stdout.trim());
    }
    assert.deepEqual(new Set(bodies), new Set(lab.names), bodies.join(' '));
    const d = doctor();
    assert.equal(finding(d.report, `realserver.vip:web:${lab.addr.rs[0]}`)?.severity, 'ok', d.text);
    lab.exec(lab.ns.rs[0], ['node', LBD_BIN, 'realserver-setup', '--vip', lab.addr.vip, '--method', 'redirect', '--undo', '--apply']);
    assert.doesNotMatch(lab.exec(lab.ns.rs[0], ['iptables', '-t', 'nat', '-S', 'PREROUTING']), /REDIRECT/);
  } finally {
    await lbd.stop();
    restoreRealServer0();
  }
});
function hasIptablesBinary(): boolean {
  return ['/usr/sbin/iptables', '/sbin/iptables'].some((p) => existsSync(p));
}
