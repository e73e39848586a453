/**
 * The native fast path's fuzz target (native/fuzz/fastpath_fuzz.cc: fastpath.cc under libFuzzer,
 * ASan and UBSan, without Node): it builds (scripts/build-fuzz.sh, clang), every input that ever
 * crashed it (test/fixtures/fuzz/native/, where `npm run fuzz` copies each crash) and every seed
 * replays without a crash, and a short run of the driver (scripts/fuzz.mjs, ~20 s) executes inputs,
 * finds coverage and no crash. A clang build and 20 s of fuzzing: its own group in
 * scripts/run-tests.mjs, run once after the unit tests (not on every Node major), root or not.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, programPath, runSync } from '../../src/host/programs';

const FIXTURES = path.join(REPO_ROOT, 'test/fixtures/fuzz/native');
const SEEDS = path.join(REPO_ROOT, 'native/build/fuzz/gen/seeds');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-fuzz-native-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The files of a directory, sorted (not the fixtures' README). */
const filesOf = (dir: string): string[] =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir)
        .filter((f) => !f.endsWith('.md') && fs.statSync(path.join(dir, f)).isFile())
        .sort()
        .map((f) => path.join(dir, f))
    : [];

test('the fuzz target builds with clang, libFuzzer, ASan and UBSan (scripts/build-fuzz.sh)', { timeout: 300_000 }, () => {
  const r = runSync('bash', [path.join(REPO_ROOT, 'scripts/build-fuzz.sh')], { cwd: REPO_ROOT });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(fs.statSync(programPath('fastpath_fuzz')).isFile());
  assert.ok(filesOf(SEEDS).length >= 40, 'the seeds were generated');
});

test('every crash input kept as a fixture, and every seed, replays without a crash', { timeout: 120_000 }, () => {
  const inputs = [...filesOf(FIXTURES), ...filesOf(SEEDS)];
  // libFuzzer runs each file given once (no fuzzing), and stops at the first that crashes.
  const r = runSync('fastpath_fuzz', inputs, { cwd: tmp, timeoutMs: 100_000 });
  const ran = r.stderr.match(/^Executed .* in \d+ ms$/gm) ?? [];
  assert.equal(r.status, 0, `a fixture crashed the fast path:\n${r.stderr.split('\n').slice(-40).join('\n')}`);
  assert.equal(ran.length, inputs.length, r.stderr);
});

test('a short fuzzing run (npm run fuzz): inputs executed, coverage, no crash', { timeout: 300_000 }, () => {
  const out = path.join(tmp, 'summary.json');
  const r = runSync(
    'node',
    [path.join(REPO_ROOT, 'scripts/fuzz.mjs'), '--target', 'native', '--seconds', '20', '--runs', '200000', '--corpus', path.join(tmp, 'corpus'), '--out', out],
    { cwd: REPO_ROOT, timeoutMs: 240_000 },
  );
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  const s = JSON.parse(fs.readFileSync(out, 'utf8')) as {
    executions: number;
    crashes: unknown[];
    coverage: { edges: number; features: number };
    corpus: { units: number };
    clang: string;
  };
  assert.deepEqual(s.crashes, []);
  assert.ok(s.executions > 1000, `executions: ${s.executions}`);
  assert.ok(s.coverage.edges > 100 && s.coverage.features > s.coverage.edges, JSON.stringify(s.coverage));
  assert.ok(s.corpus.units > 0);
  assert.match(s.clang, /clang version/);
});
