/**
 * The Debian package: scripts/build-deb.sh builds it from this checkout (build, this machine's
 * prebuilt binding, npm pack, the registry's Node.js runtime); it declares what a balancer needs
 * (nftables, iproute2, ethtool, libpcap0.8), keeps /etc/lbd/lb.yaml as a conffile, carries the
 * unit, the sysusers file, the manual pages, the completion and the schema; lintian finds nothing
 * beyond what the package overrides with a reason; and extracted into a scratch root (no dpkg
 * database, no maintainer script run), its /usr/bin/lbd runs on the Node.js it carries, with
 * nothing but /usr/bin:/bin on PATH, and loads the binding it carries.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { REPO_ROOT, runSync, type RunResult } from '../../src/host/programs';

const PKG = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-deb-test-'));
const root = path.join(scratch, 'root');
after(() => fs.rmSync(scratch, { recursive: true, force: true }));
const NODE_DIR = path.dirname(process.execPath);
/** Building needs the developer's PATH (compilers, npm) with the Node.js that runs this test first. */
const BUILD_ENV: NodeJS.ProcessEnv = { HOME: process.env.HOME ?? os.homedir(), PATH: `${NODE_DIR}:${process.env.PATH ?? '/usr/bin:/bin'}` };
/** What the installed lbd gets: the system's programs only (no Node.js in PATH: it brings its own). */
const BARE_ENV: NodeJS.ProcessEnv = { PATH: '/usr/bin:/bin', HOME: '/nonexistent' };

function ok(r: RunResult, what: string): string {
  assert.equal(r.status, 0, `${what}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

let deb = '';
let arch = '';
let buildMs = 0;
before(() => {
  arch = ok(runSync('dpkg', ['--print-architecture']), 'dpkg --print-architecture').trim();
  const t0 = Date.now();
  const r = runSync('bash', [path.join(REPO_ROOT, 'scripts/build-deb.sh'), '--out', scratch], { env: BUILD_ENV, cwd: REPO_ROOT, timeoutMs: 600_000 });
  deb = ok(r, 'scripts/build-deb.sh').trim().split('\n').pop()!;
  buildMs = Date.now() - t0;
  ok(runSync('dpkg-deb', ['-x', deb, root]), 'dpkg-deb -x');
});

test('the package: its name, version and architecture, what a balancer needs, the config as a conffile', (t) => {
  t.diagnostic(`built ${path.basename(deb)} (${(fs.statSync(deb).size / 1e6).toFixed(1)} MB) in ${(buildMs / 1000).toFixed(0)} s`);
  assert.equal(path.basename(deb), `lbd_${PKG.version}-1_${arch}.deb`);
  const field = (name: string) => ok(runSync('dpkg-deb', ['--field', deb, name]), `dpkg-deb --field ${name}`).trim();
  assert.equal(field('Package'), 'lbd');
  assert.equal(field('Version'), `${PKG.version}-1`);
  assert.equal(field('Architecture'), arch);
  const depends = field('Depends')
    .split(',')
    .map((d) => d.trim().split(/\s/)[0]);
  for (const needed of ['nftables', 'iproute2', 'ethtool', 'libpcap0.8', 'adduser'])
    assert.ok(depends.includes(needed), `Depends: ${needed} (${depends.join(', ')})`);
  assert.ok(!depends.includes('nodejs'), "Debian's nodejs (18) is too old: the package carries its own");
  const control = path.join(scratch, 'control');
  ok(runSync('dpkg-deb', ['--control', deb, control]), 'dpkg-deb --control');
  assert.deepEqual(fs.readFileSync(path.join(control, 'conffiles'), 'utf8').trim().split('\n'), ['/etc/lbd/lb.yaml']);
  for (const script of ['postinst', 'prerm', 'postrm']) ok(runSync('sh', ['-n', path.join(control, script)]), `sh -n ${script}`);
  // postinst makes the service's user; the service stays disabled until the config is edited.
  const postinst = fs.readFileSync(path.join(control, 'postinst'), 'utf8');
  assert.match(postinst, /adduser --system .*lbd/);
  const commands = postinst.split('\n').filter((l) => !l.trim().startsWith('#'));
  assert.ok(!commands.some((l) => /\benable\b/.test(l)), 'the service is not enabled by the package');
});

test('the files: the unit, the user, the manual, the completion, the schema, one Node.js and one binding', () => {
  const at = (p: string) => path.join(root, p);
  for (const p of [
    'usr/bin/lbd',
    'lib/systemd/system/lbd.service',
    'usr/lib/sysusers.d/lbd.conf',
    'etc/lbd/lb.yaml',
    'usr/share/man/man8/lbd.8.gz',
    'usr/share/man/man5/lb.yaml.5.gz',
    'usr/share/bash-completion/completions/lbd',
    'usr/share/lbd/lb.yaml.schema.json',
    'usr/share/doc/lbd/copyright',
    'usr/lib/lbd/node/bin/node',
  ]) {
    assert.ok(fs.existsSync(at(p)), p);
  }
  assert.equal(fs.readFileSync(at('lib/systemd/system/lbd.service'), 'utf8'), fs.readFileSync(path.join(REPO_ROOT, 'contrib/systemd/lbd.service'), 'utf8'));
  assert.match(
    fs.readFileSync(at('etc/lbd/lb.yaml'), 'utf8'),
    /^# yaml-language-server: \$schema=\/usr\/share\/lbd\/lb\.yaml\.schema\.json\n/,
    'the schema where the package puts it',
  );
  const prebuilds = fs.readdirSync(at('usr/lib/lbd/lib/node_modules/lbd/prebuilds'));
  assert.deepEqual(prebuilds, [`linux-${process.arch}`], "this architecture's binding only");
  assert.ok(!fs.existsSync(at('usr/lib/lbd/lib/node_modules/lbd/node_modules/eslint')), 'no devDependency');
  for (const page of ['usr/share/man/man8/lbd.8.gz', 'usr/share/man/man5/lb.yaml.5.gz']) {
    const r = runSync('man', ['--warnings', '-E', 'UTF-8', '-l', at(page)], { env: { ...BARE_ENV, MANWIDTH: '80' } });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', `${page}: groff warnings`);
  }
});

test('lintian: nothing but what the package overrides, each override with its reason', (t) => {
  const r = runSync('lintian', ['--tag-display-limit', '0', '--show-overrides', deb], { timeoutMs: 300_000 });
  const tags = r.stdout.split('\n').filter((l) => /^[EWIX]: /.test(l));
  const overridden = r.stdout.split('\n').filter((l) => /^O: /.test(l));
  t.diagnostic(`lintian: ${tags.length} tags, ${overridden.length} overridden: ${overridden.map((l) => l.replace(/^O: lbd: /, '')).join('; ')}`);
  assert.deepEqual(tags, [], r.stdout);
  // every override the package ships is still needed, and says why
  const overrides = fs.readFileSync(path.join(root, 'usr/share/lintian/overrides/lbd'), 'utf8');
  const all = overrides.split('\n');
  const lines = all.filter((l) => l.startsWith('lbd: '));
  assert.equal(overridden.length, lines.length, `each override is used:\n${overrides}\n${r.stdout}`);
  // each override under a comment (one comment may give the reason of several in a row)
  for (const [i, l] of all.entries()) {
    if (!l.startsWith('lbd: ')) continue;
    let j = i - 1;
    while (j >= 0 && all[j].startsWith('lbd: ')) j--;
    assert.ok(j >= 0 && all[j].startsWith('#'), `a reason above "${l}"`);
  }
});

/** The extracted /usr/bin/lbd started as a user starts it, by its path. */
function lbd(args: string[]): RunResult {
  return runSync('sh', ['-c', 'exec "$0" "$@"', path.join(root, 'usr/bin/lbd'), ...args], { env: BARE_ENV, timeoutMs: 60_000 });
}

test('extracted, its lbd runs on the Node.js it carries: --version, check of its config, the binding it carries', () => {
  assert.equal(ok(lbd(['--version']), 'lbd --version').trim(), `lbd ${PKG.version}`);
  const check = lbd(['check', '--config', path.join(root, 'etc/lbd/lb.yaml')]);
  ok(check, 'lbd check');
  assert.match(check.stderr, /lb\.yaml: configuration is valid/);
  const d = lbd(['doctor', '--config', path.join(root, 'etc/lbd/lb.yaml'), '--no-probes', '--json']);
  const report = JSON.parse(d.stdout) as { findings: { check: string; severity: string; what: string }[] };
  const binding = report.findings.find((f) => f.check === 'binding');
  const shipped = path.join(root, `usr/lib/lbd/lib/node_modules/lbd/prebuilds/linux-${process.arch}/lbd_native.node`);
  assert.equal(binding?.what, `the native binding loads (${shipped})`, JSON.stringify(binding));
});
