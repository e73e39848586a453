/**
 * The Maglev hashing scheduler (mh) and its parts: the kernel's hsiphash against its own test
 * vectors, the table construction against the Maglev paper's Table 1, and the scheduler as an
 * operator would check it: how few clients move when a server comes or goes, that every
 * balancer builds the same table, weights, quiescing, health, continuing flows and mh-port.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import { runSyncOk } from '../../src/host/programs';
import { DEST_F_DOWN, DEST_F_OVERLOAD, createScheduler, type Dest, type FlowInfo, type SchedulerOptions } from '../../src/scheduler/index';
import { mhPopulate, mhTabBits, mhTurns } from '../../src/scheduler/maglev';
import { MaglevHashing, mhOffsetSkip } from '../../src/scheduler/mh';
import { hsiphashKey, hsiphashTail, hsiphashU32 } from '../../src/scheduler/siphash';

/** A real server as the data plane's RealServer keeps it: a weight that remembers its last positive value. */
class FakeDest implements Dest {
  flags = 0;
  activeConns = 0;
  inactConns = 0;
  lastWeight: number;
  private w: number;
  constructor(
    readonly name: string,
    readonly addr: number,
    weight: number,
    readonly port: number,
  ) {
    this.w = weight;
    this.lastWeight = weight > 0 ? weight : 0;
  }
  get weight(): number {
    return this.w;
  }
  set weight(w: number) {
    this.w = w;
    if (w > 0) this.lastWeight = w;
  }
}

function server(name: string, addr: number, weight = 1, port = 80): FakeDest {
  return new FakeDest(name, addr >>> 0, weight, port);
}

/** n servers 10.1.x.y:80, weight 1. */
function servers(n: number, weight = 1): FakeDest[] {
  return Array.from({ length: n }, (_, i) => server(`s${i}`, 0x0a010000 + i + 1, weight));
}

function mh(dests: readonly Dest[], options: SchedulerOptions = {}): MaglevHashing {
  const s = createScheduler('mh', options) as MaglevHashing;
  assert.ok(s instanceof MaglevHashing);
  s.update(dests);
  return s;
}

/** mulberry32: a small seeded PRNG, so every run draws the same clients. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function clients(n: number, seed = 1): Uint32Array {
  const r = prng(seed);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = r();
  return out;
}

const flow: FlowInfo = { srcAddr: 0, srcPort: 0, continuing: false };

function pick(s: MaglevHashing, dests: readonly Dest[], srcAddr: number, srcPort = 40000, continuing = false): Dest | null {
  flow.srcAddr = srcAddr;
  flow.srcPort = srcPort;
  flow.continuing = continuing;
  return s.schedule(dests, flow);
}

/** The table as the (addr, port) of each entry's server, hashed: equal digests, equal tables. */
function digest(s: MaglevHashing): string {
  const t = s.lookupTable();
  const list = s.lookupServers();
  const cells = new Uint32Array(2 * t.length);
  for (let e = 0; e < t.length; e++) {
    const d = t[e] < 0 ? null : list[t[e]];
    cells[2 * e] = d === null ? 0 : d.addr;
    cells[2 * e + 1] = d === null ? 0 : d.port;
  }
  return createHash('sha256').update(cells).digest('hex');
}

/** Entries per server name. */
function entryShares(s: MaglevHashing): Record<string, number> {
  const list = s.lookupServers() as FakeDest[];
  const c: Record<string, number> = {};
  for (const i of s.lookupTable()) {
    const k = i < 0 ? '-' : list[i].name;
    c[k] = (c[k] ?? 0) + 1;
  }
  return c;
}

// ---------------------------------------------------------------- hsiphash

/** SipHash-1-3 with 64-bit words, in BigInt: a slow, obviously written reference. */
function hsiphashRef(bytes: number[], k0: bigint, k1: bigint): number {
  const M = (1n << 64n) - 1n;
  const rotl = (x: bigint, b: bigint) => ((x << b) | (x >> (64n - b))) & M;
  let v0 = 0x736f6d6570736575n ^ k0;
  let v1 = 0x646f72616e646f6dn ^ k1;
  let v2 = 0x6c7967656e657261n ^ k0;
  let v3 = 0x7465646279746573n ^ k1;
  const round = () => {
    v0 = (v0 + v1) & M;
    v1 = rotl(v1, 13n) ^ v0;
    v0 = rotl(v0, 32n);
    v2 = (v2 + v3) & M;
    v3 = rotl(v3, 16n) ^ v2;
    v0 = (v0 + v3) & M;
    v3 = rotl(v3, 21n) ^ v0;
    v2 = (v2 + v1) & M;
    v1 = rotl(v1, 17n) ^ v2;
    v2 = rotl(v2, 32n);
  };
  let b = BigInt(bytes.length) << 56n;
  bytes.forEach((x, i) => (b |= BigInt(x) << BigInt(8 * i)));
  v3 ^= b;
  round();
  v0 ^= b;
  v2 ^= 0xffn;
  round();
  round();
  round();
  return Number((v0 ^ v1 ^ v2 ^ v3) & 0xffffffffn);
}

/** Bytes (at most 7) as hsiphashTail's lo and hi words. */
function tail(bytes: number[]): [number, number] {
  let lo = 0;
  let hi = 0;
  bytes.forEach((x, i) => {
    if (i < 4) lo |= x << (8 * i);
    else hi |= x << (8 * (i - 4));
  });
  return [lo >>> 0, hi];
}

test("hsiphash: the Linux kernel's test vectors (lib/test_siphash.c, 64-bit), 0 to 7 bytes", () => {
  const key = hsiphashKey(0, 0);
  // {0x0706050403020100, 0x0f0e0d0c0b0a0908}: above 2^53, so given by halves.
  const k = { ...key, k0hi: 0x07060504, k0lo: 0x03020100, k1hi: 0x0f0e0d0c, k1lo: 0x0b0a0908 };
  const vectors = [0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67, 0xc59f22a7, 0x9bb11140];
  for (let n = 0; n < 8; n++) {
    const bytes = Array.from({ length: n }, (_, i) => i);
    const [lo, hi] = tail(bytes);
    assert.equal(hsiphashTail(lo, hi, n, k), vectors[n], `${n} bytes`);
    assert.equal(hsiphashRef(bytes, 0x0706050403020100n, 0x0f0e0d0c0b0a0908n), vectors[n], `reference, ${n} bytes`);
  }
  // One u32 is its 4 bytes, little-endian.
  assert.equal(hsiphashU32(0x03020100, k), vectors[4]);
});

test('hsiphash: matches a 64-bit reference for random keys and inputs (carries, high bits)', () => {
  const r = prng(7);
  for (let i = 0; i < 2000; i++) {
    const k = { k0hi: r(), k0lo: r(), k1hi: r(), k1lo: r() };
    const n = i % 8;
    const bytes = Array.from({ length: n }, () => r() & 0xff);
    const [lo, hi] = tail(bytes);
    const k0 = (BigInt(k.k0hi) << 32n) | BigInt(k.k0lo);
    const k1 = (BigInt(k.k1hi) << 32n) | BigInt(k.k1lo);
    assert.equal(hsiphashTail(lo, hi, n, k), hsiphashRef(bytes, k0, k1), `case ${i}`);
  }
  // IPVS's keys: both words the same small number.
  assert.deepEqual(hsiphashKey(2654435761, 2654435761), { k0hi: 0, k0lo: 2654435761, k1hi: 0, k1lo: 2654435761 });
  const v = 0xc0a80001;
  assert.equal(hsiphashU32(v, hsiphashKey(2654435761, 2654435761)), hsiphashRef([1, 0, 0xa8, 0xc0], 2654435761n, 2654435761n));
});

// ---------------------------------------------------------------- the construction

test("maglev: the paper's Table 1 (M = 7), and after B1 is removed", () => {
  // B0: offset 3, skip 4 → 3 0 4 1 5 2 6; B1: offset 0, skip 2 → 0 2 4 6 1 3 5;
  // B2: offset 3, skip 1 → 3 4 5 6 0 1 2. Turns: B0 3, B1 0, B2 4 (3 taken); B0 1 (0, 4 taken),
  // B1 2, B2 5; B0 6 (5, 2 taken): full.
  const B0 = { offset: 3, skip: 4, turns: 1 };
  const B1 = { offset: 0, skip: 2, turns: 1 };
  const B2 = { offset: 3, skip: 1, turns: 1 };
  const t = new Int32Array(7);
  mhPopulate([B0, B1, B2], 7, t);
  assert.deepEqual(
    [...t].map((i) => `B${i}`),
    ['B1', 'B0', 'B1', 'B0', 'B2', 'B2', 'B0'],
  );
  // Without B1: B0 3, B2 4; B0 0, B2 5; B0 1, B2 6; B0 2.
  mhPopulate([B0, B2], 7, t);
  assert.deepEqual(
    [...t].map((i) => ['B0', 'B2'][i]),
    ['B0', 'B0', 'B0', 'B0', 'B2', 'B2', 'B2'],
  );
});

test('maglev: turns claim entries in a row; servers without turns take none; no turns, empty table', () => {
  const t = new Int32Array(7);
  // Turns 2 and 1, both walking 0 1 2 ...: a a b a a b a.
  mhPopulate(
    [
      { offset: 0, skip: 1, turns: 2 },
      { offset: 0, skip: 1, turns: 1 },
      { offset: 5, skip: 3, turns: 0 },
    ],
    7,
    t,
  );
  assert.deepEqual([...t], [0, 0, 1, 0, 0, 1, 0]);
  mhPopulate([{ offset: 1, skip: 1, turns: 0 }], 7, t);
  assert.deepEqual([...t], [-1, -1, -1, -1, -1, -1, -1]);
  mhPopulate([], 7, t);
  assert.deepEqual([...t], [-1, -1, -1, -1, -1, -1, -1]);
});

test("maglev: weights IPVS's way: divided by their gcd, shifted to TAB_BITS bits, last weight 0 = no turn", () => {
  assert.equal(mhTabBits(4093), 6);
  assert.equal(mhTabBits(65521), 8);
  assert.equal(mhTabBits(65537), 8);
  assert.equal(mhTabBits(251), 4);
  assert.deepEqual(mhTurns([2, 1], 65537), [2, 1]);
  assert.deepEqual(mhTurns([600, 300, 0], 65537), [2, 1, 0]);
  assert.deepEqual(mhTurns([0, 0], 65537), [0, 0]);
  // 1000/1 needs 10 bits: shifted right by 2 at 8 bits (250, and the 1 becomes 0 → 1 turn).
  assert.deepEqual(mhTurns([1000, 1], 65537), [250, 1]);
  // At 4093 (6 bits): 1000 → 10 bits → shift 4: 62.
  assert.deepEqual(mhTurns([1000, 500, 3], 4093), [62, 31, 1]);
  assert.deepEqual(mhTurns([255, 1], 65537), [255, 1]);
  assert.deepEqual(mhTurns([256, 1], 65537), [128, 1]);
});

test("mh: a server's offset and skip are IPVS's hashkey of its address and port", () => {
  const { offset, skip } = mhOffsetSkip(0x0a010001, 80, 65537);
  // hsiphash(u32 port + addr) with the fixed keys.
  const v = (0x0a010001 + 80) >>> 0;
  const bytes = [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24];
  assert.equal(offset, hsiphashRef(bytes, 2654435761n, 2654435761n) % 65537);
  assert.equal(skip, (hsiphashRef(bytes, 2654446892n, 2654446892n) % 65536) + 1);
});

// ---------------------------------------------------------------- the scheduler

test('mh: removing or adding one of N servers moves about 1/N of 1,000,000 clients, and others barely', (t) => {
  const addrs = clients(1_000_000, 42);
  const rows: string[] = [];
  for (const n of [10, 50, 100]) {
    const count = addrs.length;
    const dests = servers(n);
    const s = mh(dests);
    const before = new Int32Array(count);
    const index = new Map<Dest, number>(dests.map((d, i) => [d, i]));
    for (let i = 0; i < count; i++) before[i] = index.get(pick(s, dests, addrs[i])!)!;

    // Remove one server (the middle one of the list).
    const gone = n >> 1;
    const fewer = dests.filter((_, i) => i !== gone);
    s.update(fewer);
    let onGone = 0;
    let others = 0;
    let othersMoved = 0;
    for (let i = 0; i < count; i++) {
      const d = pick(s, fewer, addrs[i]);
      assert.ok(d !== null);
      const now = index.get(d)!;
      if (before[i] === gone) {
        onGone++;
        assert.notEqual(now, gone);
      } else {
        others++;
        if (now !== before[i]) othersMoved++;
      }
    }
    const moved = (onGone + othersMoved) / count;
    const othersShare = othersMoved / others;
    // The removed server had its fair share (within 20 %), and every one of its clients moved
    // (checked above); of the others' clients, at most 1 % moved with them.
    assert.ok(onGone / count > 0.8 / n && onGone / count < 1.2 / n, `N=${n}: ${onGone} clients on the removed server`);
    assert.ok(othersShare <= 0.01, `N=${n}: ${othersShare} of the surviving servers' clients moved`);

    // Add one server (to the full list).
    const added = server('new', 0x0a020001);
    const more = [...dests, added];
    index.set(added, n);
    s.update(more);
    let onNew = 0;
    let addMoved = 0;
    for (let i = 0; i < count; i++) {
      const now = index.get(pick(s, more, addrs[i])!)!;
      if (now === n) onNew++;
      else if (now !== before[i]) addMoved++;
    }
    const addShare = (onNew + addMoved) / count;
    const addOthers = addMoved / (count - onNew);
    assert.ok(onNew / count > 0.8 / (n + 1) && onNew / count < 1.2 / (n + 1), `N=${n}+1: ${onNew} clients on the new server`);
    assert.ok(addOthers <= 0.01, `N=${n}+1: ${addOthers} moved between old servers`);
    rows.push(
      `| ${n} | ${count.toLocaleString('en')} | ${(100 / n).toFixed(2)} % | ${((100 * onGone) / count).toFixed(2)} % | ${(100 * moved).toFixed(2)} % | ${(100 * othersShare).toFixed(3)} % | ${(100 / (n + 1)).toFixed(2)} % | ${(100 * addShare).toFixed(2)} % | ${(100 * addOthers).toFixed(3)} % |`,
    );
  }
  const table = [
    "| N | clients | 1/N | on the removed server | moved (remove 1) | of the others' clients moved | 1/(N+1) | moved (add 1) | of the others' clients moved |",
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
  t.diagnostic(`mh disruption, M = 65537:\n${table}`);
});

test('mh: the same servers in any order build the same table, here and in another process', () => {
  const list = servers(37).map((d, i) => server(d.name, d.addr, 1 + (i % 3), 80 + (i % 2)));
  const a = mh(list);
  const b = mh([...list].reverse());
  const r = prng(3);
  const shuffled = [...list];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = r() % (i + 1);
    [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
  }
  const c = mh(shuffled.map((d) => server(d.name, d.addr, d.weight, d.port))); // other objects, too
  assert.deepEqual(a.lookupTable(), c.lookupTable());
  assert.equal(digest(a), digest(b));
  assert.equal(digest(a), digest(c));
  for (const x of clients(1000, 9)) {
    assert.equal(pick(a, list, x)!.addr, pick(b, [...list].reverse(), x)!.addr);
  }
  // Another process (another V8 heap, nothing shared) builds it from the same servers.
  const mod = path.resolve(__dirname, '../../src/scheduler/mh.js');
  const script = `
    const { MaglevHashing } = require(${JSON.stringify(mod)});
    const list = JSON.parse(process.argv[1]);
    const s = new MaglevHashing({});
    s.update(list);
    const t = s.lookupTable(), l = s.lookupServers();
    const cells = new Uint32Array(2 * t.length);
    for (let e = 0; e < t.length; e++) { const d = t[e] < 0 ? null : l[t[e]]; cells[2 * e] = d ? d.addr : 0; cells[2 * e + 1] = d ? d.port : 0; }
    process.stdout.write(require('node:crypto').createHash('sha256').update(cells).digest('hex'));
  `;
  const other = runSyncOk('node', ['-e', script, JSON.stringify(shuffled)], { timeoutMs: 30_000 });
  assert.equal(other, digest(a));
});

test('mh: weights 2:1 give 2/3 and 1/3 of the entries and of the clients', () => {
  const dests = [server('a', 0x0a000001, 2), server('b', 0x0a000002, 1)];
  const s = mh(dests);
  const e = entryShares(s);
  assert.ok(Math.abs(e.a / 65537 - 2 / 3) < 0.02, `a: ${e.a}`);
  assert.ok(Math.abs(e.b / 65537 - 1 / 3) < 0.02, `b: ${e.b}`);
  const c: Record<string, number> = {};
  for (const x of clients(100_000, 5)) {
    const d = pick(s, dests, x) as FakeDest;
    c[d.name] = (c[d.name] ?? 0) + 1;
  }
  assert.ok(Math.abs(c.a / 100_000 - 2 / 3) < 0.02, `a: ${c.a}`);
  // Ten servers 3:1:1:...: the first gets 3/12.
  const ten = servers(10).map((d, i) => server(d.name, d.addr, i === 0 ? 3 : 1));
  const share = entryShares(mh(ten)).s0 / 65537;
  assert.ok(Math.abs(share - 3 / 12) < 0.02, `s0: ${share}`);
});

test('mh: weights with a large gcd build the table of the reduced weights', () => {
  const reduced = servers(5).map((d, i) => server(d.name, d.addr, i + 1));
  const scaled = reduced.map((d) => server(d.name, d.addr, d.weight * 1000));
  assert.equal(digest(mh(scaled)), digest(mh(reduced)));
  // Weights past TAB_BITS (8 bits at 65537) are shifted right, not refused: 1000:1 claims as
  // 250:1 (the 1 shifted to 0 still gets one turn).
  const big = [server('a', 0x0a000001, 1000), server('b', 0x0a000002, 1)];
  assert.equal(digest(mh(big)), digest(mh([server('a', 0x0a000001, 250), server('b', 0x0a000002, 1)])));
});

/** For each client, the server it has (or null). */
function assign(s: MaglevHashing, dests: readonly Dest[], xs: Uint32Array, continuing = false): (Dest | null)[] {
  return Array.from(xs, (x) => pick(s, dests, x, 40000, continuing));
}

for (const [what, off, on] of [
  ['quiescing (weight 0)', (d: FakeDest) => (d.weight = 0), (d: FakeDest) => (d.weight = 1)],
  ['a failed health check (DOWN)', (d: FakeDest) => (d.flags = DEST_F_DOWN), (d: FakeDest) => (d.flags = 0)],
] as const) {
  test(`mh: ${what} keeps the table; its clients get null, or others with mh-fallback; others do not move`, () => {
    const dests = servers(10);
    const s = mh(dests);
    const f = mh(dests, { fallback: true });
    const xs = clients(50_000, 11);
    const before = assign(s, dests, xs);
    assert.deepEqual(assign(f, dests, xs), before);
    const table = Int32Array.from(s.lookupTable());
    const builds = [s.rebuilds, f.rebuilds];
    const victim = dests[4];
    off(victim);
    s.update(dests);
    f.update(dests);
    assert.deepEqual([s.rebuilds, f.rebuilds], builds, 'not rebuilt');
    assert.deepEqual(s.lookupTable(), table);
    const plain = assign(s, dests, xs);
    const fell = assign(f, dests, xs);
    const spread = new Set<Dest>();
    xs.forEach((_, i) => {
      if (before[i] === victim) {
        assert.equal(plain[i], null);
        assert.ok(fell[i] !== null && fell[i] !== victim);
        spread.add(fell[i]!);
      } else {
        assert.equal(plain[i], before[i]);
        assert.equal(fell[i], before[i]);
      }
    });
    // Its clients spread over the others rather than landing on one neighbour.
    assert.ok(spread.size >= 8, `fell back to ${spread.size} servers`);
    // Back: its clients come back to it, still without a rebuild.
    on(victim);
    s.update(dests);
    assert.equal(s.rebuilds, builds[0]);
    assert.deepEqual(assign(s, dests, xs), before);
  });
}

test('mh: a continuing flow reaches its quiesced or overloaded server, not a down one; with mh-fallback it goes where a new one would', () => {
  const dests = servers(5);
  const s = mh(dests);
  const f = mh(dests, { fallback: true });
  const victim = dests[2];
  const xs = clients(5000, 13).filter((x) => pick(s, dests, x) === victim);
  assert.ok(xs.length > 500);
  for (const [what, set] of [
    ['quiesced', () => (victim.weight = 0)],
    ['overloaded', () => (victim.flags = DEST_F_OVERLOAD)],
  ] as const) {
    set();
    s.update(dests);
    for (const x of xs) {
      assert.equal(pick(s, dests, x, 1, true), victim, what);
      assert.equal(pick(s, dests, x, 1, false), null, what);
      // Under a fallback, the connections opened since went elsewhere: follow the new-flow rule.
      const other = pick(f, dests, x, 1, true);
      assert.ok(other !== null && other !== victim && other === pick(f, dests, x, 1, false), `${what}, mh-fallback`);
    }
    victim.weight = 1;
    victim.flags = 0;
  }
  victim.flags = DEST_F_DOWN;
  for (const x of xs) {
    assert.equal(pick(s, dests, x, 1, true), null);
    const d = pick(f, dests, x, 1, true);
    assert.ok(d !== null && d !== victim);
  }
  // A continuing flow with every server quiesced still reaches its own.
  for (const d of dests) {
    d.flags = 0;
    d.weight = 0;
  }
  s.update(dests);
  for (const x of xs) assert.equal(pick(s, dests, x, 1, true), victim);
});

test('mh-port: the source port is hashed too, spreading one client over the servers', () => {
  const dests = servers(10);
  const s = mh(dests, { port: true });
  assert.deepEqual(s.options, { port: true });
  const c = new Map<Dest, number>();
  for (let port = 1024; port < 1024 + 10_000; port++) {
    const d = pick(s, dests, 0xc0a80001, port)!;
    assert.equal(pick(s, dests, 0xc0a80001, port), d, 'the same port, the same server');
    c.set(d, (c.get(d) ?? 0) + 1);
  }
  assert.equal(c.size, 10);
  for (const n of c.values()) assert.ok(n > 700 && n < 1300, `${n} of 10000`);
  // Without mh-port the port is not hashed: one server for all of them.
  const plain = mh(dests);
  assert.equal(new Set(Array.from({ length: 200 }, (_, i) => pick(plain, dests, 0xc0a80001, 1024 + i))).size, 1);
});

test('mh: no server available gives null at once, even with mh-fallback under a flood of new flows', () => {
  const dests = servers(100);
  const f = mh(dests, { fallback: true });
  for (const d of dests) d.flags = DEST_F_DOWN;
  const xs = clients(20_000, 17);
  const t0 = performance.now();
  for (const x of xs) assert.equal(pick(f, dests, x), null);
  const ms = performance.now() - t0;
  // The full walk would be 65537 hashes per flow (minutes here); a scan of 100 servers is not.
  assert.ok(ms < 5000, `${ms} ms for 20000 flows`);
  for (const d of dests) {
    d.flags = 0;
    d.weight = 0;
  }
  f.update(dests);
  for (const x of xs.subarray(0, 1000)) assert.equal(pick(f, dests, x), null);
  // No server ever had a positive weight: an empty table.
  const never = servers(3, 0);
  const e = mh(never, { fallback: true });
  assert.deepEqual(entryShares(e), { '-': 65537 });
  assert.equal(pick(e, never, 1), null);
  assert.equal(pick(e, never, 1, 1, true), null);
  assert.equal(pick(mh([]), [], 1), null);
});

test('mh: rebuilt only when servers or last weights change; a new list is noticed without update()', () => {
  const dests = servers(6);
  const s = mh(dests);
  assert.equal(s.rebuilds, 1);
  s.update(dests);
  s.update([...dests].reverse());
  dests[0].flags = DEST_F_OVERLOAD;
  s.update(dests);
  assert.equal(s.rebuilds, 1);
  // A weight change is a last-weight change.
  dests[1].weight = 3;
  s.update(dests);
  assert.equal(s.rebuilds, 2);
  // Quiesced, then back at another weight: the first keeps the table, the second rebuilds it.
  dests[1].weight = 0;
  s.update(dests);
  assert.equal(s.rebuilds, 2);
  dests[1].weight = 2;
  s.update(dests);
  assert.equal(s.rebuilds, 3);
  // A server added with weight 0 takes no entry; given a weight, it does.
  const before = digest(s);
  const late = server('late', 0x0a0100ff, 0);
  const more = [...dests, late];
  s.update(more);
  assert.equal(digest(s), before);
  late.weight = 1;
  s.update(more);
  assert.ok(entryShares(s).late > 0);
  // schedule() with another array, no update(): the table follows it.
  const fewer = dests.slice(1);
  const x = clients(2000, 19).find((a) => pick(s, more, a) === dests[0])!;
  const d = pick(s, fewer, x);
  assert.ok(d !== null && d !== dests[0]);
});

test('mh: the table size is per service; other sizes are refused; options are kept', () => {
  const dests = servers(10);
  const s = mh(dests, { tableSize: 4093, fallback: true });
  assert.equal(s.tableSize, 4093);
  assert.equal(s.lookupTable().length, 4093);
  assert.deepEqual(s.options, { tableSize: 4093, fallback: true });
  for (const n of Object.values(entryShares(s))) assert.ok(n > 350 && n < 470, `${n} entries of 4093`);
  assert.equal(mh(dests).tableSize, 65537);
  assert.throws(() => createScheduler('mh', { tableSize: 1000 }), /table size 1000/);
  assert.throws(() => createScheduler('mh', { tableSize: 7 }), RangeError);
});
