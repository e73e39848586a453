/**
 * The package as a host without a compiler gets it: `npm pack` (its prepack builds the TypeScript
 * and the prebuilt binaries) makes a tarball with what lbd runs on and nothing of the repository
 * besides; `npm install -g` of it installs the runtime dependencies only and runs no install
 * script, so it needs no compiler; the installed `lbd` runs with nothing but Node on PATH and
 * loads the binding the package ships in prebuilds/. Slower than a unit test (a build, an
 * install): its own group in scripts/run-tests.mjs, after the unit tests, root or not.
 *
 * The tarball is packed here exactly as a release is, prepack and all, when this machine has the
 * cross compiler for the other architecture (the "release" list of src/host/programs.json);
 * without it (setup does not install it), with prepack's two steps run here and the prebuild
 * limited to this machine's architecture, then `npm pack --ignore-scripts`.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, runSync, type RunResult } from '../../src/host/programs';

const PKG = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const ARCH = process.arch;
const OTHER_ARCH = ARCH === 'x64' ? 'arm64' : 'x64';
/** The cross compiler for the other architecture's prebuilt binary (scripts/compile-native.sh). */
const CROSS_CXX = OTHER_ARCH === 'arm64' ? 'aarch64-linux-gnu-g++' : 'x86_64-linux-gnu-g++';
const NODE_DIR = path.dirname(process.execPath);
/** What the installed lbd runs with: Node.js and the system's programs, nothing of this repository or a build toolchain. */
const BARE_PATH = `${NODE_DIR}:/usr/bin:/bin`;
const EXAMPLE = path.join(REPO_ROOT, 'examples/lb.yaml');

/** Building needs the developer's PATH (compilers), with the Node.js that runs this test first; npm's own variables of an `npm test` are left out. */
const BUILD_ENV: NodeJS.ProcessEnv = {
  HOME: process.env.HOME ?? os.homedir(),
  PATH: `${NODE_DIR}:${process.env.PATH ?? '/usr/bin:/bin'}`,
  ...(process.env.CXX ? { CXX: process.env.CXX } : {}),
};
const BARE_ENV: NodeJS.ProcessEnv = { HOME: BUILD_ENV.HOME, PATH: BARE_PATH };
const NPM_QUIET = ['--no-audit', '--no-fund', '--no-update-notifier'];

/** What the tarball must hold (paths inside package/). */
const REQUIRED = [
  'package.json',
  'README.md',
  'bin/lbd',
  'dist/src/cli/main.js',
  'dist/src/version.js',
  'dist/src/dataplane/binding.js',
  // read next to the compiled code: programs.ts imports it, announce.ts forks the keeper
  'dist/src/host/programs.json',
  'dist/src/host/announce-keeper.js',
  `prebuilds/linux-${ARCH}/lbd_native.node`,
  'examples/lb.yaml',
  'contrib/systemd/lbd.service',
  'contrib/bird/balancer.conf',
  'contrib/bird/router.conf',
  'contrib/grafana/lbd-dashboard.json',
  'schema/lb.yaml.schema.json',
];
/** The manual pages (scripts/build-man.sh, part of npm run build); package.json's man installs them. */
const MAN_PAGES = ['dist/man/lbd.8', 'dist/man/lb.yaml.5'];
/** Nothing else: every path in the tarball starts with one of these. */
const ALLOWED = [
  'package.json',
  'README.md',
  'LICENSE',
  'bin/',
  'dist/src/',
  'dist/man/',
  'prebuilds/linux-x64/lbd_native.node',
  'prebuilds/linux-arm64/lbd_native.node',
  'examples/lb.yaml',
  'contrib/',
  'schema/',
];
/** Never: what only the repository needs (named for a clear message; ALLOWED already keeps them out). */
const FORBIDDEN = /^(test|lab|bench|node_modules|native|src|scripts|docs|dist\/(test|lab|bench))\/|\.js\.map$|\.ts$/;

const scratch = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-package-')));
const packDir = path.join(scratch, 'pack');
const prefix = path.join(scratch, 'prefix');
fs.mkdirSync(packDir);
after(() => fs.rmSync(scratch, { recursive: true, force: true }));

const installed = path.join(prefix, 'lib/node_modules', PKG.name);
const lbdBin = path.join(prefix, 'bin/lbd');
let tarball: string | undefined;
let installedOk = false;

function ok(r: RunResult, what: string): void {
  assert.equal(r.status, 0, `${what}: ${r.status === null ? `signal ${r.signal}` : `exit ${r.status}`}\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
}

/** The installed lbd started as a user starts it: by its bin link, its #!/usr/bin/env node finding node in PATH. */
function lbd(args: string[]): RunResult {
  return runSync('sh', ['-c', 'exec "$0" "$@"', lbdBin, ...args], { env: BARE_ENV, cwd: scratch, timeoutMs: 60_000 });
}

/** Every file under dir (relative, '/'-separated), sorted. */
function filesUnder(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) out.push(...filesUnder(dir, r));
    else out.push(r);
  }
  return out.sort();
}

test('npm pack: what lbd runs on (the compiled code, both prebuilt binaries, configs, schema), nothing of the repository besides', (t) => {
  const cross = runSync('sh', ['-c', 'command -v "$0"', CROSS_CXX], { env: BUILD_ENV }).status === 0;
  const started = Date.now();
  if (cross) {
    ok(runSync('npm', ['pack', '--pack-destination', packDir, ...NPM_QUIET], { cwd: REPO_ROOT, env: BUILD_ENV }), 'npm pack (prepack: build, prebuild)');
  } else {
    t.diagnostic(`${CROSS_CXX} not installed (the release list): packing with the linux-${ARCH} binary alone, prepack's steps run here`);
    assert.match(PKG.scripts.prepack, /^npm run build && bash scripts\/prebuild\.sh$/, 'prepack is what this test runs in its place');
    ok(runSync('npm', ['run', 'build'], { cwd: REPO_ROOT, env: BUILD_ENV }), 'npm run build');
    ok(runSync('bash', ['scripts/prebuild.sh', ARCH], { cwd: REPO_ROOT, env: BUILD_ENV }), `prebuild.sh ${ARCH}`);
    ok(runSync('npm', ['pack', '--ignore-scripts', '--pack-destination', packDir, ...NPM_QUIET], { cwd: REPO_ROOT, env: BUILD_ENV }), 'npm pack');
  }
  const packed = fs.readdirSync(packDir).filter((f) => f.endsWith('.tgz'));
  assert.deepEqual(packed, [`${PKG.name}-${PKG.version}.tgz`]);
  tarball = path.join(packDir, packed[0]);

  const list = runSync('tar', ['-tzf', tarball]);
  ok(list, 'tar -tzf');
  const entries = list.stdout.split('\n').filter((l) => l && !l.endsWith('/'));
  assert.ok(
    entries.every((e) => e.startsWith('package/')),
    'every entry under package/',
  );
  const files = entries.map((e) => e.slice('package/'.length)).sort();
  t.diagnostic(`${path.basename(tarball)}: ${files.length} files, ${fs.statSync(tarball).size} bytes, packed in ${Date.now() - started} ms`);

  const required = [...REQUIRED, ...MAN_PAGES, ...(cross ? [`prebuilds/linux-${OTHER_ARCH}/lbd_native.node`] : [])];
  assert.deepEqual(
    required.filter((f) => !files.includes(f)),
    [],
    'missing from the tarball',
  );
  assert.deepEqual(
    files.filter((f) => FORBIDDEN.test(f)),
    [],
    'the repository only: test/, lab/, bench/, native/ (sources and the local build), sources, source maps',
  );
  assert.deepEqual(
    files.filter((f) => !ALLOWED.some((a) => (a.endsWith('/') ? f.startsWith(a) : f === a))),
    [],
    'not in the allow-list',
  );
  // all of the compiled code (programs.json with it), none of its source maps (they point at src/*.ts, not shipped)
  const built = filesUnder(path.join(REPO_ROOT, 'dist/src'))
    .filter((f) => !f.endsWith('.js.map'))
    .map((f) => `dist/src/${f}`);
  assert.deepEqual(
    files.filter((f) => f.startsWith('dist/src/')),
    built,
  );
  // the manual pages, not their scdoc sources (the build's intermediate files)
  assert.deepEqual(
    files.filter((f) => f.startsWith('dist/man/')),
    [...MAN_PAGES].sort(),
  );
  for (const dir of ['contrib', 'schema']) {
    assert.deepEqual(
      files.filter((f) => f.startsWith(`${dir}/`)),
      filesUnder(path.join(REPO_ROOT, dir)).map((f) => `${dir}/${f}`),
      `all of ${dir}/`,
    );
  }
});

test('npm install -g of the tarball: the runtime dependencies only, no install script, nothing to compile', () => {
  assert.ok(tarball, 'packed');
  for (const s of ['preinstall', 'install', 'postinstall', 'prepare']) assert.equal(PKG.scripts[s], undefined, `package.json has no ${s} script`);
  const r = runSync('npm', ['install', '--global', '--prefix', prefix, '--prefer-offline', ...NPM_QUIET, tarball!], { cwd: scratch, env: BARE_ENV });
  ok(r, 'npm install -g');
  installedOk = true;
  assert.equal(fs.readlinkSync(lbdBin), `../lib/node_modules/${PKG.name}/bin/lbd`);
  // package.json's man: `man lbd` and `man lb.yaml` find them under the prefix
  for (const page of MAN_PAGES) {
    const name = path.basename(page);
    assert.ok(fs.existsSync(path.join(prefix, 'share/man', `man${name.slice(-1)}`, name)), `${name} installed under share/man`);
  }

  const deps = fs
    .readdirSync(path.join(installed, 'node_modules'))
    .flatMap((d) => (d.startsWith('@') ? fs.readdirSync(path.join(installed, 'node_modules', d)).map((s) => `${d}/${s}`) : [d]));
  for (const d of Object.keys(PKG.dependencies)) assert.ok(deps.includes(d), `dependency ${d} installed`);
  assert.deepEqual(
    Object.keys(PKG.devDependencies).filter((d) => deps.includes(d)),
    [],
    'no devDependency installed',
  );
  // nothing in the installed tree would have built anything: no install scripts, no node-gyp project, no local build of the addon
  const all = filesUnder(installed);
  assert.deepEqual(
    all.filter((f) => path.basename(f) === 'binding.gyp'),
    [],
  );
  for (const f of all.filter((x) => path.basename(x) === 'package.json')) {
    const scripts = (JSON.parse(fs.readFileSync(path.join(installed, f), 'utf8')) as { scripts?: Record<string, string> }).scripts ?? {};
    for (const s of ['preinstall', 'install', 'postinstall']) assert.equal(scripts[s], undefined, `${f}: a ${s} script`);
  }
  assert.equal(fs.existsSync(path.join(installed, 'native')), false, 'no native/ (sources or local build) in the installed package');
});

test('the installed lbd runs with nothing but Node.js on PATH: --version, check', () => {
  assert.ok(installedOk, 'installed');
  const v = lbd(['--version']);
  ok(v, 'lbd --version');
  assert.equal(v.stdout, `lbd ${PKG.version}\n`);

  const c = lbd(['check', '--config', EXAMPLE]);
  ok(c, 'lbd check');
  assert.equal(c.stderr, `${EXAMPLE}: configuration is valid\n`);
  const fromRepo = runSync('node', [path.join(REPO_ROOT, 'bin/lbd'), 'check', '--config', EXAMPLE]);
  ok(fromRepo, "the repository's lbd check");
  assert.equal(c.stdout, fromRepo.stdout, 'the same normalized config as the repository prints');
  assert.match(c.stdout, /^services:$/m);
});

test('the installed lbd loads the binding the package ships, prebuilds/linux-ARCH', () => {
  assert.ok(installedOk, 'installed');
  const prebuilt = path.join(installed, 'prebuilds', `linux-${ARCH}`, 'lbd_native.node');
  const script = 'const l = require(process.argv[1]).loadNative(); console.log(JSON.stringify({ ok: l.ok, path: l.path, reason: l.reason }));';
  const r = runSync('node', ['-e', script, path.join(installed, 'dist/src/dataplane/binding.js')], { env: BARE_ENV, cwd: scratch });
  ok(r, 'loadNative()');
  assert.deepEqual(JSON.parse(r.stdout), { ok: true, path: prebuilt });

  // what an operator sees: lbd doctor names the binding that loaded (its other findings depend on this host)
  const d = lbd(['doctor', '--config', EXAMPLE, '--no-probes', '--json']);
  const report = JSON.parse(d.stdout) as { findings: { check: string; severity: string; what: string }[] };
  const binding = report.findings.find((f) => f.check === 'binding');
  assert.equal(binding?.severity, 'ok', JSON.stringify(binding));
  assert.equal(binding?.what, `the native binding loads (${prebuilt})`);
});
