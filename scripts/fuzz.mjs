// npm run fuzz -- [--minutes N | --seconds N] [--target native|ts|config|admin|all] [--runs N]
//                 [--corpus DIR] [--out FILE|-]
// Runs lbd's fuzzers for a while, one process on one core, prints what they do and any crash, and
// writes a JSON summary to bench/results/fuzz-<target>-latest.json (--out: elsewhere, - for none).
// Exit status 1 when a target crashed, 2 on a usage error.
//
// Targets: TARGETS below maps each name to the function that runs it; a target is added there.
//   native  the C++ fast path (native/src/fastpath.cc) under libFuzzer with ASan + UBSan:
//           scripts/build-fuzz.sh builds native/build/fuzz/fastpath_fuzz (native/fuzz/
//           fastpath_fuzz.cc), then it runs for the time given on native/build/fuzz/corpus (kept
//           between runs) and the generated seeds. A crash's input is copied to
//           test/fixtures/fuzz/native/, which test/fuzz/fuzz-native.test.ts replays: fix the
//           fast path until it passes.
//   ts      property-based (fast-check, test/fuzz/frames.ts): random, structured and mutated frames
//           through the TypeScript path (Forwarder.process) and through both paths at once (the
//           differential); a failing scenario is written to test/fixtures/fuzz/ts/, which
//           test/unit/fuzz-ts.test.ts replays.
//   config  parseConfig on random and mutated YAML (test/fuzz/config.ts) → test/fixtures/fuzz/config/
//   admin   the admin schema and server on random request lines (test/fuzz/admin.ts) → test/fixtures/fuzz/admin/
//           (--seed N repeats a TypeScript target's run.)
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const helper = path.join(root, 'dist/src/host/programs.js');
if (!existsSync(helper)) {
  console.error('fuzz: not built yet: npm run build (or bash scripts/setup.sh)');
  process.exit(2);
}
// Programs start through lbd's one helper (src/host/programs.ts), compiled by the build.
const { runSync, spawnProgram } = (await import(pathToFileURL(helper).href)).default;

// ---- arguments ----
const usage = 'usage: npm run fuzz -- [--minutes N | --seconds N] [--target native|ts|config|admin|all] [--runs N] [--corpus DIR] [--out FILE|-] [--seed N]';
const opts = { seconds: 60, target: 'native', runs: 0, corpus: '', out: '', seed: 0 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const [flag, inline] = argv[i].split('=', 2);
  const value = () => inline ?? argv[++i];
  const number = () => {
    const n = Number(value());
    if (!Number.isFinite(n) || n <= 0) fail(`${flag} needs a positive number`);
    return n;
  };
  if (flag === '--minutes') opts.seconds = Math.round(number() * 60);
  else if (flag === '--seconds') opts.seconds = Math.round(number());
  else if (flag === '--target') opts.target = value();
  else if (flag === '--runs') opts.runs = Math.round(number());
  else if (flag === '--corpus') opts.corpus = path.resolve(value());
  else if (flag === '--out') opts.out = value();
  else if (flag === '--seed') opts.seed = Math.round(number());
  else if (flag === '--help' || flag === '-h') {
    console.log(usage);
    process.exit(0);
  } else fail(`unknown argument ${argv[i]}`);
}
function fail(msg) {
  console.error(`fuzz: ${msg}\n${usage}`);
  process.exit(2);
}

// ---- the native target ----
const FUZZ_DIR = path.join(root, 'native/build/fuzz');
const FIXTURES = path.join(root, 'test/fixtures/fuzz/native');
/** libFuzzer's largest input: room for a few super-frames, short enough to mutate quickly. */
const MAX_LEN = 8192;

/** The numbers of a libFuzzer status line: "#N <event> cov: C ft: F corp: U/SIZE ... exec/s: E rss: RMb". */
function statusOf(line) {
  const m = /^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)\/(\d+)(b|Kb|Mb)/.exec(line);
  if (!m) return null;
  const unit = { b: 1, Kb: 1024, Mb: 1024 * 1024 }[m[7]];
  return { executions: Number(m[1]), event: m[2], cov: Number(m[3]), ft: Number(m[4]), units: Number(m[5]), bytes: Number(m[6]) * unit };
}

function dirStats(dir) {
  let units = 0;
  let bytes = 0;
  for (const f of existsSync(dir) ? readdirSync(dir) : []) {
    const st = statSync(path.join(dir, f));
    if (!st.isFile()) continue;
    units++;
    bytes += st.size;
  }
  return { units, bytes };
}

async function fuzzNative({ seconds, runs, corpus: corpusOpt }) {
  console.log('fuzz native: building (scripts/build-fuzz.sh)');
  const build = runSync('bash', [path.join(root, 'scripts/build-fuzz.sh')], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  if (build.status !== 0) throw new Error('scripts/build-fuzz.sh failed');
  const clang = runSync('clang++', ['--version']).stdout.split('\n')[0].trim();
  const corpus = corpusOpt || path.join(FUZZ_DIR, 'corpus');
  const seeds = path.join(FUZZ_DIR, 'gen/seeds');
  const artifacts = path.join(FUZZ_DIR, 'artifacts');
  for (const d of [corpus, artifacts]) mkdirSync(d, { recursive: true });
  const args = [
    `-max_total_time=${seconds}`,
    ...(runs > 0 ? [`-runs=${runs}`] : []),
    `-max_len=${MAX_LEN}`,
    `-dict=${path.join(FUZZ_DIR, 'gen/fastpath.dict')}`,
    `-artifact_prefix=${artifacts}/`,
    '-timeout=10',
    '-rss_limit_mb=2048',
    '-print_final_stats=1',
    corpus,
    seeds,
  ];
  console.log(`fuzz native: ${clang}; fastpath_fuzz ${args.join(' ')}`);
  const started = Date.now();
  const child = spawnProgram('fastpath_fuzz', args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  const stats = {};
  let last = null;
  let inited = null;
  const crashes = [];
  const errors = [];
  let pending = '';
  let lastPrint = 0;
  const onLine = (line) => {
    const s = statusOf(line);
    if (s) {
      last = s;
      if (s.event === 'INITED') inited = s;
      // The pulses (doubling), INITED and DONE; NEW/REDUCE lines every 10 s at most.
      if (s.event !== 'NEW' && s.event !== 'REDUCE') console.log(`  ${line}`);
      else if (Date.now() - lastPrint > 10_000) {
        lastPrint = Date.now();
        console.log(`  ${line}`);
      }
      return;
    }
    const st = /^stat::(\w+):\s+(\d+)/.exec(line);
    if (st) {
      stats[st[1]] = Number(st[2]);
      return;
    }
    const art = /Test unit written to (\S+)/.exec(line);
    if (art) crashes.push({ artifact: art[1] });
    if (/ERROR: |runtime error:|check failed|SUMMARY: |deadly signal|Test unit written|fuzz target exited|ABORTING/.test(line)) {
      errors.push(line);
      console.log(`  ${line}`);
    }
  };
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    pending += d;
    const lines = pending.split('\n');
    pending = lines.pop();
    lines.forEach(onLine);
  });
  const status = await new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  if (pending) onLine(pending);
  const duration = (Date.now() - started) / 1000;

  // Every crash becomes a fixture the replay test runs.
  for (const c of crashes) {
    mkdirSync(FIXTURES, { recursive: true });
    c.fixture = path.relative(root, path.join(FIXTURES, path.basename(c.artifact)));
    copyFileSync(c.artifact, path.join(root, c.fixture));
    c.artifact = path.relative(root, c.artifact);
    console.log(`fuzz native: CRASH: its input is ${c.fixture} (replay: ${path.relative(root, path.join(FUZZ_DIR, 'fastpath_fuzz'))} ${c.fixture})`);
  }
  if (status.code !== 0 && crashes.length === 0) {
    throw new Error(`fastpath_fuzz ended with ${status.code ?? status.signal} and no crash input:\n${errors.join('\n')}`);
  }
  const executions = stats.number_of_executed_units ?? last?.executions ?? 0;
  const dir = dirStats(corpus);
  const summary = {
    target: 'native',
    date: new Date(started).toISOString(),
    durationSeconds: Math.round(duration * 10) / 10,
    requestedSeconds: seconds,
    executions,
    execPerSecond: Math.round(executions / Math.max(duration, 1e-3)),
    libFuzzerExecPerSecond: stats.average_exec_per_sec ?? null,
    coverage: { edges: last?.cov ?? null, features: last?.ft ?? null, atStart: inited && { edges: inited.cov, features: inited.ft } },
    corpus: {
      units: last?.units ?? null,
      bytes: last?.bytes ?? null,
      directory: path.relative(root, corpus) || corpus,
      files: dir.units,
      fileBytes: dir.bytes,
    },
    newUnits: stats.new_units_added ?? null,
    peakRssMb: stats.peak_rss_mb ?? null,
    crashes,
    errors,
    clang,
    build: '-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -g -O1',
    options: { maxLen: MAX_LEN, jobs: 1, timeoutSeconds: 10 },
    seeds: dirStats(seeds).units,
    host: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? null },
  };
  console.log(
    `fuzz native: ${executions} executions in ${summary.durationSeconds} s (${summary.execPerSecond}/s), coverage ${summary.coverage.edges} edges / ${summary.coverage.features} features, corpus ${summary.corpus.units} units, ${crashes.length} crash${crashes.length === 1 ? '' : 'es'}`,
  );
  return summary;
}

// ---- the TypeScript targets (test/fuzz/targets.ts, fast-check) ----
/** ts, config, admin: the compiled runner of test/fuzz/targets.ts; --seed N to repeat a run. */
async function fuzzTypeScript(name, { seconds, seed }) {
  const runner = path.join(root, 'dist/test/fuzz/targets.js');
  if (!existsSync(runner)) throw new Error('dist/test/fuzz/targets.js is missing: npx tsc -p . (or npm run build)');
  const targets = (await import(pathToFileURL(runner).href)).default;
  return targets[`${name}Target`]({ seconds, seed: seed || undefined, root });
}

/** Each target's runner: (opts) => summary (with a crashes array). Add a target here. */
const TARGETS = {
  native: fuzzNative,
  ts: (o) => fuzzTypeScript('ts', o),
  config: (o) => fuzzTypeScript('config', o),
  admin: (o) => fuzzTypeScript('admin', o),
};

const names = opts.target === 'all' ? Object.keys(TARGETS) : [opts.target];
if (!names.every((n) => n in TARGETS)) fail(`unknown target ${opts.target} (${[...Object.keys(TARGETS), 'all'].join(', ')})`);
let crashed = false;
for (const name of names) {
  const run = TARGETS[name];
  if (run === null) {
    if (opts.target === 'all') {
      console.log(`fuzz ${name}: not implemented yet: skipped`);
      continue;
    }
    fail(`target ${name} is not implemented yet (scripts/fuzz.mjs TARGETS)`);
  }
  const summary = await run(opts);
  if (summary.crashes.length) crashed = true;
  const out =
    opts.out === ''
      ? path.join(root, `bench/results/fuzz-${name}-latest.json`)
      : opts.out === '-'
        ? null
        : path.resolve(opts.target === 'all' ? opts.out.replace(/(\.json)?$/, `-${name}$1`) : opts.out);
  if (out) {
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(summary, null, 2) + '\n');
    console.log(`fuzz ${name}: summary in ${path.relative(process.cwd(), out) || out}`);
  }
}
process.exit(crashed ? 1 : 0);
