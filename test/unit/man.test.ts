/**
 * The manual pages lbd(8) and lb.yaml(5): built by scripts/build-man.sh (npm run build) into
 * dist/man/, from docs/man/*.scd.in and the parts generated from the CLI's usage texts and the
 * config field table. They render without a groff warning, lbd(8) names every command and every
 * option of the CLI, lb.yaml(5) every key path of the field table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { COMMAND_FILES } from '../../src/cli/main';
import { commandSpecs } from '../../src/cli/usage-spec';
import { keyPaths } from '../../src/config/manual';
import { REPO_ROOT, runSync, runSyncOk } from '../../src/host/programs';

const MAN_DIR = path.join(REPO_ROOT, 'dist/man');

// Build the pages from the current sources (the build does it too; the test must not read stale ones).
test.before(() => {
  runSyncOk('bash', [path.join(REPO_ROOT, 'scripts/build-man.sh')]);
});

/** The page rendered as text (wide, so that no key path is broken across lines), and groff's warnings. */
function render(page: string, width = 80): { text: string; warnings: string } {
  const r = runSync('man', ['--warnings', '-E', 'UTF-8', '-l', path.join(MAN_DIR, page)], {
    env: { ...process.env, MANWIDTH: String(width), MAN_KEEP_FORMATTING: '', PAGER: 'cat', MANPAGER: 'cat' },
  });
  assert.equal(r.status, 0, `man -l ${page}: ${r.stderr}`);
  return { text: r.stdout, warnings: r.stderr };
}

for (const page of ['lbd.8', 'lb.yaml.5']) {
  test(`${page}: built, and rendered without a groff warning`, () => {
    assert.ok(fs.existsSync(path.join(MAN_DIR, page)), `dist/man/${page}`);
    assert.equal(render(page).warnings, '');
  });
}

test('lbd(8) names every command of the CLI, and every option of each', () => {
  const { text } = render('lbd.8', 200);
  const missing: string[] = [];
  for (const name of COMMAND_FILES) if (!new RegExp(`^\\s*lbd ${name}$`, 'm').test(text)) missing.push(name);
  for (const s of commandSpecs()) for (const o of s.options.values()) if (!text.includes(o.long)) missing.push(`${s.name} ${o.long}`);
  assert.deepEqual(missing, []);
  for (const section of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'COMMANDS', 'EXIT STATUS', 'SIGNALS', 'FILES', 'ENVIRONMENT', 'SEE ALSO'])
    assert.match(text, new RegExp(`^${section}$`, 'm'), section);
  for (const word of [
    'SIGHUP',
    'SIGTERM',
    'SIGUSR2',
    '78',
    '/etc/lbd/lb.yaml',
    '/run/lbd/lbd.sock',
    'RUNTIME_DIRECTORY',
    'NOTIFY_SOCKET',
    'JOURNAL_STREAM',
    'LBD_NATIVE_ADDON',
    'lb.yaml(5)',
  ])
    assert.ok(text.includes(word), word);
});

test('lb.yaml(5) names every key of the config field table, with its default', () => {
  const { text } = render('lb.yaml.5', 200);
  const keys = keyPaths();
  assert.ok(keys.length > 50, `${keys.length} keys`);
  const missing = keys.filter((k) => !new RegExp(`^\\s*${k.path.replace(/[[\].]/g, '\\$&')}$`, 'm').test(text)).map((k) => k.path);
  assert.deepEqual(missing, []);
  assert.match(text, /^\s*services\[\]\.scheduler\n\s*Type: one of: rr, wrr, lc, wlc, sed, nq, sh, fo, ovf, mh\. Default: wlc\./m);

  // the keys a reload refuses say so; the others do not
  assert.match(text, /^\s*connection_table\.size\n[^\n]*A change needs a restart/m);
  assert.match(text, /^\s*admin\.group\n[^\n]*A change needs a restart/m);
  assert.doesNotMatch(text, /^\s*services\[\]\.scheduler\n[^\n]*A change needs a restart/m);
});

test('build-man.sh fails naming the package when scdoc is missing', () => {
  const r = runSync('bash', [path.join(REPO_ROOT, 'scripts/build-man.sh')], { env: { ...process.env, PATH: '/nonexistent' } });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /scdoc not found: install Debian package scdoc/);
});
