/**
 * Every program declared: src/, lab/, test/, bench/ and scripts/ start programs only through
 * src/host/programs.ts, and only programs src/host/programs.json declares with their Debian
 * package; the declared packages are the ones installed here; setup installs from the
 * declaration. (A missing `ping` once passed CI only because the CI machine happened to have it.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ProgramNotFoundError,
  UndeclaredProgramError,
  extraPackages,
  listNames,
  packagesOf,
  program,
  programNames,
  programPath,
  REPO_ROOT,
  run,
  runSync,
  runSyncOk,
  type ProgramName,
} from '../../src/host/programs';
import { formatFinding, scanShell, scanSource, scanTree, sourceFiles } from '../helpers/spawn-scan';

const declared = new Set<string>(programNames());
const DEBIAN_NAME = /^[a-z0-9][a-z0-9+.-]+$/;

test('every spawn in src, lab, test, bench and scripts goes through the helper and names a declared program', () => {
  const files = sourceFiles(REPO_ROOT);
  assert.ok(files.includes('src/host/programs.ts') && files.includes('lab/lab.ts') && files.includes('scripts/setup.sh'), 'the scan sees the tree');
  assert.deepEqual(scanTree(REPO_ROOT, declared).map(formatFinding), []);
});

test('the scanner reports a raw child_process spawn and an undeclared program (synthetic source)', () => {
  const source = [
    "import { execFileSync } from 'node:child_process';", // 1
    "const cp = require('child_process');", // 2
    "execFileSync('nmap', ['-sS', host]);", // 3
    "lab.exec(lab.ns.client, ['curl', '-s', url]);", // 4: declared
    "lab.spawn(lab.ns.client, ['zmap', '-p', '80']);", // 5
    "runSync('masscan', ['-p80', net]);", // 6
    "lab.tryExec(ns, [process.execPath, 'x.js']);", // 7
    "const steps = [{ say: 'scan', cmd: ['hping3', '-S', vip] }];", // 8
    "background(['sh', '-c', `for i in $(seq 3); do nc -z ${host} 80; sleep 1; done`]);", // 9
    "runSync('ip', ['-j', 'link']);", // 10: declared
  ].join('\n');
  const found = scanSource('synthetic.ts', source, declared).map((f) => `${f.line} ${f.rule} ${/"([^"]+)"/.exec(f.message)?.[1] ?? ''}`);
  assert.deepEqual(
    found.sort(),
    [
      '1 child_process ',
      '2 child_process ',
      '3 undeclared nmap',
      '5 undeclared zmap',
      '6 undeclared masscan',
      '7 execPath ',
      '8 undeclared hping3',
      '9 undeclared nc',
    ].sort(),
  );
  // the helper itself is the one file allowed to import child_process
  assert.deepEqual(scanSource('src/host/programs.ts', "import { spawnSync } from 'node:child_process';", declared), []);

  const shell = [
    '#!/usr/bin/env bash',
    'set -euo pipefail',
    'stage() { printf "%s\\n" "$*"; }',
    'for p in "$@"; do dpkg-query -W "$p" 2>/dev/null | grep -q ok || missing+=("$p"); done',
    'case "$(uname -m)" in x86_64) arch=x64 ;; *) arch=other ;; esac',
    'out=$(masscan -p80 "$net")',
    'DEBIAN_FRONTEND=noninteractive apt-get install -y curl >&2',
    'nmap -sS "$host" | grep open',
    'trap \'rm -f "$tmp"; zmap -x\' EXIT',
    '"$gyp" rebuild && bash scripts/apt-install.sh "${PACKAGES[@]}"',
    'stage done',
  ].join('\n');
  assert.deepEqual(
    scanShell('synthetic.sh', shell, declared).map((f) => `${f.line} ${/"([^"]+)"/.exec(f.message)?.[1]}`),
    ['8 nmap', '9 zmap', '6 masscan'],
  );
});

test('the declaration: known lists, Debian package names, a reason for every program without a package', () => {
  const lists = new Set<string>(listNames());
  for (const l of ['host', 'lab', 'bench', 'build', 'base']) assert.ok(lists.has(l), `list ${l}`);
  for (const n of programNames()) {
    const p = program(n);
    assert.match(n, /^[a-z0-9][a-z0-9+._-]*$/, `program name ${n}`);
    assert.ok(lists.has(p.list), `${n}: unknown list ${p.list}`);
    if (p.package === null) assert.ok(p.why && (n === 'node' || p.built || /Node\.js/.test(p.why)), `${n}: no package, so say where it comes from`);
    else assert.match(p.package, DEBIAN_NAME, `${n}: package ${p.package}`);
    if (p.built) {
      assert.ok(p.path && !path.isAbsolute(p.path), `${n}: a built program has a path in the repository`);
      assert.ok(fs.existsSync(path.join(REPO_ROOT, p.built)), `${n}: its source ${p.built} exists`);
    }
    if (p.install === false) assert.ok(p.why, `${n}: not installed by setup: say why`);
  }
  for (const p of extraPackages()) {
    assert.match(p.name, DEBIAN_NAME);
    assert.ok(lists.has(p.list) && p.why, `package ${p.name}: list and why`);
  }
  // the production host's list: what lbd itself runs and loads
  assert.deepEqual(
    ['ethtool', 'iproute2', 'libpcap0.8', 'nftables', 'procps'].filter((x) => !packagesOf(['host']).includes(x)),
    [],
  );
  assert.equal(program('ping').package, 'iputils-ping');
});

test('a missing program is an error naming its Debian package; undeclared ones are refused', async () => {
  assert.equal(new ProgramNotFoundError(program('ping')).message, 'ping: not found: install Debian package iputils-ping (apt-get install iputils-ping)');
  assert.equal(new ProgramNotFoundError(program('ping')).code, 'E_PROGRAM_NOT_FOUND');
  assert.match(new ProgramNotFoundError(program('gen'), '/x/gen').message, /^gen: not built: \/x\/gen \(compiled from bench\/gen\/gen\.c\)$/);
  assert.throws(
    () => runSync('nmap' as ProgramName, []),
    (e: unknown) => e instanceof UndeclaredProgramError && e.code === 'E_PROGRAM_UNDECLARED',
  );
  await assert.rejects(run('nmap' as ProgramName, []), UndeclaredProgramError);
  assert.equal(programPath('node'), process.execPath);
  // a PATH without the sbin directories (a non-root user's) still finds what lives there
  const saved = process.env.PATH;
  try {
    process.env.PATH = '/nonexistent';
    assert.match(programPath('sh'), /^(\/usr)?\/bin\/sh$/);
  } finally {
    process.env.PATH = saved;
  }
});

test('runSync, runSyncOk and run: exit status, output, input, timeout', async () => {
  assert.deepEqual(runSync('sh', ['-c', 'cat; echo err >&2; exit 3'], { input: 'in\n' }), { status: 3, signal: null, stdout: 'in\n', stderr: 'err\n' });
  assert.equal(runSyncOk('sh', ['-c', 'echo ok']), 'ok\n');
  assert.throws(
    () => runSyncOk('sh', ['-c', 'echo bad >&2; exit 1']),
    (e: Error & { code?: string }) => e.code === 'E_PROGRAM_FAILED' && e.message === 'sh -c echo bad >&2; exit 1: bad',
  );
  const slow = runSync('sleep', ['5'], { timeoutMs: 100 });
  assert.equal(slow.status, null);
  assert.equal(slow.signal, 'SIGTERM');
  assert.deepEqual(await run('sh', ['-c', 'cat; exit 2'], { input: 'async' }), { status: 2, signal: null, stdout: 'async', stderr: '' });
  assert.equal((await run('sleep', ['5'], { timeoutMs: 100 })).signal, 'SIGTERM');
});

test('setup installs from the declaration: scripts/packages.mjs lists what packagesOf() lists', () => {
  for (const lists of [['host'], ['lab'], ['bench'], ['build'], ['host', 'lab', 'build'], ['host', 'lab', 'bench']] as const) {
    const out = runSyncOk('node', [path.join(REPO_ROOT, 'scripts/packages.mjs'), ...lists]);
    assert.deepEqual(out.trim().split('\n'), packagesOf([...lists]), lists.join(' '));
  }
  const setup = fs.readFileSync(path.join(REPO_ROOT, 'scripts/setup.sh'), 'utf8');
  assert.match(setup, /node scripts\/packages\.mjs host lab build\b/);
  assert.match(fs.readFileSync(path.join(REPO_ROOT, 'bench/setup.sh'), 'utf8'), /node scripts\/packages\.mjs [a-z ]*\bbench\b/);
  // no script keeps a package list of its own: the installer only ever gets expansions
  for (const f of sourceFiles(REPO_ROOT).filter((x) => x.endsWith('.sh'))) {
    for (const line of fs.readFileSync(path.join(REPO_ROOT, f), 'utf8').split('\n')) {
      const m = /(?:apt-install\.sh|apt-get install)\s+(.*)$/.exec(line.replace(/#.*$/, ''));
      if (!m) continue;
      const literal = m[1].split(/\s+/).filter((w) => w && !w.startsWith('-') && !w.startsWith('"$') && !w.startsWith('$') && !/^[0-9]*>/.test(w));
      assert.deepEqual(literal, [], `${f}: ${line.trim()}`);
    }
  }
});

test('the README names the host and the lab lists', () => {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  assert.match(readme, /src\/host\/programs\.json/);
  for (const pkg of [...packagesOf(['host']), ...packagesOf(['lab']), ...packagesOf(['bench']), ...packagesOf(['build'])]) {
    assert.ok(readme.includes(`\`${pkg}\``), `README names ${pkg}`);
  }
});

// ── on this machine: the declared package is the one the program comes from ──

/** The packages owning a path (dpkg-query -S), [] when none does. */
function owners(p: string): string[] {
  const r = runSync('dpkg-query', ['-S', p]);
  if (r.status !== 0) return [];
  return r.stdout
    .split('\n')
    .filter((l) => !l.startsWith('diversion') && l.includes(': /'))
    .flatMap((l) => l.slice(0, l.indexOf(': /')).split(', '))
    .map((s) => s.replace(/:.*$/, '').trim());
}

/** The file a command path leads to and every symlink on the way, each also without /usr (merged /usr: dpkg knows /bin/ip as such). */
function candidates(file: string): string[] {
  const chain = [file];
  for (let p = file, i = 0; i < 10; i++) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(p);
    } catch {
      break;
    }
    if (!st.isSymbolicLink()) break;
    p = path.resolve(path.dirname(p), fs.readlinkSync(p));
    chain.push(p);
  }
  chain.push(fs.realpathSync(file));
  return [...new Set(chain.flatMap((p) => (p.startsWith('/usr/') ? [p, p.slice(4)] : [p, `/usr${p}`])))];
}

function dependsOf(pkg: string): string[] {
  const r = runSync('dpkg-query', ['-W', '-f=${Depends}, ${Pre-Depends}', pkg]);
  return r.status === 0
    ? r.stdout
        .split(/[,|]/)
        .map((d) => d.trim().split(/[\s:(]/)[0])
        .filter(Boolean)
    : [];
}

const installed = (pkg: string) => /install ok installed/.test(runSync('dpkg-query', ['-W', '-f=${Status}', pkg]).stdout);

test('every declared program installed here comes from its declared package (dpkg -S)', (t) => {
  try {
    programPath('dpkg-query');
  } catch {
    t.skip('not a Debian system');
    return;
  }
  const skipped: string[] = [];
  const wrong: string[] = [];
  for (const n of programNames()) {
    const p = program(n);
    if (p.package === null) continue;
    let file: string;
    try {
      file = programPath(n);
    } catch (e) {
      if (e instanceof ProgramNotFoundError) {
        skipped.push(`${n} (not installed)`);
        continue;
      }
      throw e;
    }
    const cands = candidates(file);
    const found = [...new Set(cands.flatMap(owners))];
    if (found.length === 0) {
      skipped.push(`${n} (${file}: no package owns it)`);
      continue;
    }
    // the package itself, or one it depends on directly (apache2 → apache2-bin, gcc → gcc-12)
    if (found.includes(p.package) || dependsOf(p.package).some((d) => found.includes(d))) continue;
    // an alternative (awk, iptables): the declared package must be installed, it provides one choice
    if (cands.some((c) => c.startsWith('/etc/alternatives/')) && installed(p.package)) continue;
    wrong.push(`${n}: ${file} belongs to ${found.join(', ')}, declared ${p.package}`);
  }
  if (skipped.length) t.diagnostic(`not checked: ${skipped.join('; ')}`);
  assert.deepEqual(wrong, []);
});

test('the base list is Essential or required on Debian: setup may rely on it without installing it', (t) => {
  try {
    programPath('dpkg-query');
  } catch {
    t.skip('not a Debian system');
    return;
  }
  const bad: string[] = [];
  for (const n of programNames()) {
    const p = program(n);
    if (p.list !== 'base' || p.package === null || !installed(p.package)) continue;
    const [essential, priority] = runSync('dpkg-query', ['-W', '-f=${Essential} ${Priority}', p.package]).stdout.split(' ');
    if (essential !== 'yes' && priority !== 'required') bad.push(`${n}: ${p.package} is ${priority}`);
  }
  assert.deepEqual(bad, []);
});

test('the running daemon never waits for a program: no synchronous spawn in the code it runs (the data plane shares its event loop)', () => {
  // What `lbd run` executes after start: control, host changes, health, data plane, metrics,
  // admin. The CLI's one-shot commands and lbd doctor may wait; a running daemon may not.
  const daemonDirs = ['src/control', 'src/host', 'src/health', 'src/dataplane', 'src/metrics', 'src/scheduler', 'src/config'];
  const files = sourceFiles(REPO_ROOT).filter((f) => daemonDirs.some((d) => f.startsWith(`${d}/`)));
  assert.ok(files.includes('src/control/daemon.ts') && files.includes('src/host/leased-table.ts'), `scanned: ${files.join(' ')}`);
  const offenders: string[] = [];
  for (const file of files) {
    if (file === 'src/host/programs.ts') continue; // where runSync is defined (for the CLI, the lab)
    fs.readFileSync(path.join(REPO_ROOT, file), 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (/\b(runSync|runSyncOk|spawnSync|execSync|execFileSync)\b/.test(line)) offenders.push(`${file}:${i + 1}: ${line.trim()}`);
      });
  }
  assert.deepEqual(offenders, []);
  // (the check itself: the CLI's one-shot commands do wait, and would be found)
  assert.match(fs.readFileSync(path.join(REPO_ROOT, 'src/cli/realserver-setup.ts'), 'utf8'), /\brunSyncOk\b/);
});
