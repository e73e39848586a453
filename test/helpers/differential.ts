/**
 * The differential harness: a TypeScript Forwarder and a native one (NativeDataplane on the
 * addon) built from the same services, the same frames through both, and everything compared:
 * verdicts, output frames and their virtio-net headers, ARP hand-offs, drops, counters, the
 * connection and template tables, per-server and per-service counters. Used by native.test.ts
 * and by the property-based fuzzing (test/fuzz/frames.ts).
 */
import assert from 'node:assert/strict';
import { COUNTER_COUNT, DROP_REASONS } from '../../src/dataplane/contract';
import { Forwarder } from '../../src/dataplane/forwarder';
import { NativeDataplane } from '../../src/dataplane/native';
import { ipToInt, macFromString } from '../../src/dataplane/packet';
import { VirtualService } from '../../src/dataplane/services';
import { createScheduler, type SchedulerOptions } from '../../src/scheduler/index';
import { MAC } from './frames';

export const EGRESS_MAC = '02:00:00:00:0e:01';

export interface RealSpec {
  addr: string;
  weight: number;
  mac?: string | null;
}
export interface SvcSpec {
  name: string;
  vip: string;
  port: number;
  proto: 'tcp' | 'udp';
  scheduler: string;
  persistence?: number;
  mask?: string;
  /** Scheduler options (flags, mh table size). */
  options?: SchedulerOptions;
  /** on_miss: hash (default drop). */
  onMissHash?: boolean;
  reals: RealSpec[];
}

export interface Side {
  fw: Forwarder;
  sent: Buffer[];
  /** The virtio-net header each sent frame left with (zeros: none). */
  sentVnet: Buffer[];
  arps: Buffer[];
  sink: { refuse: boolean; vnet: boolean; send(buf: Buffer, len: number, vnet?: Uint8Array): boolean };
}

/** Options of both sides: `icmpClock`, the ICMP rate limits' clock in ms (default performance.now(); a shared fake one makes them deterministic). */
export interface SideOptions {
  icmpClock?: () => number;
}

export function side(specs: SvcSpec[], size: number, opts: SideOptions = {}): Side {
  const sent: Buffer[] = [];
  const sentVnet: Buffer[] = [];
  // Like processFrames' memory sink: it takes virtio-net headers (a PACKET_VNET_HDR socket).
  const sink = {
    refuse: false,
    vnet: true,
    send(buf: Buffer, len: number, vnet?: Uint8Array): boolean {
      if (this.refuse) return false;
      sent.push(Buffer.from(buf.subarray(0, len)));
      sentVnet.push(vnet ? Buffer.from(vnet.subarray(0, 10)) : Buffer.alloc(10));
      return true;
    },
  };
  const fw = new Forwarder({
    connTableSize: size,
    timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
    captureMac: macFromString(MAC.balancer),
    egressMac: macFromString(EGRESS_MAC),
    egress: sink,
    icmpClock: opts.icmpClock,
  });
  const arps: Buffer[] = [];
  fw.onArp = (buf, len) => arps.push(Buffer.from(buf.subarray(0, len)));
  specs.forEach((s, i) => addService(fw, i, s));
  return { fw, sent, sentVnet, arps, sink };
}

export function addService(fw: Forwarder, index: number, s: SvcSpec): VirtualService {
  const svc = new VirtualService(
    index,
    s.name,
    ipToInt(s.vip),
    s.port,
    s.proto === 'udp' ? 17 : 6,
    createScheduler(s.scheduler, s.options),
    s.persistence ?? 0,
    ipToInt(s.mask ?? '255.255.255.255'),
  );
  svc.onMissHash = s.onMissHash === true;
  for (const r of s.reals) {
    const rs = fw.dests.add(svc, ipToInt(r.addr), s.port, r.weight);
    if (r.mac !== null)
      fw.dests.setMac(
        rs.index,
        macFromString(r.mac ?? `02:00:00:00:${(rs.index >> 8).toString(16).padStart(2, '0')}:${(rs.index & 255).toString(16).padStart(2, '0')}`),
      );
    svc.dests.push(rs);
    svc.reals.push(rs);
  }
  svc.changed();
  fw.services.add(svc);
  return svc;
}

/** A TypeScript forwarder and a native one on the same config. */
export class Pair {
  readonly ts: Side;
  readonly nat: Side;
  readonly dp: NativeDataplane;
  frames = 0;

  constructor(specs: SvcSpec[], size = 4096, opts: SideOptions = {}) {
    this.ts = side(specs, size, opts);
    this.nat = side(specs, size, opts);
    this.dp = new NativeDataplane(this.nat.fw);
  }

  /** Both paths, on copies of the same frames; verdicts and sent frames compared. */
  run(frames: Buffer[], opts: { status?: number[]; refuse?: boolean; vnet?: Buffer[] } = {}): void {
    this.ts.sink.refuse = !!opts.refuse;
    const before = this.ts.sent.length;
    const tsVerdicts = frames.map((f, i) => this.ts.fw.process(Buffer.from(f), f.length, undefined, opts.vnet?.[i]));
    // The native path hands ICMP errors to TypeScript, which sends them at once, ahead of the fast
    // path's frames of the same batch (sendmmsg at its end, as live): the TypeScript side's sends
    // of this batch in that order (each kind in its own order) to compare with.
    const isIcmp = (b: Buffer) => b.length > 23 && b[12] === 0x08 && b[13] === 0x00 && b[23] === 1;
    const batch = this.ts.sent.splice(before).map((b, i) => ({ b, v: this.ts.sentVnet[before + i] }));
    this.ts.sentVnet.splice(before);
    for (const e of [...batch.filter((x) => isIcmp(x.b)), ...batch.filter((x) => !isIcmp(x.b))]) {
      this.ts.sent.push(e.b);
      this.ts.sentVnet.push(e.v);
    }
    const lengths = Uint32Array.from(frames.map((f) => f.length));
    const res = this.dp.processFrames(Buffer.concat(frames), lengths, {
      status: opts.status ? Uint32Array.from(opts.status) : undefined,
      vnet: opts.vnet ? Buffer.concat(opts.vnet) : undefined,
      refuse: !!opts.refuse,
    });
    if (!opts.refuse) {
      for (let i = 0; i < frames.length; i++) {
        if (res.verdicts[i] !== tsVerdicts[i]) {
          assert.fail(`frame ${this.frames + i}: native verdict ${res.verdicts[i]}, TypeScript ${tsVerdicts[i]} (${frames[i].toString('hex').slice(0, 120)})`);
        }
      }
    }
    this.nat.sent.push(...(res.sent ?? []));
    this.nat.sentVnet.push(...(res.sentVnet ?? []));
    this.frames += frames.length;
  }

  /** The same control-plane action on both sides. */
  both(fn: (fw: Forwarder) => void): void {
    fn(this.ts.fw);
    fn(this.nat.fw);
  }

  assertSame(where: string): void {
    const a = this.ts;
    const b = this.nat;
    assert.equal(b.sent.length, a.sent.length, `${where}: frames sent`);
    for (let i = 0; i < a.sent.length; i++) {
      if (!a.sent[i].equals(b.sent[i])) assert.fail(`${where}: sent frame ${i} differs\n ts ${a.sent[i].toString('hex')}\n nat ${b.sent[i].toString('hex')}`);
    }
    for (let i = 0; i < a.sentVnet.length; i++) {
      if (!a.sentVnet[i].equals(b.sentVnet[i]))
        assert.fail(`${where}: the virtio-net header of sent frame ${i} differs: ts ${a.sentVnet[i].toString('hex')} nat ${b.sentVnet[i]?.toString('hex')}`);
    }
    assert.deepEqual(b.arps, a.arps, `${where}: ARP frames handed to the control plane`);
    const named = (d: Float64Array) => Object.fromEntries(DROP_REASONS.map((r, i) => [r, d[i]]));
    assert.deepEqual(named(b.fw.drops), named(a.fw.drops), `${where}: drops`);
    assert.deepEqual([...b.fw.counters], [...a.fw.counters], `${where}: counters`);
    assert.equal(b.fw.counters.length, COUNTER_COUNT);
    for (const [name, ta, tb] of [
      ['conns', a.fw.conns, b.fw.conns],
      ['templates', a.fw.templates, b.fw.templates],
    ] as const) {
      assert.equal(tb.size, ta.size, `${where}: ${name}.size`);
      for (const k of ['keyAddr', 'keyPort', 'dest', 'state', 'flags', 'expires', 'refs'] as const) {
        const x = Buffer.from(ta[k].buffer, ta[k].byteOffset, ta[k].byteLength);
        const y = Buffer.from(tb[k].buffer, tb[k].byteOffset, tb[k].byteLength);
        if (!x.equals(y)) {
          const i = ta[k].findIndex((v, j) => v !== tb[k][j]);
          assert.fail(`${where}: ${name}.${k} differs at slot ${i}: ts ${ta[k][i]} native ${tb[k][i]}`);
        }
      }
    }
    const n = a.fw.dests.views.length;
    for (const k of ['active', 'inactive', 'persistent', 'conns', 'packets', 'bytes', 'macKnown'] as const) {
      assert.deepEqual([...b.fw.dests[k].subarray(0, n)], [...a.fw.dests[k].subarray(0, n)], `${where}: dests.${k}`);
    }
    assert.deepEqual(
      b.fw.dests.views.map((v) => v.flags),
      a.fw.dests.views.map((v) => v.flags),
      `${where}: dest flags (down, overload)`,
    );
    const svcs = (fw: Forwarder) => fw.services.all.map((s) => s && { conns: s.conns, packets: s.packets, bytes: s.bytes, missScheduled: s.missScheduled });
    assert.deepEqual(svcs(b.fw), svcs(a.fw), `${where}: per-service counters`);
  }
}

export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const SERVICES: SvcSpec[] = [
  {
    name: 'web-rr',
    vip: '10.0.10.100',
    port: 80,
    proto: 'tcp',
    scheduler: 'rr',
    reals: [
      { addr: '10.0.10.40', weight: 1, mac: MAC.rs40 },
      { addr: '10.0.10.111', weight: 1, mac: MAC.rs111 },
    ],
  },
  {
    name: 'tls-wlc-persist',
    vip: '10.0.10.100',
    port: 443,
    proto: 'tcp',
    scheduler: 'wlc',
    persistence: 30,
    mask: '255.255.255.0',
    reals: [
      { addr: '10.0.10.40', weight: 3 },
      { addr: '10.0.10.111', weight: 1 },
      { addr: '10.0.10.112', weight: 2 },
    ],
  },
  {
    name: 'dns-wlc',
    vip: '10.0.10.101',
    port: 53,
    proto: 'udp',
    scheduler: 'wlc',
    reals: [
      { addr: '10.0.10.40', weight: 1 },
      { addr: '10.0.10.111', weight: 2 },
    ],
  },
  {
    // One real server whose MAC is not resolved: its flows are dropped (no_mac).
    name: 'app-lc',
    vip: '10.0.10.102',
    port: 8080,
    proto: 'tcp',
    scheduler: 'lc',
    reals: [
      { addr: '10.0.10.40', weight: 1 },
      { addr: '10.0.10.113', weight: 1, mac: null },
    ],
  },
  {
    name: 'sh-udp',
    vip: '10.0.10.102',
    port: 5353,
    proto: 'udp',
    scheduler: 'sh',
    reals: [
      { addr: '10.0.10.40', weight: 1 },
      { addr: '10.0.10.111', weight: 1 },
    ],
  },
];
