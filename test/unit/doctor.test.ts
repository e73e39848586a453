import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/config/load';
import { formatReport, runDoctor, type Finding, type HostView, type InterfaceInfo } from '../../src/doctor/checks';
import { parseCapEff, parseEthtoolFeatures } from '../../src/doctor/system';
import type { ArpAnswer, VipProbeResult } from '../../src/doctor/probe';
import { doctorMain } from '../../src/cli/doctor';

const ONE_NIC = `
interfaces:
  capture: eth0
services:
  - name: web
    vip: 10.0.10.100
    port: 80
    real_servers:
      - 10.0.10.40
      - 10.0.10.111
`;
const TWO_NIC = `
interfaces:
  capture: eth0
  egress: eth1
services:
  - name: web
    vip: 192.168.11.100
    port: 80
    real_servers:
      - 10.0.10.40
      - 10.0.10.111
`;

const ETHTOOL_OFF = `Features for eth0:
rx-checksumming: on
tx-checksumming: off
	tx-checksum-ipv4: off [fixed]
	tx-checksum-ip-generic: off
scatter-gather: on
tcp-segmentation-offload: off
generic-receive-offload: off
large-receive-offload: off [fixed]
`;

/** A healthy one-NIC balancer (the lab's), every piece overridable. */
class FakeHost implements HostView {
  caps: bigint | null = 0x3000n; // NET_ADMIN + NET_RAW
  ifaces: Record<string, InterfaceInfo> = {
    lo: { exists: true, up: true, operstate: 'unknown', addresses: ['127.0.0.1/8'] },
    eth0: { exists: true, up: true, operstate: 'up', addresses: ['10.0.10.30/24'], mac: '02:00:00:00:00:30' },
    eth1: { exists: true, up: true, operstate: 'up', addresses: ['10.0.10.30/24'], mac: '02:00:00:00:0e:01' },
  };
  sysctls: Record<string, string> = {
    'net.ipv4.ip_forward': '0',
    'net.ipv4.conf.all.rp_filter': '0',
    'net.ipv4.conf.eth0.rp_filter': '0',
    'net.ipv4.conf.eth1.rp_filter': '0',
  };
  features: Record<string, string> | null = parseEthtoolFeatures(ETHTOOL_OFF);
  guard: string | null = '';
  libpcap: string | null = '/usr/lib/x86_64-linux-gnu/libpcap.so.0.8';
  bindingError: string | null = null;
  running = false;
  /** ARP answers per interface and target. */
  arpAnswers: Record<string, Record<string, ArpAnswer[]>> = {
    eth0: {
      '10.0.10.40': [{ ip: '10.0.10.40', mac: '02:00:00:00:00:40' }],
      '10.0.10.111': [{ ip: '10.0.10.111', mac: '02:00:00:00:01:11' }],
    },
  };
  probes: Record<string, VipProbeResult> = {};
  arpCalls: { iface: string; targets: string[]; source: string }[] = [];
  probeCalls: { iface: string; mac: string; vip: string; port: number; source: string }[] = [];

  capEff() {
    return this.caps;
  }
  iface(name: string): InterfaceInfo {
    return this.ifaces[name] ?? { exists: false, up: false, operstate: 'absent', addresses: [] };
  }
  sysctl(key: string) {
    return this.sysctls[key] ?? null;
  }
  localAddresses() {
    return Object.entries(this.ifaces).flatMap(([iface, i]) => i.addresses.map((a) => ({ address: a.split('/')[0], iface })));
  }
  ethtoolFeatures() {
    return this.features;
  }
  nftGuardTable() {
    return this.guard;
  }
  libpcapLibrary() {
    return this.libpcap;
  }
  binding() {
    return this.bindingError === null ? { loaded: '/opt/lbd/prebuilds/linux-x64/lbd_native.node' } : { error: this.bindingError };
  }
  /** What /metrics says while `running` (lbd_build_info at least). */
  metricsText = 'lbd_build_info{version="0"} 1';
  async lbdMetrics() {
    return this.running ? this.metricsText : null;
  }
  async arp(iface: string, targets: string[], source: string) {
    this.arpCalls.push({ iface, targets, source });
    return new Map(targets.map((t) => [t, this.arpAnswers[iface]?.[t] ?? []]));
  }
  async probeVip(iface: string, mac: string, vip: string, port: number, source: string) {
    this.probeCalls.push({ iface, mac, vip, port, source });
    return this.probes[mac] ?? 'syn-ack';
  }
  // The state file (checked in doctor-state.test.ts): none yet, on a tmpfs with room.
  fileSystem() {
    return { tmpfs: true, freeBytes: 1 << 30, totalBytes: 1 << 30, type: 'tmpfs', mount: '/run' };
  }
  stateFile() {
    return null;
  }
  fileStat() {
    return null;
  }
  processAlive() {
    return false;
  }
}

const cfg = (yaml = ONE_NIC) => parseConfig(yaml, 'lb.yaml');
const bySeverity = (fs_: Finding[], s: string) => fs_.filter((f) => f.severity === s);
const find = (fs_: Finding[], check: string) => fs_.filter((f) => f.check === check || f.check.startsWith(`${check}:`));

test('a healthy one-NIC host: no warning, no error, exit status 0', async () => {
  const h = new FakeHost();
  const r = await runDoctor(cfg(), h);
  assert.deepEqual(bySeverity(r.findings, 'error'), [], formatReport(r));
  assert.deepEqual(bySeverity(r.findings, 'warn'), [], formatReport(r));
  assert.equal(r.ok, true);
  // Real servers resolved on the egress interface from its own address; the VIP asked for with a probe.
  assert.deepEqual(h.arpCalls[0], { iface: 'eth0', targets: ['10.0.10.40', '10.0.10.111'], source: '10.0.10.30' });
  assert.deepEqual(h.arpCalls[1], { iface: 'eth0', targets: ['10.0.10.100'], source: '0.0.0.0' });
  assert.deepEqual(
    h.probeCalls.map((p) => [p.mac, p.vip, p.port, p.source]),
    [
      ['02:00:00:00:00:40', '10.0.10.100', 80, '10.0.10.30'],
      ['02:00:00:00:01:11', '10.0.10.100', 80, '10.0.10.30'],
    ],
  );
  assert.match(formatReport(r), /0 warnings, 0 errors/);
});

test('a missing or down interface is an error with the fix', async () => {
  const h = new FakeHost();
  delete h.ifaces.eth0;
  let r = await runDoctor(cfg(), h);
  assert.equal(r.ok, false);
  assert.match(find(r.findings, 'interface.capture')[0].what, /eth0 does not exist/);
  assert.equal(find(r.findings, 'arp.vip')[0].severity, 'skip', 'no probes on a missing interface');

  const h2 = new FakeHost();
  h2.ifaces.eth0.up = false;
  r = await runDoctor(cfg(), h2);
  const f = find(r.findings, 'interface.capture')[0];
  assert.equal(f.severity, 'error');
  assert.equal(f.fix, 'ip link set eth0 up');

  const h3 = new FakeHost();
  h3.ifaces.eth0.operstate = 'lowerlayerdown';
  r = await runDoctor(cfg(), h3);
  assert.match(find(r.findings, 'interface.capture')[0].what, /no carrier/);
});

test('missing CAP_NET_RAW / CAP_NET_ADMIN: error, and no wire probes', async () => {
  const h = new FakeHost();
  h.caps = 0x1000n; // NET_ADMIN only
  const r = await runDoctor(cfg(), h);
  const f = find(r.findings, 'privileges')[0];
  assert.equal(f.severity, 'error');
  assert.match(f.what, /CAP_NET_RAW/);
  assert.doesNotMatch(f.what, /CAP_NET_ADMIN/);
  assert.equal(h.arpCalls.length, 0);
  assert.equal(r.ok, false);
});

test('offloads: tx checksum and GRO are fine (lbd forwards what they make), LRO a warning; drops of a running lbd explained', async () => {
  const h = new FakeHost();
  h.features = { ...h.features!, 'tx-checksumming': 'on', 'generic-receive-offload': 'on' };
  let r = await runDoctor(cfg(), h);
  assert.equal(find(r.findings, 'offload.tx')[0].severity, 'ok');
  assert.match(find(r.findings, 'offload.gro')[0].what, /GRO is on on eth0: merged super-frames are forwarded whole/);
  assert.equal(find(r.findings, 'offload.lro').length, 0);
  h.features = { ...h.features, 'large-receive-offload': 'on' };
  r = await runDoctor(cfg(), h);
  assert.equal(find(r.findings, 'offload.lro')[0].severity, 'warn');
  assert.equal(find(r.findings, 'offload.lro')[0].fix, 'ethtool -K eth0 lro off (GRO does the same job and keeps what is needed)');
  assert.equal(r.ok, true, 'warnings do not fail the run');

  h.running = true;
  h.metricsText = [
    'lbd_build_info{version="0"} 1',
    'lbd_dropped_packets_total{reason="truncated"} 3',
    'lbd_dropped_packets_total{reason="too_big"} 2',
    'lbd_dropped_packets_total{reason="gso_unsupported"} 0',
    'lbd_dropped_packets_total{reason="no_connection"} 9',
  ].join('\n');
  r = await runDoctor(cfg(), h);
  const drops = r.findings.filter((f) => f.check.startsWith('drops.'));
  assert.deepEqual(
    drops.map((f) => [f.check, f.severity]),
    [
      ['drops.truncated', 'warn'],
      ['drops.too_big', 'ok'],
    ],
  );
  assert.match(drops[0].what, /^3 frames dropped as truncated: frames arrived cut short/);
  assert.match(drops[1].what, /fragmentation needed/);

  h.features = null;
  const r2 = await runDoctor(cfg(), h);
  assert.equal(find(r2.findings, 'offload')[0].severity, 'skip');
});

test('two NICs: strict rp_filter on egress is an error, ip_forward=0 a warning', async () => {
  const h = new FakeHost();
  h.ifaces.eth0.addresses = ['192.168.11.30/24'];
  h.arpAnswers.eth1 = h.arpAnswers.eth0;
  h.arpAnswers.eth0 = {};
  h.sysctls['net.ipv4.conf.all.rp_filter'] = '1';
  let r = await runDoctor(cfg(TWO_NIC), h);
  const rp = find(r.findings, 'rp_filter')[0];
  assert.equal(rp.severity, 'error');
  assert.match(rp.fix!, /net\.ipv4\.conf\.eth1\.rp_filter=2/);
  assert.equal(find(r.findings, 'ip_forward')[0].severity, 'warn');
  assert.equal(h.arpCalls[0].iface, 'eth1', 'real servers are resolved on the egress interface');
  assert.equal(h.arpCalls[1].iface, 'eth0', 'the VIP is asked for on the capture interface');

  h.sysctls['net.ipv4.conf.all.rp_filter'] = '0';
  h.sysctls['net.ipv4.conf.eth1.rp_filter'] = '2';
  h.sysctls['net.ipv4.ip_forward'] = '1';
  r = await runDoctor(cfg(TWO_NIC), h);
  assert.deepEqual(bySeverity(r.findings, 'error'), [], formatReport(r));
  assert.deepEqual(bySeverity(r.findings, 'warn'), [], formatReport(r));
});

test('the nftables guard: missing while lbd runs with a local VIP is an error; still dropping when stopped a warning, lapsed ok', async () => {
  const yaml = ONE_NIC.replace('10.0.10.100', '10.0.10.30'); // a local VIP (the balancer's own address): only the guard keeps its kernel out
  const h = new FakeHost();
  h.running = true;
  h.guard = '';
  let r = await runDoctor(cfg(yaml), h);
  const g = find(r.findings, 'guard')[0];
  assert.equal(g.severity, 'error');
  assert.match(g.what, /kernel also handles VIP traffic/);

  const lapsed = 'table netdev lbd_eth0 {\n\tset services {\n\t\ttype ipv4_addr . inet_proto . inet_service\n\t\tflags timeout\n\t}\n}\n';
  h.guard = lapsed.replace('flags timeout', 'flags timeout\n\t\telements = { 10.0.10.30 . tcp . 80 timeout 15s expires 9s2ms }');
  r = await runDoctor(cfg(yaml), h);
  assert.equal(find(r.findings, 'guard')[0].severity, 'ok');
  assert.equal(find(r.findings, 'vip.local')[0].severity, 'ok');
  // The egress address is the VIP: no address to probe from.
  assert.ok(find(r.findings, 'realserver.vip').every((f) => f.severity === 'skip'));
  assert.equal(h.arpCalls[0].source, '0.0.0.0', 'real servers are asked with an ARP probe, never from the VIP');

  h.running = false;
  r = await runDoctor(cfg(yaml), h);
  assert.equal(find(r.findings, 'guard')[0].severity, 'warn');
  assert.equal(find(r.findings, 'guard')[0].fix, 'wait 15 s, or start lbd (it takes the table over), or nft delete table netdev lbd_eth0');
  h.guard = lapsed;
  r = await runDoctor(cfg(yaml), h);
  assert.equal(find(r.findings, 'guard')[0].severity, 'ok');
  assert.match(find(r.findings, 'guard')[0].what, /inert/);

  h.guard = null;
  r = await runDoctor(cfg(yaml), h);
  assert.match(find(r.findings, 'guard')[0].what, /nft not found/);
  assert.equal(r.ok, false);
});

test('a VIP on lo of the balancer with arp_ignore: nobody answers ARP for it', async () => {
  const h = new FakeHost();
  h.ifaces.lo.addresses.push('10.0.10.100/32');
  h.sysctls['net.ipv4.conf.all.arp_ignore'] = '1';
  const r = await runDoctor(cfg(), h);
  const f = find(r.findings, 'vip.local')[0];
  assert.equal(f.severity, 'error');
  assert.equal(f.fix, 'ip addr del 10.0.10.100/32 dev lo (lbd answers ARP for a VIP that is not local)');
});

test('a real server that does not answer ARP, or answers with another MAC than configured', async () => {
  const h = new FakeHost();
  delete h.arpAnswers.eth0['10.0.10.111'];
  let r = await runDoctor(cfg(), h);
  const f = find(r.findings, 'realserver.arp:10.0.10.111')[0];
  assert.equal(f.severity, 'error');
  assert.match(f.what, /does not answer ARP on eth0/);
  assert.equal(h.probeCalls.length, 1, 'no VIP probe without a MAC');

  const yaml = ONE_NIC.replace('      - 10.0.10.111', '      - address: 10.0.10.111\n        mac: 02:00:00:00:09:99');
  const h2 = new FakeHost();
  r = await runDoctor(cfg(yaml), h2);
  assert.match(find(r.findings, 'realserver.arp:10.0.10.111')[0].what, /config says mac: 02:00:00:00:09:99/);
  assert.equal(h2.probeCalls[1].mac, '02:00:00:00:09:99', 'the probe goes where lbd would send');
});

test('a real server answering ARP for the VIP, and a foreign host owning it', async () => {
  const h = new FakeHost();
  h.arpAnswers.eth0['10.0.10.100'] = [
    { ip: '10.0.10.100', mac: '02:00:00:00:00:40' },
    { ip: '10.0.10.100', mac: '02:00:00:00:09:99' },
  ];
  const r = await runDoctor(cfg(), h);
  const [rs, other] = find(r.findings, 'arp.vip');
  assert.equal(rs.severity, 'error');
  assert.match(rs.what, /real server 10\.0\.10\.40 .* answers ARP for VIP 10\.0\.10\.100/);
  assert.match(rs.fix!, /arp_ignore=1/);
  assert.match(other.what, /another host \(02:00:00:00:09:99\)/);
});

test('the VIP path probe: no answer = VIP not on lo (error + realserver-setup fix), RST = nothing listens', async () => {
  const h = new FakeHost();
  h.probes['02:00:00:00:00:40'] = 'timeout';
  h.probes['02:00:00:00:01:11'] = 'rst';
  const r = await runDoctor(cfg(), h);
  const [a, b] = find(r.findings, 'realserver.vip');
  assert.equal(a.check, 'realserver.vip:web:10.0.10.40');
  assert.equal(a.severity, 'error');
  assert.match(a.what, /does not accept traffic for VIP 10\.0\.10\.100/);
  assert.equal(a.fix, 'on 10.0.10.40: lbd realserver-setup --vip 10.0.10.100 --apply --persist (VIP on lo + arp_ignore=1/arp_announce=2)');
  assert.match(b.what, /nothing listens on port 80/);
  assert.equal(r.ok, false);
});

test('UDP services are not SYN-probed; --no-probes skips the wire', async () => {
  const h = new FakeHost();
  const udp = ONE_NIC.replace('port: 80', 'port: 53\n    protocol: udp');
  let r = await runDoctor(cfg(udp), h);
  assert.ok(find(r.findings, 'realserver.vip').every((f) => f.severity === 'skip'));
  const h2 = new FakeHost();
  r = await runDoctor(cfg(), h2, { noProbes: true });
  assert.equal(h2.arpCalls.length + h2.probeCalls.length, 0);
  assert.equal(r.ok, true);
});

test('no libpcap.so.0.8 (what the binding loads): error; no native binding: error, no probes', async () => {
  const h = new FakeHost();
  let r = await runDoctor(cfg(), h);
  assert.deepEqual(
    ['binding', 'libpcap'].map((c) => find(r.findings, c)[0].severity),
    ['ok', 'ok'],
  );
  h.libpcap = null;
  r = await runDoctor(cfg(), h);
  const lib = find(r.findings, 'libpcap')[0];
  assert.equal(lib.severity, 'error');
  assert.match(lib.what, /libpcap\.so\.0\.8/);
  assert.equal(lib.fix, 'apt-get install libpcap0.8');
  assert.equal(r.ok, false);
  const h2 = new FakeHost();
  h2.bindingError = 'no native binding loads (lbd captures and sends through it); tried: local build /x: not built';
  r = await runDoctor(cfg(), h2);
  const b = find(r.findings, 'binding')[0];
  assert.equal(b.severity, 'error');
  assert.match(b.fix ?? '', /npm run build:native/);
  assert.equal(r.ok, false);
  assert.equal(h2.arpCalls.length + h2.probeCalls.length, 0, 'no wire probes without a binding to capture with');
});

test('parsers: ethtool -k and CapEff', () => {
  const f = parseEthtoolFeatures(ETHTOOL_OFF);
  assert.equal(f['tx-checksumming'], 'off');
  assert.equal(f['large-receive-offload'], 'off [fixed]');
  assert.equal(f['tx-checksum-ipv4'], 'off [fixed]');
  assert.equal(parseCapEff('Name:\tnode\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n'), 0x1ffffffffffn);
  assert.equal(parseCapEff('nothing'), null);
});

test('the CLI: text and --json, exit 1 on an error, 2 on a usage error', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-doctor-'));
  const file = path.join(dir, 'lb.yaml');
  fs.writeFileSync(file, ONE_NIC);
  const out: string[] = [];
  const io = { out: (s: string) => void out.push(s), err: (s: string) => void out.push(s), stdin: async () => '' };
  try {
    assert.equal(await doctorMain(['--config', file], io, new FakeHost()), 0);
    assert.match(out.join(''), /^lbd doctor: .*lb\.yaml\n {2}ok {5}/);
    out.length = 0;
    const bad = new FakeHost();
    bad.features = { 'large-receive-offload': 'on' };
    bad.probes['02:00:00:00:00:40'] = 'timeout';
    assert.equal(await doctorMain(['--config', file, '--json'], io, bad), 1);
    const report = JSON.parse(out.join(''));
    assert.equal(report.ok, false);
    assert.ok(report.findings.some((f: Finding) => f.check === 'offload.lro' && f.severity === 'warn'));
    assert.ok(report.findings.some((f: Finding) => f.check === 'realserver.vip:web:10.0.10.40' && f.severity === 'error'));
    assert.equal(await doctorMain(['--bogus'], io, new FakeHost()), 2);
    assert.equal(await doctorMain([], io, new FakeHost()), 2);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
