/**
 * The property-based fuzzing of the TypeScript data path and of the differential run
 * (test/fuzz/frames.ts), as a smoke with a fixed seed: a few thousand frames through both, every
 * frame of a few kinds cut at every offset, and every stored failing scenario
 * (test/fixtures/fuzz/ts/*.json) replayed. The long run: npm run fuzz -- --target ts --minutes N.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { loadNative } from '../../src/dataplane/native';
import { type FrameCase, type Scenario, checkDifferential, checkTs, fuzzFrames, pcapFixtures, readFixtures } from '../fuzz/frames';
import { ACK, PSH, SYN, frame } from '../helpers/frames';
import { arpRequest } from '../../src/dataplane/arp';
import { ipToInt, macFromString } from '../../src/dataplane/packet';
import { MAC } from '../helpers/frames';

const FIXTURES = path.resolve(__dirname, '../../../test/fixtures');
const STORED = path.join(FIXTURES, 'fuzz/ts');

function addon(): void {
  const load = loadNative();
  if (!load.ok) assert.fail(`the native addon must be built and loadable (bash scripts/setup.sh): ${load.reason}`);
}

test('fuzz (smoke, fixed seed): the TypeScript path and the differential hold every property on a few thousand frames', async () => {
  addon();
  const fixtures = await pcapFixtures(FIXTURES);
  const r = await fuzzFrames(fixtures, { seed: 0x1bd5, frames: 4000, properties: ['ts', 'differential'], runsPerRound: 10, shape: { batch: 48, steps: 8 } });
  assert.deepEqual(
    r.failures.map((f) => `${f.property} (seed ${f.seed}): ${f.error}`),
    [],
  );
  assert.ok(r.frames >= 4000, `${r.frames} frames`);
});

test('fuzz: frames of every kind cut at every offset, through the TypeScript path and the differential', () => {
  addon();
  const zero = undefined;
  const vnet = Buffer.from([1, 1, 54, 0, 0xa8, 0x05, 34, 0, 16, 0]); // NEEDS_CSUM, TCPV4, gso_size 1448, csum 34+16
  const whole: FrameCase[] = [
    { frame: frame({ flags: SYN, sport: 40001 }) },
    { frame: frame({ flags: ACK | PSH, sport: 40001, payload: Buffer.alloc(100, 1), ipOptions: Buffer.from([1, 1, 1, 0]) }) },
    { frame: frame({ proto: 'udp', dst: '10.0.10.101', dport: 53, sport: 40002, payload: Buffer.from('query') }) },
    { frame: frame({ flags: ACK, sport: 40001, payload: Buffer.alloc(4000, 7) }), vnet },
    { frame: Buffer.from(arpRequest(macFromString(MAC.client), ipToInt('10.0.10.50'), ipToInt('10.0.10.100'))) },
  ];
  // An ICMP "fragmentation needed" about the first flow's reply.
  const q = Buffer.alloc(28);
  q[0] = 0x45;
  q.writeUInt16BE(40, 2);
  q[9] = 6;
  q.writeUInt32BE(ipToInt('10.0.10.100'), 12);
  q.writeUInt32BE(ipToInt('10.0.10.50'), 16);
  q.writeUInt16BE(80, 20);
  q.writeUInt16BE(40001, 22);
  whole.push({ frame: frame({ proto: 1, src: '10.0.20.1', payload: Buffer.concat([Buffer.from([3, 4, 0, 0, 0, 0, 5, 0x78]), q]) }) });
  const cut: FrameCase[] = [];
  for (const w of whole) for (let n = 0; n <= Math.min(w.frame.length, 120); n++) cut.push({ frame: w.frame.subarray(0, n), vnet: w.vnet ?? zero });
  // The SYN first, so that the cut frames of its flow find an entry.
  const sc: Scenario = {
    size: 4096,
    softwareEgress: false,
    steps: [
      { kind: 'frames', frames: [whole[0]] },
      { kind: 'frames', frames: cut },
    ],
  };
  assert.equal(checkTs(sc), cut.length + 1);
  assert.equal(checkTs({ ...sc, softwareEgress: true }), cut.length + 1);
  assert.equal(checkDifferential(sc), cut.length + 1);
});

test('fuzz: every stored failing scenario (test/fixtures/fuzz/ts) now passes', () => {
  addon();
  for (const f of readFixtures(STORED)) {
    try {
      if (f.property === 'ts') checkTs(f.scenario);
      else checkDifferential(f.scenario);
    } catch (e) {
      assert.fail(`${f.file}: ${(e as Error).message}`);
    }
  }
});
