/**
 * The TypeScript fuzz targets of scripts/fuzz.mjs (`npm run fuzz -- --target ts|config|admin`):
 * each runs its properties for the time given and returns the summary fuzz.mjs writes to
 * bench/results/fuzz-<target>-latest.json. A failing input becomes a fixture under
 * test/fixtures/fuzz/<target>/, which the unit tests replay.
 */
import os from 'node:os';
import path from 'node:path';
import { fuzzAdmin, adminStats } from './admin';
import { configSeeds, configStats, fuzzConfig, CONFIG_TIME_LIMIT_MS } from './config';
import { fuzzFrames, pcapFixtures, stats } from './frames';

export interface TargetOptions {
  seconds: number;
  /** Base seed (each fast-check round takes the next); default from the clock. */
  seed?: number;
  root: string;
}

interface Failure {
  seed: number;
  error: string;
  fixture?: string;
}

function common(target: string, o: TargetOptions, seed: number, started: number) {
  return {
    target,
    date: new Date(started).toISOString(),
    durationSeconds: Math.round((Date.now() - started) / 100) / 10,
    requestedSeconds: o.seconds,
    seed,
    engine: 'fast-check',
    node: process.version,
    host: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? null },
  };
}

const rel = (root: string, failures: Failure[]) => failures.map((f) => ({ ...f, fixture: f.fixture && path.relative(root, f.fixture) }));

export async function tsTarget(o: TargetOptions) {
  const started = Date.now();
  const seed = o.seed ?? started % 0x7fffffff;
  const fixtures = await pcapFixtures(path.join(o.root, 'test/fixtures'));
  console.log(
    `fuzz ts: seed ${seed}, ${o.seconds} s: the TypeScript path and the differential (TypeScript vs native) in turn; ${fixtures.length} pcap frames to mutate`,
  );
  const r = await fuzzFrames(fixtures, {
    seed,
    deadline: started + o.seconds * 1000,
    properties: ['ts', 'differential'],
    runsPerRound: 50,
    shape: { batch: 96, steps: 14 },
    fixtureDir: path.join(o.root, 'test/fixtures/fuzz/ts'),
    maxFailures: 10,
    log: (s) => console.log(s),
  });
  const failures = rel(o.root, r.failures);
  const summary = {
    ...common('ts', o, seed, started),
    frames: r.frames,
    framesByProperty: { ts: r.byProperty.ts ?? 0, differential: r.byProperty.differential ?? 0 },
    scenarios: r.scenarios,
    propertiesChecked: r.propertiesChecked,
    properties: [
      'process() never throws; every frame gets a verdict (forward, drop, arp)',
      'a drop is counted under exactly one reason (an ICMP error over its rate limit under icmp rate_limited), a forward under none, ARP in arp_frames and handed over',
      'received = forwarded + dropped by reason + ARP + ICMP rate-limited; RxBytes = the bytes received; TxFrames = forwarded (header-carrying egress)',
      'a forwarded frame: only its MACs changed (a real server’s, from the egress interface); without a header-carrying egress: a partial checksum completed (2 bytes), a super-frame cut into segments ≤ gso_size carrying its payload in order with valid IP checksums',
      'connection and template tables consistent: size = occupied slots ≤ capacity, every entry found at its key, valid fields; ActiveConn/InActConn, persistent counts and template references equal to the entries',
      'differential: identical verdicts, output frames and virtio-net headers, ARP hand-offs, drops, counters, tables, per-server and per-service counters after every step',
    ],
    // Verdicts and counters of the TypeScript-path property's frames (the differential's are compared, not tallied).
    coverage: stats.coverage,
    failures,
    crashes: failures,
  };
  console.log(
    `fuzz ts: ${r.frames} frames (${summary.framesByProperty.ts} TypeScript path, ${summary.framesByProperty.differential} differential) in ${r.scenarios} scenarios, ${r.propertiesChecked} properties checked, ${failures.length} failures, ${summary.durationSeconds} s`,
  );
  return summary;
}

export async function configTarget(o: TargetOptions) {
  const started = Date.now();
  const seed = o.seed ?? started % 0x7fffffff;
  console.log(`fuzz config: seed ${seed}, ${o.seconds} s: parseConfig on random and mutated YAML`);
  const r = await fuzzConfig(configSeeds(o.root), {
    seed,
    deadline: started + o.seconds * 1000,
    runsPerRound: 200,
    fixtureDir: path.join(o.root, 'test/fixtures/fuzz/config'),
    maxFailures: 10,
    log: (s) => console.log(s),
  });
  const failures = rel(o.root, r.failures);
  const summary = {
    ...common('config', o, seed, started),
    inputs: r.inputs,
    accepted: configStats.accepted,
    refused: configStats.refused,
    issues: configStats.issues,
    slowestMs: Math.round(configStats.slowestMs),
    timeLimitMs: CONFIG_TIME_LIMIT_MS,
    propertiesChecked: r.propertiesChecked,
    properties: [
      'parseConfig returns a Config or throws ConfigError (E_CONFIG), never another exception',
      'every issue: the file, line ≥ 1 and column ≥ 1 within the text, a field path (none only for YAML syntax and the document’s shape), a non-empty message; formatted file:line:col path: message',
      `each input within ${CONFIG_TIME_LIMIT_MS} ms`,
    ],
    failures,
    crashes: failures,
  };
  console.log(
    `fuzz config: ${r.inputs} inputs (${configStats.accepted} accepted, ${configStats.refused} refused), ${r.propertiesChecked} properties checked, ${failures.length} failures, ${summary.durationSeconds} s`,
  );
  return summary;
}

export async function adminTarget(o: TargetOptions) {
  const started = Date.now();
  const seed = o.seed ?? started % 0x7fffffff;
  console.log(`fuzz admin: seed ${seed}, ${o.seconds} s: parseRequest, and request lines pipelined to an AdminServer on a daemon`);
  const r = await fuzzAdmin({
    seed,
    deadline: started + o.seconds * 1000,
    runsPerRound: 100,
    fixtureDir: path.join(o.root, 'test/fixtures/fuzz/admin'),
    maxFailures: 10,
    log: (s) => console.log(s),
  });
  const failures = rel(o.root, r.failures);
  const summary = {
    ...common('admin', o, seed, started),
    inputs: r.inputs,
    schemaValues: adminStats.values,
    serverLines: adminStats.lines,
    answersByCode: { ok: adminStats.answers - Object.values(adminStats.byCode).reduce((a, b) => a + b, 0), ...adminStats.byCode },
    propertiesChecked: r.propertiesChecked,
    properties: [
      'parseRequest: a request of the schema, or AdminError E_USAGE naming the field (cmd, op, args, a field) — never another exception',
      'the server answers every non-blank line in order with one JSON line: a result or an error code of lbd’s set, never E_INTERNAL; the schema’s refusals with its very message; non-JSON with "a request is one JSON object per line"',
      'the server keeps answering: a ping after every batch, on the same and on a new connection',
    ],
    failures,
    crashes: failures,
  };
  console.log(
    `fuzz admin: ${r.inputs} inputs (${adminStats.values} schema values, ${adminStats.lines} server lines), ${r.propertiesChecked} properties checked, ${failures.length} failures, ${summary.durationSeconds} s`,
  );
  return summary;
}
