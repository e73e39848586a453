/**
 * Scheduler unit tests: for each IPVS scheduler, the distribution an operator would check
 * against what IPVS itself does, on a fake data plane that opens, establishes and closes
 * connections the way the real one counts them (new entry → InActConn, ESTABLISHED →
 * ActiveConn, closed → back to InActConn until it expires).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEST_F_DOWN,
  DEST_F_OVERLOAD,
  SCHEDULER_NAMES,
  createScheduler,
  getScheduler,
  schedulerNames,
  type Dest,
  type FlowInfo,
  type Scheduler,
} from '../../src/scheduler/index';
import { SH_TAB_SIZE, shBucket } from '../../src/scheduler/sh';

interface FakeDest extends Dest {
  name: string;
  addr: number;
  port: number;
  weight: number;
  flags: number;
  activeConns: number;
  inactConns: number;
}

function dest(name: string, weight: number, activeConns = 0, inactConns = 0, flags = 0): FakeDest {
  // Distinct addresses 10.0.0.x; only sh reads the *source* address, never these.
  const addr = (0x0a000000 + name.charCodeAt(0)) >>> 0;
  return { name, addr, port: 80, weight, lastWeight: weight, flags, activeConns, inactConns };
}

/** A new connection entry on d: counted inactive until established. */
function open(d: FakeDest, established: boolean): void {
  d.inactConns++;
  if (established) {
    d.inactConns--;
    d.activeConns++;
  }
}

/** An established connection on d closes (TIME_WAIT: inactive) and its entry expires. */
function closeAndExpire(d: FakeDest): void {
  d.activeConns--;
  d.inactConns++;
  d.inactConns--;
}

const flow: FlowInfo = { srcAddr: 0x0a000001, srcPort: 40000, continuing: false };

function pick(s: Scheduler, dests: FakeDest[], srcAddr = 0xc0a80001): FakeDest | null {
  flow.srcAddr = srcAddr;
  flow.srcPort = 40000;
  flow.continuing = false;
  return s.schedule(dests, flow) as FakeDest | null;
}

function make(name: string, dests: FakeDest[]): Scheduler {
  const s = createScheduler(name);
  assert.equal(s.name, name);
  s.update?.(dests);
  return s;
}

/** n new flows, each kept open (established if asked); returns the sequence of names. */
function run(s: Scheduler, dests: FakeDest[], n: number, opts: { hold?: boolean; establish?: boolean } = {}): string[] {
  const seq: string[] = [];
  for (let i = 0; i < n; i++) {
    const d = pick(s, dests, (0xc0a80000 + i) >>> 0);
    seq.push(d === null ? '-' : d.name);
    if (d !== null && opts.hold) open(d, opts.establish ?? true);
  }
  return seq;
}

function counts(seq: string[]): Record<string, number> {
  const c: Record<string, number> = {};
  for (const x of seq) c[x] = (c[x] ?? 0) + 1;
  return c;
}

// ---------------------------------------------------------------- registry

test('registry: every IPVS scheduler name is registered and creates its own scheduler', () => {
  assert.deepEqual([...schedulerNames()].sort(), [...SCHEDULER_NAMES].sort());
  for (const name of SCHEDULER_NAMES) {
    const info = getScheduler(name);
    assert.ok(info, name);
    assert.equal(info.name, name);
    assert.ok(info.description.length > 10, `${name} has a description`);
    const a = createScheduler(name);
    const b = createScheduler(name);
    assert.equal(a.name, name);
    assert.notEqual(a, b, `${name}: each service gets its own state`);
  }
});

test('registry: unknown names are refused with the list of known ones', () => {
  assert.throws(() => createScheduler('wl'), /unknown scheduler "wl".*wlc/);
  assert.throws(() => createScheduler(''), /unknown scheduler/);
  assert.equal(getScheduler('WLC'), undefined);
});

// ---------------------------------------------------------------- all schedulers

test('all schedulers: weight 0 (quiesced), DOWN and OVERLOAD dests never get a new flow', () => {
  for (const name of schedulerNames()) {
    const dests = [dest('a', 0), dest('b', 2), dest('c', 0), dest('d', 1), dest('e', 5, 0, 0, DEST_F_DOWN), dest('f', 5, 0, 0, DEST_F_OVERLOAD)];
    const s = make(name, dests);
    const c = counts(run(s, dests, 600, { hold: true, establish: true }));
    for (const bad of ['a', 'c', 'e', 'f']) assert.equal(c[bad], undefined, `${name} picked ${bad}`);
    assert.ok((c.b ?? 0) + (c.d ?? 0) > 0, `${name} picked nothing at all`);
  }
});

test('all schedulers: null when no dest can take a flow (and no endless loop)', () => {
  const lists: [string, () => FakeDest[]][] = [
    ['empty', () => []],
    ['all weight 0', () => [dest('a', 0), dest('b', 0)]],
    ['all down', () => [dest('a', 3, 0, 0, DEST_F_DOWN), dest('b', 1, 0, 0, DEST_F_DOWN)]],
    ['all overloaded', () => [dest('a', 1, 0, 0, DEST_F_OVERLOAD), dest('b', 2, 0, 0, DEST_F_OVERLOAD)]],
  ];
  for (const name of schedulerNames()) {
    for (const [what, mk] of lists) {
      const dests = mk();
      const s = make(name, dests);
      for (let i = 0; i < 5; i++) assert.equal(pick(s, dests, i * 77777), null, `${name}, ${what}`);
    }
  }
});

test('all schedulers: state from an earlier list does not leak (dests go down mid-stream, come back)', () => {
  for (const name of schedulerNames()) {
    const dests = [dest('a', 2), dest('b', 1), dest('c', 1)];
    const s = make(name, dests);
    run(s, dests, 5);
    for (const d of dests) d.flags = DEST_F_DOWN;
    // First without telling the scheduler (it must still not pick them), then with update().
    assert.equal(pick(s, dests), null, `${name} without update`);
    s.update?.(dests);
    assert.equal(pick(s, dests), null, `${name} after update`);
    for (const d of dests) d.flags = 0;
    s.update?.(dests);
    assert.notEqual(pick(s, dests, 0x01020304), null, `${name} after recovery`);
  }
});

// ---------------------------------------------------------------- rr

test('rr: a b c a b c, whatever the weights and loads', () => {
  const dests = [dest('a', 1, 50), dest('b', 5), dest('c', 2, 0, 9)];
  const s = make('rr', dests);
  assert.deepEqual(run(s, dests, 7), ['a', 'b', 'c', 'a', 'b', 'c', 'a']);
});

test('rr: skips weight 0 and DOWN dests, and continues from the last pick', () => {
  const dests = [dest('a', 1), dest('b', 0), dest('c', 1, 0, 0, DEST_F_DOWN), dest('d', 1)];
  const s = make('rr', dests);
  assert.deepEqual(run(s, dests, 5), ['a', 'd', 'a', 'd', 'a']);
  // c recovers: the rotation goes on after a, so c is next, then d.
  dests[2].flags = 0;
  s.update?.(dests);
  assert.deepEqual(run(s, dests, 4), ['c', 'd', 'a', 'c']);
  // A lone available dest keeps getting flows.
  for (const d of dests) if (d.name !== 'd') d.flags = DEST_F_DOWN;
  s.update?.(dests);
  assert.deepEqual(run(s, dests, 3), ['d', 'd', 'd']);
  for (const d of dests) d.flags = DEST_F_DOWN;
  assert.equal(pick(s, dests), null);
});

test('rr: removing the dest picked last hands the next flow to its successor', () => {
  const a = dest('a', 1),
    b = dest('b', 1),
    c = dest('c', 1),
    d = dest('d', 1);
  const dests = [a, b, c, d];
  const s = make('rr', dests);
  assert.deepEqual(run(s, dests, 2), ['a', 'b']);
  dests.splice(1, 1); // b removed: [a, c, d]
  s.update?.(dests);
  assert.deepEqual(run(s, dests, 4), ['c', 'd', 'a', 'c']);
  // The same without update(): the scheduler notices the list moved.
  const s2 = make('rr', [a, b, c, d]);
  const l2 = [a, b, c, d];
  assert.deepEqual(run(s2, l2, 3), ['a', 'b', 'c']);
  l2.splice(0, 1); // a removed in front: [b, c, d], c still was the last pick
  assert.deepEqual(run(s2, l2, 3), ['d', 'b', 'c']);
  // A dest added in front: the rotation goes on after c, not after whatever is now in c's slot.
  const e = dest('e', 1);
  l2.unshift(e); // [e, b, c, d]
  assert.deepEqual(run(s2, l2, 5), ['d', 'e', 'b', 'c', 'd']);
  const l3 = [a, b, c];
  const s3 = make('rr', l3);
  assert.deepEqual(run(s3, l3, 2), ['a', 'b']);
  l3.unshift(e, d); // [e, d, a, b, c], told this time
  s3.update?.(l3);
  assert.deepEqual(run(s3, l3, 5), ['c', 'e', 'd', 'a', 'b']);
});

// ---------------------------------------------------------------- wrr

test("wrr: weights 4:3:2 give IPVS's interleaved cycle a a b a b c a b c", () => {
  // Derivation: gcd 1, max 4. Level 4: a. Level 3: a b. Level 2: a b c. Level 1: a b c.
  const dests = [dest('a', 4), dest('b', 3), dest('c', 2)];
  const s = make('wrr', dests);
  const cycle = ['a', 'a', 'b', 'a', 'b', 'c', 'a', 'b', 'c'];
  assert.deepEqual(run(s, dests, 18), [...cycle, ...cycle]);
});

test('wrr: exact 4:3:2 proportions over 900 flows', () => {
  const dests = [dest('a', 4), dest('b', 3), dest('c', 2)];
  const s = make('wrr', dests);
  assert.deepEqual(counts(run(s, dests, 900, { hold: true })), { a: 400, b: 300, c: 200 });
});

test('wrr: weights with a common divisor step by the gcd (6:4:2 behaves as 3:2:1)', () => {
  // gcd 2, levels 5, 3, 1: level 5: a; 3: a b; 1: a b c.
  const dests = [dest('a', 6), dest('b', 4), dest('c', 2)];
  const s = make('wrr', dests);
  assert.deepEqual(run(s, dests, 12), ['a', 'a', 'b', 'a', 'b', 'c', 'a', 'a', 'b', 'a', 'b', 'c']);
  const two = [dest('x', 4), dest('y', 2)];
  const s2 = make('wrr', two);
  assert.deepEqual(run(s2, two, 6), ['x', 'x', 'y', 'x', 'x', 'y']);
});

test('wrr: equal weights are plain round robin', () => {
  const dests = [dest('a', 5), dest('b', 5), dest('c', 5)];
  const s = make('wrr', dests);
  assert.deepEqual(run(s, dests, 6), ['a', 'b', 'c', 'a', 'b', 'c']);
});

test('wrr: a DOWN dest loses its slots, the others keep exact proportions', () => {
  const dests = [dest('a', 4), dest('b', 3, 0, 0, DEST_F_DOWN), dest('c', 2)];
  const s = make('wrr', dests);
  // Level 4: a; 3: a; 2: a c; 1: a c.
  assert.deepEqual(run(s, dests, 6), ['a', 'a', 'a', 'c', 'a', 'c']);
  assert.deepEqual(counts(run(s, dests, 600)), { a: 400, c: 200 });
});

test('wrr: update() after a weight change restarts from the head with the new weights', () => {
  const dests = [dest('a', 4), dest('b', 3), dest('c', 2)];
  const s = make('wrr', dests);
  run(s, dests, 9); // one full cycle: at level 1, last pick c
  dests[0].weight = 1;
  dests[1].weight = 1;
  dests[2].weight = 2;
  s.update?.(dests);
  // Level 1 is kept (still valid): a b c, then a new cycle at level 2: c, then level 1: a b c.
  assert.deepEqual(run(s, dests, 8), ['a', 'b', 'c', 'c', 'a', 'b', 'c', 'c']);
  // Quiesce a: only b and c, 1:2.
  dests[0].weight = 0;
  s.update?.(dests);
  assert.deepEqual(counts(run(s, dests, 300)), { b: 100, c: 200 });
});

test('wrr: a new list (dest added) is picked up even without update()', () => {
  const a = dest('a', 2),
    b = dest('b', 1),
    c = dest('c', 3);
  const s = make('wrr', [a, b]);
  assert.deepEqual(run(s, [a, b], 3), ['a', 'a', 'b']);
  // c's weight 3 is above the old max: the levels must be recomputed for it to get its share.
  const bigger = [a, b, c];
  const seq = run(s, bigger, 600);
  assert.deepEqual(seq.slice(0, 9), ['a', 'b', 'c', 'c', 'a', 'c', 'a', 'b', 'c']);
  assert.deepEqual(counts(seq), { a: 200, b: 100, c: 300 });
});

test('wrr: everything overloaded mid-cycle gives null, then a fresh cycle starts', () => {
  const dests = [dest('a', 4), dest('b', 3), dest('c', 2)];
  const s = make('wrr', dests);
  assert.deepEqual(run(s, dests, 4), ['a', 'a', 'b', 'a']);
  for (const d of dests) d.flags = DEST_F_OVERLOAD; // overload is not a list change: no update()
  assert.equal(pick(s, dests), null);
  assert.equal(pick(s, dests), null);
  for (const d of dests) d.flags = 0;
  // As in IPVS, giving up leaves the walk at the head and at the top level: a whole new cycle.
  assert.deepEqual(run(s, dests, 9), ['a', 'a', 'b', 'a', 'b', 'c', 'a', 'b', 'c']);
  // Overloaded while at the lowest level, after a: the walk wraps to the top level, comes back
  // down, tries the dests up to a at level 1 and gives up there, so it resumes after a.
  assert.deepEqual(run(s, dests, 7), ['a', 'a', 'b', 'a', 'b', 'c', 'a']);
  for (const d of dests) d.flags = DEST_F_OVERLOAD;
  assert.equal(pick(s, dests), null);
  for (const d of dests) d.flags = 0;
  assert.deepEqual(run(s, dests, 11), ['b', 'c', 'a', 'a', 'b', 'a', 'b', 'c', 'a', 'b', 'c']);
});

test('wrr: update() mid-cycle keeps the level on the gcd grid and restarts from the head', () => {
  // Weights 4:2, gcd 2: levels 3 and 1 (max - (gcd - 1) down by 2), cycle x x y.
  const dests = [dest('x', 4), dest('y', 2)];
  const s = make('wrr', dests);
  assert.deepEqual(run(s, dests, 2), ['x', 'x']); // now at level 1, after x
  s.update?.(dests); // nothing changed, but IPVS restarts the walk from the head at level 1
  assert.deepEqual(run(s, dests, 5), ['x', 'y', 'x', 'x', 'y']);
  // Raising y to 4 (gcd 4, single level 1) keeps a valid level: plain alternation from the head.
  dests[1].weight = 4;
  s.update?.(dests);
  assert.deepEqual(run(s, dests, 4), ['x', 'y', 'x', 'y']);
  // 3:2 (gcd 1) at level 2, then changed to 4:2 (gcd 2, levels 3 and 1): level 2 is not a
  // level any more, so it moves up to 3 (IPVS: cw / di * di + 1) and the cycle is x x y.
  const l2 = [dest('x', 3), dest('y', 2)];
  const s2 = make('wrr', l2);
  assert.deepEqual(run(s2, l2, 2), ['x', 'x']); // levels 3: x; 2: x ...
  l2[0].weight = 4;
  s2.update?.(l2);
  assert.deepEqual(run(s2, l2, 6), ['x', 'x', 'y', 'x', 'x', 'y']);
});

// ---------------------------------------------------------------- lc

test('lc: the dest with the least overhead (active*256 + inactive) gets the flow', () => {
  // Overheads: a 2*256 = 512, b 256 + 5 = 261, c 256.
  let dests = [dest('a', 1, 2), dest('b', 1, 1, 5), dest('c', 1, 1, 0)];
  assert.equal(pick(make('lc', dests), dests)?.name, 'c');
  // 255 inactive connections still weigh less than one active one.
  dests = [dest('a', 1, 1, 0), dest('b', 1, 0, 255)];
  assert.equal(pick(make('lc', dests), dests)?.name, 'b');
  dests = [dest('a', 1, 1, 0), dest('b', 1, 0, 257)];
  assert.equal(pick(make('lc', dests), dests)?.name, 'a');
  // Weights do not matter (other than 0): a weight 100 busier server loses.
  dests = [dest('a', 100, 3), dest('b', 1, 2)];
  assert.equal(pick(make('lc', dests), dests)?.name, 'b');
});

test('lc: ties go to the first dest in the list, like IPVS', () => {
  const dests = [dest('a', 1, 1, 1), dest('b', 1, 1, 1), dest('c', 1, 1, 1)];
  assert.equal(pick(make('lc', dests), dests)?.name, 'a');
});

test('lc: held connections spread evenly; a closed connection brings that dest back first', () => {
  const dests = [dest('a', 1), dest('b', 3), dest('c', 1)];
  const s = make('lc', dests);
  assert.deepEqual(run(s, dests, 6, { hold: true }), ['a', 'b', 'c', 'a', 'b', 'c']);
  assert.deepEqual(counts(run(s, dests, 294, { hold: true })), { a: 98, b: 98, c: 98 });
  closeAndExpire(dests[2]);
  assert.equal(pick(s, dests)?.name, 'c');
  // Unestablished entries count 1/256: three half-open ones on a still leave it the least loaded
  // against 1 more active connection elsewhere.
  const fresh = [dest('a', 1), dest('b', 1)];
  const s2 = make('lc', fresh);
  open(fresh[1], true);
  assert.deepEqual(run(s2, fresh, 3, { hold: true, establish: false }), ['a', 'a', 'a']);
});

// ---------------------------------------------------------------- wlc

test('wlc: least overhead per unit of weight, not least overhead', () => {
  // a: 256/1 = 256, b: 768/4 = 192: wlc picks b where lc would pick a.
  const dests = [dest('a', 1, 1), dest('b', 4, 3)];
  assert.equal(pick(make('wlc', dests), dests)?.name, 'b');
  assert.equal(pick(make('lc', dests), dests)?.name, 'a');
  // Equal ratios (256/1 vs 512/2): the first dest keeps it.
  const tie = [dest('a', 1, 1), dest('b', 2, 2)];
  assert.equal(pick(make('wlc', tie), tie)?.name, 'a');
  const tie2 = [dest('b', 2, 2), dest('a', 1, 1)];
  assert.equal(pick(make('wlc', tie2), tie2)?.name, 'b');
});

test('wlc: weights 3:1 with connections held open end exactly 3:1', () => {
  const dests = [dest('a', 3), dest('b', 1)];
  const s = make('wlc', dests);
  // Empty: tie, a. Then b (0 < 256/3), then a until a's ratio passes b's: a b a a a b a a a b ...
  assert.deepEqual(run(s, dests, 9, { hold: true }), ['a', 'b', 'a', 'a', 'a', 'b', 'a', 'a', 'a']);
  run(s, dests, 391, { hold: true });
  assert.equal(dests[0].activeConns, 300);
  assert.equal(dests[1].activeConns, 100);
});

test('wlc: 5:3:2 over 1000 held connections, and it refills the dest whose flows ended', () => {
  const dests = [dest('a', 5), dest('b', 3), dest('c', 2)];
  const s = make('wlc', dests);
  run(s, dests, 1000, { hold: true });
  assert.deepEqual(
    dests.map((d) => d.activeConns),
    [500, 300, 200],
  );
  for (let i = 0; i < 50; i++) closeAndExpire(dests[1]);
  assert.deepEqual(counts(run(s, dests, 50, { hold: true })), { b: 50 });
});

test('wlc: skips unavailable dests even when they are the least loaded', () => {
  const dests = [dest('a', 1, 0, 0, DEST_F_DOWN), dest('b', 1, 9), dest('c', 0), dest('d', 1, 5)];
  assert.equal(pick(make('wlc', dests), dests)?.name, 'd');
});

// ---------------------------------------------------------------- sed / nq

test('sed: (active + 1) / weight, inactive connections ignored', () => {
  // Idle a (weight 1) and idle b (weight 10): 1/1 vs 1/10, the heavy one wins.
  let dests = [dest('a', 1), dest('b', 10)];
  assert.equal(pick(make('sed', dests), dests)?.name, 'b');
  // a: 1/1, b: 6/10: still b.
  dests = [dest('a', 1), dest('b', 10, 5)];
  assert.equal(pick(make('sed', dests), dests)?.name, 'b');
  // a: 1/1, b: 11/10: a.
  dests = [dest('a', 1), dest('b', 10, 10)];
  assert.equal(pick(make('sed', dests), dests)?.name, 'a');
  // Inactive entries are not counted: a with 1000 of them ties with b, and a comes first.
  dests = [dest('a', 1, 0, 1000), dest('b', 1)];
  assert.equal(pick(make('sed', dests), dests)?.name, 'a');
  assert.equal(pick(make('lc', dests), dests)?.name, 'b');
});

test('sed: weights 10:1, held connections: ten to a, then one to b', () => {
  const dests = [dest('a', 10), dest('b', 1)];
  const s = make('sed', dests);
  const seq = run(s, dests, 110, { hold: true });
  assert.deepEqual(seq.slice(0, 11), ['a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'a', 'b']);
  assert.deepEqual(counts(seq), { a: 100, b: 10 });
});

test('nq: an idle server gets the flow at once, even with a low weight', () => {
  // Same cases as sed, where nq differs:
  let dests = [dest('a', 1), dest('b', 10)];
  assert.equal(pick(make('nq', dests), dests)?.name, 'a');
  dests = [dest('a', 1), dest('b', 10, 5)];
  assert.equal(pick(make('nq', dests), dests)?.name, 'a');
  // The first idle one in the list, even after a busy one with a better ratio.
  dests = [dest('a', 100, 1), dest('b', 1, 0, 40), dest('c', 1)];
  assert.equal(pick(make('nq', dests), dests)?.name, 'b');
  assert.equal(pick(make('sed', dests), dests)?.name, 'a');
  // No idle server: exactly sed. a: 2/1, b: 6/10.
  dests = [dest('a', 1, 1), dest('b', 10, 5)];
  assert.equal(pick(make('nq', dests), dests)?.name, 'b');
  // An idle but unavailable server does not count.
  dests = [dest('a', 1, 0, 0, DEST_F_DOWN), dest('b', 10, 5), dest('c', 0)];
  assert.equal(pick(make('nq', dests), dests)?.name, 'b');
});

test('nq: weights 10:1, held connections: b is used as soon as it is idle, then sed', () => {
  const dests = [dest('a', 10), dest('b', 1)];
  const s = make('nq', dests);
  const seq = run(s, dests, 110, { hold: true });
  // a (idle), b (idle), then sed: a until (a+1)/10 > (1+1)/1, i.e. a reaches 20.
  assert.deepEqual(seq.slice(0, 3), ['a', 'b', 'a']);
  assert.equal(seq.indexOf('b', 2), 21);
  assert.deepEqual(counts(seq), { a: 100, b: 10 });
});

// ---------------------------------------------------------------- sh

/** The kernel's hash_32(addr, 8) in exact 64-bit arithmetic, to check the 32-bit JS version. */
function hash32Ref(addr: number): number {
  return Number(((BigInt(addr >>> 0) * 0x61c88647n) & 0xffffffffn) >> 24n);
}

/** One source address per bucket, found by scanning addresses. */
function addrPerBucket(): number[] {
  const rep = new Array<number>(SH_TAB_SIZE).fill(-1);
  let found = 0;
  for (let a = 0x0a000000; found < SH_TAB_SIZE; a++) {
    const b = shBucket(a);
    if (rep[b] === -1) {
      rep[b] = a;
      found++;
    }
  }
  return rep;
}

test('sh: the bucket is hash_32(source address, 8) as in the kernel', () => {
  assert.equal(shBucket(0), 0);
  assert.equal(shBucket(1), 0x61);
  for (const a of [0x0a000001, 0xc0a80101, 0xffffffff, 0x80000000, 0x7fffffff, 0xdeadbeef, 0x01020304]) {
    assert.equal(shBucket(a), hash32Ref(a), a.toString(16));
  }
  for (let i = 0; i < 10000; i++) {
    const a = Math.imul(i, 2654435761) >>> 0;
    const b = shBucket(a);
    assert.ok(Number.isInteger(b) && b >= 0 && b < SH_TAB_SIZE);
    assert.equal(b, hash32Ref(a));
  }
});

test('sh: the same client always gets the same server', () => {
  const dests = [dest('a', 1), dest('b', 1), dest('c', 1)];
  const s = make('sh', dests);
  const clients = [0x0a000001, 0x0a000002, 0xc0a80001, 0x08080808, 0xac100005, 0xfffffffe];
  const first = clients.map((c) => pick(s, dests, c)?.name);
  for (let round = 0; round < 20; round++) {
    // Loads change between rounds: sh ignores them.
    open(dests[round % 3], true);
    assert.deepEqual(
      clients.map((c) => pick(s, dests, c)?.name),
      first,
    );
  }
  // And it is the table's answer: bucket i → dests[i % 3] for equal weights.
  for (const c of clients) assert.equal(pick(s, dests, c), dests[shBucket(c) % 3]);
});

test('sh: weights 2:1 give a a b ... over the 256 buckets: exactly 171 and 85', () => {
  const dests = [dest('a', 2), dest('b', 1)];
  const s = make('sh', dests);
  const rep = addrPerBucket();
  const c: Record<string, number> = {};
  for (let b = 0; b < SH_TAB_SIZE; b++) {
    const d = pick(s, dests, rep[b]);
    assert.ok(d);
    assert.equal(d.name, b % 3 === 2 ? 'b' : 'a', `bucket ${b}`);
    c[d.name] = (c[d.name] ?? 0) + 1;
  }
  assert.deepEqual(c, { a: 171, b: 85 });
});

test('sh: a bucket whose server is down gives null, other clients do not move', () => {
  const dests = [dest('a', 1), dest('b', 1)];
  const s = make('sh', dests);
  const rep = addrPerBucket();
  dests[1].flags = DEST_F_DOWN;
  s.update?.(dests);
  for (let b = 0; b < SH_TAB_SIZE; b++) {
    assert.equal(pick(s, dests, rep[b])?.name ?? null, b % 2 === 0 ? 'a' : null, `bucket ${b}`);
  }
  // Back up: its clients come back to it.
  dests[1].flags = 0;
  s.update?.(dests);
  assert.equal(pick(s, dests, rep[1])?.name, 'b');
  // Overload is checked per flow too, without an update().
  dests[0].flags = DEST_F_OVERLOAD;
  assert.equal(pick(s, dests, rep[0]), null);
  assert.equal(pick(s, dests, rep[1])?.name, 'b');
});

test('sh: a quiesced (weight 0) dest keeps one bucket per round, as in the kernel, and it gets no flow', () => {
  const dests = [dest('a', 2), dest('q', 0), dest('c', 1)];
  const s = make('sh', dests);
  const rep = addrPerBucket();
  const c: Record<string, number> = {};
  for (let b = 0; b < SH_TAB_SIZE; b++) {
    const want = ['a', 'a', null, 'c'][b % 4];
    const got = pick(s, dests, rep[b])?.name ?? null;
    assert.equal(got, want, `bucket ${b}`);
    const k = got ?? '-';
    c[k] = (c[k] ?? 0) + 1;
  }
  assert.deepEqual(c, { a: 128, '-': 64, c: 64 });
});

test('sh: the table is rebuilt for a new list, even without update()', () => {
  const a = dest('a', 1),
    b = dest('b', 1),
    c = dest('c', 1);
  const s = make('sh', [a, b]);
  const rep = addrPerBucket();
  assert.equal(pick(s, [a, b], rep[2])?.name, 'a');
  assert.equal(pick(s, [a, b, c], rep[2])?.name, 'c');
  assert.equal(pick(s, [], rep[2]), null);
});

// ---------------------------------------------------------------- sh flags

/** ip_vs_sh_hashkey in exact 64-bit arithmetic: (offset + hash_32(port + addr, 8)) & 255. */
function shHashkeyRef(addr: number, port: number, offset: number): number {
  return (offset + hash32Ref(Number((BigInt(addr >>> 0) + BigInt(port)) & 0xffffffffn))) & 0xff;
}

/** ip_vs_sh_get_fallback over a table given as bucket → dest (the reference for sh-fallback). */
function shFallbackRef(table: (FakeDest | null)[], addr: number, port: number, ok: (d: FakeDest) => boolean): FakeDest | null {
  const ihash = shHashkeyRef(addr, port, 0);
  const d = table[ihash];
  if (d === null) return null;
  if (ok(d)) return d;
  for (let offset = 0; offset < SH_TAB_SIZE; offset++) {
    const e = table[shHashkeyRef(addr, port, (offset + ihash) % SH_TAB_SIZE)];
    if (e === null) return null;
    if (ok(e)) return e;
  }
  return null;
}

function shFlow(srcAddr: number, srcPort: number, continuing = false): FlowInfo {
  return { srcAddr, srcPort, continuing };
}

test('sh: the bucket with a port and an offset is ip_vs_sh_hashkey; port 0, offset 0 is the old bucket', () => {
  for (let i = 0; i < 5000; i++) {
    const a = Math.imul(i, 2654435761) >>> 0;
    const port = (i * 7919) & 0xffff;
    assert.equal(shBucket(a, 0, 0), shBucket(a));
    assert.equal(shBucket(a), hash32Ref(a));
    assert.equal(shBucket(a, port), shHashkeyRef(a, port, 0), `${a} ${port}`);
    assert.equal(shBucket(a, port, i & 0xff), shHashkeyRef(a, port, i & 0xff));
  }
  // port + address past 2^32 wraps as u32 arithmetic does.
  assert.equal(shBucket(0xffffffff, 2), shBucket(1));
});

test('sh: without flags the results are those of before, whatever the source port', () => {
  const dests = [dest('a', 2), dest('b', 1), dest('c', 1)];
  const plain = make('sh', dests);
  const withEmpty = createScheduler('sh', {});
  assert.deepEqual(withEmpty.options, {});
  for (let i = 0; i < 2000; i++) {
    const a = (0xc0a80000 + i * 131) >>> 0;
    // The table as before (weights 2:1:1 → a a b c per 4 buckets), and the port ignored.
    const want = dests[[0, 0, 1, 2][hash32Ref(a) % 4]];
    assert.equal(plain.schedule(dests, shFlow(a, 1000 + i)), want);
    assert.equal(plain.schedule(dests, shFlow(a, 40000)), want);
    assert.equal(withEmpty.schedule(dests, shFlow(a, i)), want);
  }
});

test('sh-port: the source port is hashed too, spreading one client over the servers', () => {
  const dests = [dest('a', 1), dest('b', 1), dest('c', 1)];
  const s = createScheduler('sh', { port: true });
  assert.deepEqual(s.options, { port: true });
  s.update?.(dests);
  const client = 0xc0a80001;
  const c: Record<string, number> = {};
  for (let port = 1024; port < 1024 + 3000; port++) {
    const d = s.schedule(dests, shFlow(client, port)) as FakeDest;
    assert.equal(d, dests[shHashkeyRef(client, port, 0) % 3], `port ${port}`);
    assert.equal(s.schedule(dests, shFlow(client, port)), d, 'the same port, the same server');
    c[d.name] = (c[d.name] ?? 0) + 1;
  }
  for (const n of ['a', 'b', 'c']) assert.ok(c[n] > 800 && c[n] < 1200, `${n}: ${c[n]} of 3000`);
  // Without sh-port, all of them go to one server.
  const plain = make('sh', dests);
  const one = new Set(Array.from({ length: 100 }, (_, i) => plain.schedule(dests, shFlow(client, 1024 + i))));
  assert.equal(one.size, 1);
});

test("sh-fallback: a client whose server cannot take the flow walks the table as IPVS's ip_vs_sh_get_fallback", () => {
  const dests = [dest('a', 1), dest('b', 1), dest('c', 1), dest('d', 1)];
  const table = Array.from({ length: SH_TAB_SIZE }, (_, b) => dests[b % 4]);
  for (const port of [false, true]) {
    const s = createScheduler('sh', { fallback: true, port });
    s.update?.(dests);
    const plain = createScheduler('sh', { port });
    plain.update?.(dests);
    dests[2].flags = DEST_F_DOWN;
    dests[3].weight = 0;
    let moved = 0;
    for (let i = 0; i < 3000; i++) {
      const a = (0x0a000000 + i * 2654435761) >>> 0;
      const p = 1024 + i;
      const hp = port ? p : 0;
      const home = table[shHashkeyRef(a, hp, 0)]!;
      const got = s.schedule(dests, shFlow(a, p)) as FakeDest;
      assert.equal(
        got,
        shFallbackRef(table, a, hp, (d) => d.weight > 0 && d.flags === 0),
        `client ${i}`,
      );
      assert.ok(got.name === 'a' || got.name === 'b');
      if (home.name === 'a' || home.name === 'b') assert.equal(got, home, 'clients of available servers stay');
      else moved++;
      // Without the flag those clients get nothing.
      assert.equal(plain.schedule(dests, shFlow(a, p)), home.name === 'a' || home.name === 'b' ? home : null);
    }
    assert.ok(moved > 1000, `${moved} clients fell back`);
    // Nothing left that can take it: null, after one walk of the table.
    dests[0].flags = DEST_F_OVERLOAD;
    dests[1].flags = DEST_F_DOWN;
    assert.equal(s.schedule(dests, shFlow(0x01020304, 5)), null);
    for (const d of dests) {
      d.flags = 0;
      d.weight = 1;
    }
  }
});

test('sh: a continuing flow reaches its quiesced or overloaded server, not a down one', () => {
  const dests = [dest('a', 1), dest('b', 1)];
  const s = make('sh', dests);
  const rep = addrPerBucket();
  dests[1].weight = 0;
  s.update?.(dests);
  assert.equal(s.schedule(dests, shFlow(rep[1], 1, false)), null);
  assert.equal(s.schedule(dests, shFlow(rep[1], 1, true)), dests[1]);
  dests[1].weight = 1;
  dests[1].flags = DEST_F_OVERLOAD;
  assert.equal(s.schedule(dests, shFlow(rep[1], 1, false)), null);
  assert.equal(s.schedule(dests, shFlow(rep[1], 1, true)), dests[1]);
  dests[1].flags = DEST_F_DOWN;
  assert.equal(s.schedule(dests, shFlow(rep[1], 1, true)), null);
  // With sh-fallback, the down server's continuing flow goes to the other one.
  const f = createScheduler('sh', { fallback: true });
  f.update?.(dests);
  assert.equal(f.schedule(dests, shFlow(rep[1], 1, true)), dests[0]);
});

// ---------------------------------------------------------------- fo

test('fo: the highest weight takes every flow; the next one only when it fails', () => {
  const dests = [dest('a', 5), dest('b', 10), dest('c', 10), dest('d', 1)];
  const s = make('fo', dests);
  // Load does not matter; equal weights: the first one.
  assert.deepEqual(counts(run(s, dests, 50, { hold: true })), { b: 50 });
  dests[1].flags = DEST_F_DOWN;
  assert.equal(pick(s, dests)?.name, 'c');
  dests[2].flags = DEST_F_OVERLOAD;
  assert.equal(pick(s, dests)?.name, 'a');
  dests[0].weight = 0;
  assert.equal(pick(s, dests)?.name, 'd');
  dests[1].flags = 0; // primary recovered: flows go back to it
  assert.equal(pick(s, dests)?.name, 'b');
});

// ---------------------------------------------------------------- ovf

test('ovf: fills the highest weight until its active connections exceed its weight, then overflows', () => {
  const dests = [dest('a', 2), dest('b', 3), dest('c', 1)];
  const s = make('ovf', dests);
  // As the kernel's `activeconns > weight` test: weight w holds w + 1 before overflowing.
  const seq = run(s, dests, 10, { hold: true });
  assert.deepEqual(seq, ['b', 'b', 'b', 'b', 'a', 'a', 'a', 'c', 'c', '-']);
  // A connection on a ends: the next flow goes back to the highest weight with room.
  closeAndExpire(dests[0]);
  assert.equal(pick(s, dests)?.name, 'a');
  closeAndExpire(dests[1]);
  closeAndExpire(dests[0]);
  assert.equal(pick(s, dests)?.name, 'b');
});

test('ovf: only active connections count; unestablished entries do not fill a server', () => {
  const dests = [dest('a', 2), dest('b', 1)];
  const s = make('ovf', dests);
  assert.deepEqual(counts(run(s, dests, 20, { hold: true, establish: false })), { a: 20 });
  assert.equal(dests[0].inactConns, 20);
  // Equal weights: the first in the list fills first.
  const eq = [dest('x', 1), dest('y', 1)];
  assert.deepEqual(run(make('ovf', eq), eq, 5, { hold: true }), ['x', 'x', 'y', 'y', '-']);
});
