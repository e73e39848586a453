// The test command: unit tests, the package test, then the end-to-end tests in network namespaces
// (root only).
// One node --test run per group so the summary lines say what ran.
import { existsSync, readdirSync } from 'node:fs';
import { URL } from 'node:url';

// Programs start through lbd's one helper (src/host/programs.ts), compiled by the build.
const helper = new URL('../dist/src/host/programs.js', import.meta.url);
if (!existsSync(helper)) {
  console.error('run-tests: not built yet: npm run build (or bash scripts/setup.sh)');
  process.exit(1);
}
const { runSync } = await import(helper.href);

// package: npm pack and an install of the tarball (slower, no namespaces: root or not; not part of
// test:unit, which CI runs on every Node major)
// fuzz: the fuzz targets built and run briefly, and every crash input kept as a fixture replayed
// (a clang build and ~20 s of fuzzing: once, like package, not on every Node major)
const groups = [
  ['unit', 'dist/test/unit'],
  ['package', 'dist/test/package'],
  ['fuzz', 'dist/test/fuzz'],
];
if (process.getuid?.() === 0) groups.push(['e2e', 'dist/test/e2e']);
else console.error('run-tests: not root: skipping the end-to-end tests (they build network namespaces)');

let failed = false;
for (const [name, dir] of groups) {
  if (!existsSync(dir)) continue;
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.test.js'))
    .sort()
    .map((f) => `${dir}/${f}`);
  if (!files.length) continue;
  console.log(`\n=== ${name} tests (${files.length} files) ===`);
  // e2e files share the machine's namespaces and CPU, package files the build's outputs (dist/,
  // prebuilds/): one at a time.
  const args = ['--test', '--test-reporter=spec', ...(name === 'unit' ? [] : ['--test-concurrency=1']), ...files];
  const r = runSync('node', args, { stdio: 'inherit' });
  if (r.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
