// packages.mjs LIST…: the Debian packages of these lists of src/host/programs.json, one a line,
// sorted (what setup installs). Plain JavaScript on purpose: setup runs it before the build.
// The same rule as packagesOf() in src/host/programs.ts (test/unit/programs.test.ts compares them).
import { readFileSync } from 'node:fs';
import { URL } from 'node:url';

const decl = JSON.parse(readFileSync(new URL('../src/host/programs.json', import.meta.url), 'utf8'));
const lists = process.argv.slice(2);
const unknown = lists.filter((l) => !(l in decl.lists));
if (!lists.length || unknown.length) {
  console.error(
    `usage: node scripts/packages.mjs LIST… (lists: ${Object.keys(decl.lists).join(', ')})${unknown.length ? `; unknown: ${unknown.join(', ')}` : ''}`,
  );
  process.exit(2);
}
const out = new Set();
for (const p of Object.values(decl.programs)) {
  if (lists.includes(p.list) && p.package !== null && p.install !== false) out.add(p.package);
}
for (const [name, p] of Object.entries(decl.packages)) if (lists.includes(p.list)) out.add(name);
for (const name of [...out].sort()) console.log(name);
