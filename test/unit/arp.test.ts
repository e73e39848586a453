import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WEB_SERVICE_HEAD } from '../helpers/daemon';
import pino from 'pino';
import { parseConfig } from '../../src/config/load';
import { ARP_RESULTS } from '../../src/control/arp-agent';
import { Daemon } from '../../src/control/daemon';
import { ARP_REPLY, ARP_REQUEST, ARP_SHA, ARP_SPA, arpReply, arpRequest, buildArp, gratuitousArp, parseArp } from '../../src/dataplane/arp';
import { MemoryPort } from '../../src/dataplane/io';
import { intToIp, ipToInt, macFromString, macToString } from '../../src/dataplane/packet';
import type { CheckResult } from '../../src/health/types';
import { MAC } from '../helpers/frames';
import { FakeClock } from '../helpers/fake-clock';

const RS40 = '10.0.10.40';
const RS111 = '10.0.10.111';
const NEW_MAC = '02:00:00:00:77:11';
const mac = (s: string) => macFromString(s);

// ---- parseArp ------------------------------------------------------------------------------

test('parseArp: requests and replies parse; other opcodes, types, lengths and sender MACs no station has are invalid', () => {
  const ok = gratuitousArp(mac(MAC.rs111), ipToInt(RS111));
  const a = parseArp(ok, ok.length)!;
  assert.equal(a.op, ARP_REQUEST);
  assert.equal(intToIp(a.senderIp), RS111);
  assert.equal(macToString(a.senderMac), MAC.rs111);
  assert.equal(parseArp(arpReply(mac(MAC.rs111), ipToInt(RS111), mac(MAC.balancer), 0), 60)!.op, ARP_REPLY);

  const mutated = (f: (b: Buffer) => void) => {
    const b = Buffer.from(ok);
    f(b);
    return parseArp(b, b.length);
  };
  // opcodes: 0, RARP 3/4, InARP 8/9, anything else
  for (const op of [0, 3, 4, 8, 9, 0x0101, 0xffff])
    assert.equal(
      mutated((b) => b.writeUInt16BE(op, 20)),
      null,
      `opcode ${op}`,
    );
  assert.equal(
    mutated((b) => b.writeUInt16BE(0x0800, 12)),
    null,
    'EtherType not ARP',
  );
  assert.equal(
    mutated((b) => b.writeUInt16BE(6, 14)),
    null,
    'htype not Ethernet',
  );
  assert.equal(
    mutated((b) => b.writeUInt16BE(0x86dd, 16)),
    null,
    'ptype not IPv4',
  );
  assert.equal(
    mutated((b) => (b[18] = 8)),
    null,
    'hlen not 6',
  );
  assert.equal(
    mutated((b) => (b[19] = 16)),
    null,
    'plen not 4',
  );
  for (const bad of ['00:00:00:00:00:00', 'ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01', '33:33:00:00:00:01', '03:00:00:00:00:11'])
    assert.equal(
      mutated((b) => mac(bad).copy(b, ARP_SHA)),
      null,
      `sender MAC ${bad}`,
    );
  assert.equal(parseArp(ok, 41), null, 'truncated');
  assert.equal(parseArp(Buffer.alloc(10), 60), null, 'buffer shorter than its length');
});

// ---- the agent, in a whole daemon on one in-memory port ---------------------------------------

/** A port on which the real servers answer ARP requests for their address (from `macs`), as on a wire. */
class Wire extends MemoryPort {
  readonly macs = new Map<string, string>([
    [RS40, MAC.rs40],
    [RS111, MAC.rs111],
  ]);
  override send(buf: Buffer, len: number): boolean {
    const ok = super.send(buf, len);
    const a = parseArp(buf, len);
    const m = a && a.op === ARP_REQUEST ? this.macs.get(intToIp(a.targetIp)) : undefined;
    if (m) queueMicrotask(() => this.inject(arpReply(mac(m), a!.targetIp, a!.senderMac, a!.senderIp)));
    return ok;
  }
}

const CONFIG = (
  healthCheck: boolean,
) => `${WEB_SERVICE_HEAD}${healthCheck ? '    health_check:\n      type: tcp\n      interval: 1s\n      timeout: 500ms\n      rise: 2\n      fall: 3\n' : ''}    real_servers:
      - address: ${RS40}
      - address: ${RS111}
  - name: static
    vip: 10.0.10.101
    port: 80
    real_servers:
      - address: 10.0.10.112
        mac: ${MAC.other}
`;

async function arpDaemon(o: { healthCheck?: boolean } = {}) {
  const config = parseConfig(CONFIG(o.healthCheck ?? false), 'test.yaml');
  const port = new Wire(config.interfaces.capture, mac(MAC.balancer));
  const clock = new FakeClock();
  const verdict = new Map<string, CheckResult>();
  const daemon = new Daemon({
    config,
    log: pino({ level: 'silent' }),
    openPort: () => port,
    hostGuard: false,
    metrics: false,
    localAddresses: new Set(['10.0.10.30']),
    health: {
      clock,
      random: () => 0,
      makeChecker: (rs, check) => ({ type: check.type, run: async () => verdict.get(intToIp(rs.addr)) ?? { ok: true, reason: 'connected' } }),
    },
  });
  await daemon.start();
  const dests = daemon.forwarder.dests;
  const rs = (addr: string) => dests.views.find((d) => intToIp(d.addr) === addr && !d.removed)!;
  const macOf = (addr: string) => (dests.macKnown[rs(addr).index] ? macToString(dests.mac, rs(addr).index * 6) : null);
  const results = () => Object.fromEntries(ARP_RESULTS.map((r, i) => [r, daemon.arp.frames[i]]).filter(([, n]) => n));
  const requestsFor = (addr: string) =>
    port.sent.filter((f) => {
      const a = parseArp(f, f.length);
      return a?.op === ARP_REQUEST && intToIp(a.targetIp) === addr;
    }).length;
  return { daemon, port, clock, verdict, rs, macOf, results, requestsFor };
}

test('ArpAgent: a gratuitous ARP and an unsolicited reply from a real server re-point its MAC at once', async () => {
  const t = await arpDaemon();
  try {
    assert.deepEqual([t.macOf(RS40), t.macOf(RS111)], [MAC.rs40, MAC.rs111], 'resolved at start');
    const base = t.daemon.arp.frames.slice();
    t.port.inject(gratuitousArp(mac(NEW_MAC), ipToInt(RS111)));
    assert.equal(t.macOf(RS111), NEW_MAC, 'gratuitous request (sender = target)');
    t.port.inject(buildArp(ARP_REPLY, mac('ff:ff:ff:ff:ff:ff'), mac(MAC.rs111), ipToInt(RS111), mac('ff:ff:ff:ff:ff:ff'), ipToInt(RS111)));
    assert.equal(t.macOf(RS111), MAC.rs111, 'unsolicited (broadcast) reply');
    t.port.inject(arpRequest(mac(MAC.rs111), ipToInt(RS111), ipToInt('10.0.10.30')));
    assert.equal(t.macOf(RS111), MAC.rs111, "the server's own question: same MAC, unchanged");
    assert.equal(t.macOf(RS40), MAC.rs40, 'the other server untouched');
    const learned = t.daemon.arp.frames[0] - base[0];
    const unchanged = t.daemon.arp.frames[1] - base[1];
    assert.deepEqual([learned, unchanged], [2, 1]);
  } finally {
    await t.daemon.stop();
  }
});

test('ArpAgent: mutated opcodes, impossible sender MACs, a sender that is no real server, a forged sender MAC: the MAC stays', async () => {
  const t = await arpDaemon();
  try {
    const base = t.daemon.arp.frames.slice();
    const frames: Buffer[] = [];
    for (const op of [0, 3, 4, 8, 9, 0xffff]) {
      const f = gratuitousArp(mac(NEW_MAC), ipToInt(RS111));
      f.writeUInt16BE(op, 20);
      frames.push(f);
    }
    for (const bad of ['ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01', '00:00:00:00:00:00']) frames.push(gratuitousArp(mac(bad), ipToInt(RS111)));
    // the Ethernet source says one station, the ARP sender another: a forged or mangled frame
    const forged = gratuitousArp(mac(MAC.rs111), ipToInt(RS111));
    mac(NEW_MAC).copy(forged, ARP_SHA);
    frames.push(forged);
    const invalid = frames.length;
    // valid frames, but not from a real server (another host, an ARP probe from 0.0.0.0), nor a question for a VIP
    frames.push(gratuitousArp(mac(NEW_MAC), ipToInt('10.0.10.77')));
    frames.push(arpRequest(mac(NEW_MAC), 0, ipToInt(RS111)));
    frames.push(arpRequest(mac(NEW_MAC), ipToInt('10.0.10.77'), ipToInt(RS40)));
    for (const f of frames) t.port.inject(f);
    assert.deepEqual([t.macOf(RS40), t.macOf(RS111)], [MAC.rs40, MAC.rs111]);
    const d = ARP_RESULTS.map((_, i) => t.daemon.arp.frames[i] - base[i]);
    assert.deepEqual(Object.fromEntries(ARP_RESULTS.map((r, i) => [r, d[i]])), { learned: 0, unchanged: 0, answered: 0, ignored: 3, invalid });
    // a configured MAC (mac: in the config) is never taken from ARP
    t.port.inject(gratuitousArp(mac(NEW_MAC), ipToInt('10.0.10.112')));
    assert.equal(t.macOf('10.0.10.112'), MAC.other);
  } finally {
    await t.daemon.stop();
  }
});

test("ArpAgent: 20,000 one-byte mutations of a real server's gratuitous ARP never re-point a MAC, except to the frame's own sender", async () => {
  const t = await arpDaemon();
  try {
    const good = gratuitousArp(mac(MAC.rs111), ipToInt(RS111));
    let seed = 4242;
    const rnd = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) >>> 8;
    let claims40 = 0;
    for (let i = 0; i < 20000; i++) {
      const f = Buffer.from(good);
      f[rnd() % 42] = rnd() & 255;
      // The one mutation that must be learnt: the sender address changed to 10.0.10.40's, a frame
      // consistent in every field (ARP has no authentication; that is the station's own claim).
      if (f.readUInt32BE(ARP_SPA) === ipToInt(RS40)) claims40++;
      t.port.inject(f);
      if (t.macOf(RS40) !== MAC.rs40) t.port.inject(gratuitousArp(mac(MAC.rs40), ipToInt(RS40))); // put it back
      assert.equal(t.macOf(RS111), MAC.rs111, `frame ${i}: ${f.toString('hex')}`);
    }
    const learned = t.results().learned ?? 0;
    // rs40 and rs111 at start, then each claim of 10.0.10.40 and its put-back
    assert.equal(learned, 2 + 2 * claims40);
    assert.ok((t.results().invalid ?? 0) > 1000, JSON.stringify(t.results()));
  } finally {
    await t.daemon.stop();
  }
});

test('ArpAgent: answers who-has for a VIP only, never to a sender MAC no station has', async () => {
  const t = await arpDaemon();
  try {
    const before = t.port.sent.length;
    t.port.inject(arpRequest(mac(MAC.client), ipToInt('10.0.10.50'), ipToInt('10.0.10.100')));
    assert.equal(t.port.sent.length, before + 1);
    t.port.inject(arpRequest(mac('ff:ff:ff:ff:ff:ff'), ipToInt('10.0.10.50'), ipToInt('10.0.10.100')));
    const q = arpRequest(mac(MAC.client), ipToInt('10.0.10.50'), ipToInt('10.0.10.100'));
    q.writeUInt16BE(3, 20);
    t.port.inject(q);
    assert.equal(t.port.sent.length, before + 1, 'no reply to broadcast or to a mutated opcode');
    assert.equal(t.results().answered, 1);
  } finally {
    await t.daemon.stop();
  }
});

test('reresolve: one ARP request for a tracked server, at most one a second, none for a configured MAC', async () => {
  const t = await arpDaemon();
  try {
    t.port.macs.set(RS111, NEW_MAC); // changed silently: no gratuitous ARP
    const asked = t.requestsFor(RS111);
    t.daemon.arp.reresolve(t.rs(RS111));
    t.daemon.arp.reresolve(t.rs(RS111));
    assert.equal(t.requestsFor(RS111), asked + 1);
    await new Promise((r) => setImmediate(r));
    assert.equal(t.macOf(RS111), NEW_MAC, 'the answer re-points it');
    const all = t.port.sent.length;
    t.daemon.arp.reresolve(t.rs('10.0.10.112'));
    assert.equal(t.port.sent.length, all, 'mac: from the config: never asked');
  } finally {
    await t.daemon.stop();
  }
});

test("a failed health check re-resolves the server's MAC at the first failure, before fall takes it down", async () => {
  const t = await arpDaemon({ healthCheck: true });
  try {
    await t.clock.advance(0);
    assert.equal(t.rs(RS111).health, 'up');
    t.port.macs.set(RS111, NEW_MAC); // changed silently: the checks fail from now on
    t.verdict.set(RS111, { ok: false, reason: 'timeout' });
    const asked = t.requestsFor(RS111);
    const asked40 = t.requestsFor(RS40);
    await t.clock.advance(1000);
    assert.equal(t.requestsFor(RS111), asked + 1, 'one request at the first failed check');
    assert.equal(t.requestsFor(RS40), asked40, 'none for rs40, whose check passes');
    await new Promise((r) => setImmediate(r));
    assert.equal(t.macOf(RS111), NEW_MAC);
    assert.equal(t.rs(RS111).health, 'up', 'one failure of fall 3: still up');
  } finally {
    await t.daemon.stop();
  }
});
