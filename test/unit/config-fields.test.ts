import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';
import { CONFIG, Field, Section } from '../../src/config/fields';
import { parseConfig } from '../../src/config/load';

// Compiled to dist/test/unit/: the sources (fixtures) are three levels up.
const ROOT = path.resolve(__dirname, '../../..');
const MINIMAL = path.join(ROOT, 'test/fixtures/configs/minimal.yaml');

/** Every field of the table with its dotted path (list items as `[]`), depth first. */
function walk(section: Section, prefix = ''): { path: string; field: Field; section: Section }[] {
  const out: { path: string; field: Field; section: Section }[] = [];
  for (const field of section.fields) {
    const p = prefix ? `${prefix}.${field.key}` : field.key;
    out.push({ path: p, field, section });
    if (field.section) out.push(...walk(field.section, field.type === 'list' ? `${p}[]` : p));
  }
  return out;
}

// health_check is used twice (service and real-server override): walk it once per place.
const FIELDS = walk(CONFIG);

test('every key of the field table is documented and well-formed', () => {
  assert.ok(FIELDS.length > 50, `the walk found only ${FIELDS.length} fields`);
  for (const { path: p, field: f, section } of FIELDS) {
    assert.ok(typeof f.description === 'string' && f.description.trim().length > 5, `${p}: no description`);
    assert.match(f.key, /^[a-z_]+$/, `${p}: key`);
    assert.equal(section.fields.filter((g) => g.key === f.key).length, 1, `${p}: key listed twice`);
    if (f.type === 'section' || f.type === 'list') assert.ok(f.section, `${p}: ${f.type} without its section`);
    if (f.type === 'list') assert.ok(f.item && f.items, `${p}: list without item nouns`);
    if (f.type === 'enum') {
      assert.ok(f.choices && f.choices.length > 0 && f.noun, `${p}: enum without choices or noun`);
      for (const d of [f.default, f.implied]) if (d !== undefined) assert.ok(f.choices.includes(String(d)), `${p}: default ${d} not a choice`);
    }
    if (f.type === 'int') {
      assert.ok(Number.isInteger(f.min) && Number.isInteger(f.max) && f.min! <= f.max!, `${p}: int without a range`);
      for (const d of [f.default, f.implied]) if (d !== undefined) assert.ok(Number(d) >= f.min! && Number(d) <= f.max!, `${p}: default ${d} out of range`);
    }
    if (f.type === 'ipv4') assert.ok(f.noun, `${p}: ipv4 without its role`);
    assert.ok(!(f.default !== undefined && f.implied !== undefined), `${p}: both default and implied`);
    assert.ok(!(f.required !== undefined && (f.default !== undefined || f.implied !== undefined)), `${p}: required with a default`);
  }
  // A section's validation order, when given, is a permutation of its keys.
  for (const s of [CONFIG, ...FIELDS.map((x) => x.field.section).filter((s): s is Section => s !== undefined)]) {
    if (s.order) assert.deepEqual([...s.order].sort(), s.fields.map((f) => f.key).sort(), `${s.name}: order`);
  }
});

/** The value at a table path in a loaded config (list items: the first one). */
function valueAt(obj: unknown, p: string): { found: boolean; value?: unknown } {
  let cur: unknown = obj;
  for (const part of p.split('.')) {
    const [key, list] = part.endsWith('[]') ? [part.slice(0, -2), true] : [part, false];
    if (cur === null || typeof cur !== 'object' || !(key in (cur as object))) return { found: false };
    cur = (cur as Record<string, unknown>)[key];
    if (list) {
      if (!Array.isArray(cur) || cur.length === 0) return { found: false };
      cur = cur[0];
    }
  }
  return { found: true, value: cur };
}

/** Whether the YAML text writes the key at this table path (for a shorthand item: no). */
function written(doc: unknown, p: string): boolean {
  return valueAt(doc, p).found;
}

test('the defaults of the table are what loading a minimal config fills in', () => {
  const text = fs.readFileSync(MINIMAL, 'utf8');
  // minimal.yaml has no health_check; with the one key a check requires, its defaults show too.
  const withCheck = text.replace(/^(\s+)real_servers:/m, '$1health_check: { type: tcp }\n$1real_servers:');
  assert.notEqual(withCheck, text);
  // Nor an announce section; written empty, it has every default.
  const withAnnounce = `${text.replace(/\n*$/, '\n')}announce:\n`;
  const checked = new Set<string>();
  const skipped = new Set<string>();
  for (const t of [text, withCheck, withAnnounce]) {
    const doc = parse(t) as unknown;
    const cfg = parseConfig(t, 'minimal.yaml');
    for (const { path: p, field: f } of FIELDS) {
      const parent = p.includes('.') ? p.slice(0, p.lastIndexOf('.')) : '';
      if (parent && !valueAt(cfg, parent).found) continue; // e.g. health_check in the first text
      if (f.default === undefined && f.implied === undefined) continue;
      if (written(doc, p)) {
        skipped.add(p);
        continue;
      }
      const got = valueAt(cfg, p);
      if (f.default !== undefined) {
        assert.ok(got.found, `${p}: default ${f.default} not filled in`);
        assert.equal(got.value, f.default, `${p}: the table says ${f.default}, loading gives ${String(got.value)}`);
      } else {
        assert.equal(got.found, false, `${p}: implied default ${f.implied} should stay out of the normalized config`);
      }
      checked.add(p);
    }
  }
  // Every default was compared somewhere, except keys that minimal.yaml writes itself.
  const withDefault = FIELDS.filter(({ field: f }) => f.default !== undefined || f.implied !== undefined).map((x) => x.path);
  const overrides = withDefault.filter((p) => p.startsWith('services[].real_servers[].health_check.'));
  const unchecked = withDefault.filter((p) => !checked.has(p) && !overrides.includes(p));
  assert.deepEqual(
    unchecked.filter((p) => !skipped.has(p)),
    [],
    'defaults not compared',
  );
  assert.ok(checked.size >= 20, `only ${checked.size} defaults compared`);
  assert.deepEqual([...skipped].sort(), ['services[].protocol']);
});

test('derived defaults: egress = capture, real-server and health-check port = service port', () => {
  const cfg = parseConfig(fs.readFileSync(MINIMAL, 'utf8').replace(/^(\s+)real_servers:/m, '$1health_check: { type: tcp }\n$1real_servers:'), 'minimal.yaml');
  assert.equal(cfg.interfaces.egress, cfg.interfaces.capture);
  const s = cfg.services[0];
  for (const rs of s.real_servers) assert.equal(rs.port, s.port);
  assert.equal(s.health_check?.port, s.port);
  assert.equal(s.health_check?.timeout, Math.min(s.health_check!.interval, 1));
});
