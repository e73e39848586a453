/**
 * Property-based fuzzing of the config loader (src/config/load.ts parseConfig): random YAML
 * documents and mutations of examples/lb.yaml and test/fixtures/configs/* (keys deleted,
 * duplicated or retyped, random scalars, huge numbers, unicode, deep nesting, anchors and aliases
 * (a billion laughs among them), non-mapping roots, several documents, binary garbage, text cut,
 * spliced and re-indented).
 *
 * The property (checkConfig): parseConfig either returns a Config or throws a ConfigError whose
 * every issue is located (the file, line ≥ 1 and column ≥ 1 within the text), names the field
 * (a path; only a YAML syntax error, which is about no field, has none) and says something (a
 * non-empty message), formatted by formatConfigIssue as `file:line:col path: message`; never
 * another exception, and within a time bound (1 s an input).
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import fs from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load';
import { keyPaths } from '../../src/config/manual';
import { ConfigError, formatConfigIssue } from '../../src/errors';

export const CONFIG_FILE = 'fuzz.yaml';
/** The longest an input may take. */
export const CONFIG_TIME_LIMIT_MS = 1000;

/**
 * The config's own vocabulary, so that random documents reach the validator's corners: every
 * key of the field table (the one the loader checks against), so a new key is fuzzed too.
 */
const KEYS = [...new Set(keyPaths().map((k) => k.field.key))];

const scalarArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    'eth0',
    'lo',
    '10.0.10.100',
    '10.0.10.40',
    '255.255.255.0',
    '0.0.0.0',
    '256.1.1.1',
    '02:00:00:00:00:40',
    'auto',
    'rr',
    'mh',
    'sh',
    'wlc',
    'tcp',
    'udp',
    'http',
    'vip',
    'drop',
    'hash',
    'drain',
    'reschedule',
    'keep',
    'up',
    'down',
    '127.0.0.1:9469',
    '200us',
    '5m',
    '1h',
    '-1s',
    '1e400s',
    '',
    ' ',
    '~',
    'null',
    'yes',
    'off',
    '0x10',
    '0o17',
    '.nan',
    '-.inf',
    '\u00e9t\u00e9',
    '\u{1f600}',
    '\u202e',
    '\u0000',
    '\ud800',
  ),
  fc.integer(),
  fc.constantFrom(0, -0, 1, -1, 65535, 65536, 1024, 16777216, 16777217, 2 ** 31, 2 ** 53, 2 ** 53 + 2, 1e308, -1e308, 0.5, Number.NaN, Infinity, -Infinity),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'grapheme', maxLength: 12 }),
);

/** A YAML value: mappings keyed from the vocabulary (and a few strangers), lists, scalars. */
const { value: valueArb } = fc.letrec<{ value: unknown }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    scalarArb,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 8 })), tie('value'), { maxKeys: 6 }),
  ),
}));

/** A document shaped like a config: the top-level sections with random (sometimes right) contents. */
const configLikeArb = fc
  .record(
    {
      interfaces: fc.oneof(fc.record({ capture: scalarArb, egress: scalarArb }, { requiredKeys: [] }), valueArb),
      services: fc.oneof(
        fc.array(
          fc.record(
            {
              name: scalarArb,
              vip: scalarArb,
              port: scalarArb,
              protocol: scalarArb,
              scheduler: scalarArb,
              persistence: scalarArb,
              on_miss: scalarArb,
              real_servers: fc.oneof(
                fc.array(fc.oneof(scalarArb, fc.dictionary(fc.constantFrom(...KEYS), scalarArb, { maxKeys: 5 })), { maxLength: 3 }),
                valueArb,
              ),
              health_check: valueArb,
            },
            { requiredKeys: [] },
          ),
          { maxLength: 3 },
        ),
        valueArb,
      ),
      timeouts: valueArb,
      connection_table: valueArb,
      log: valueArb,
      dataplane: scalarArb,
      admin: valueArb,
      announce: valueArb,
      metrics: valueArb,
    },
    { requiredKeys: [] },
  )
  .map((o) => stringify(o, { lineWidth: 0 }));

/** A text mutation: characters, lines and indentation cut, spliced, duplicated. */
type TextOp =
  | { op: 'insert'; at: number; text: string }
  | { op: 'delete'; at: number; n: number }
  | { op: 'dupLine'; line: number }
  | { op: 'delLine'; line: number }
  | { op: 'swapLines'; a: number; b: number }
  | { op: 'indent'; line: number; by: number }
  | { op: 'retype'; line: number; value: string }
  | { op: 'anchor'; line: number; alias: number };

const SNIPPETS = [
  ':',
  ': ',
  '- ',
  '  ',
  '\t',
  '\n',
  '"',
  "'",
  '[',
  ']',
  '{',
  '}',
  '&a ',
  '*a',
  '!!binary ',
  '!!int ',
  '!!str ',
  '!!map ',
  '!custom ',
  '? ',
  '|\n  x',
  '>-\n  y',
  '---\n',
  '...\n',
  '%YAML 1.1\n---\n',
  '<<: *a\n',
  '#',
  '\ufeff',
  '\u0085',
  '\u2028',
  '99999999999999999999999',
  '1e999',
  '0x7fffffff',
];

const textOpArb: fc.Arbitrary<TextOp> = fc.oneof(
  fc.record({ op: fc.constant('insert' as const), at: fc.nat(), text: fc.oneof(fc.constantFrom(...SNIPPETS), fc.string({ maxLength: 6 })) }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 30 }) }),
  fc.record({ op: fc.constant('dupLine' as const), line: fc.nat() }),
  fc.record({ op: fc.constant('delLine' as const), line: fc.nat() }),
  fc.record({ op: fc.constant('swapLines' as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ op: fc.constant('indent' as const), line: fc.nat(), by: fc.integer({ min: -4, max: 4 }) }),
  fc.record({ op: fc.constant('retype' as const), line: fc.nat(), value: scalarArb.map((v) => stringify(v, { lineWidth: 0 }).trimEnd()) }),
  fc.record({ op: fc.constant('anchor' as const), line: fc.nat(), alias: fc.nat() }),
);

function applyTextOp(text: string, o: TextOp): string {
  const lines = text.split('\n');
  const L = (n: number) => n % Math.max(1, lines.length);
  switch (o.op) {
    case 'insert': {
      const at = o.at % (text.length + 1);
      return text.slice(0, at) + o.text + text.slice(at);
    }
    case 'delete': {
      const at = o.at % (text.length + 1);
      return text.slice(0, at) + text.slice(at + o.n);
    }
    case 'dupLine':
      lines.splice(L(o.line), 0, lines[L(o.line)] ?? '');
      return lines.join('\n');
    case 'delLine':
      lines.splice(L(o.line), 1);
      return lines.join('\n');
    case 'swapLines': {
      const a = L(o.a);
      const b = L(o.b);
      [lines[a], lines[b]] = [lines[b], lines[a]];
      return lines.join('\n');
    }
    case 'indent': {
      const i = L(o.line);
      lines[i] = o.by >= 0 ? ' '.repeat(o.by) + lines[i] : lines[i].replace(new RegExp(`^ {0,${-o.by}}`), '');
      return lines.join('\n');
    }
    case 'retype': {
      // The value after "key:" replaced (another type, a huge number, unicode, nothing).
      const i = L(o.line);
      const m = /^(\s*(?:- )?[\w.-]+:)(.*)$/.exec(lines[i] ?? '');
      if (m) lines[i] = `${m[1]} ${o.value.includes('\n') ? JSON.stringify(o.value) : o.value}`;
      return lines.join('\n');
    }
    case 'anchor': {
      // An anchor on one value and an alias to it in another.
      const i = L(o.line);
      const j = L(o.alias);
      lines[i] = (lines[i] ?? '').replace(/^(\s*(?:- )?[\w.-]+:)\s*/, '$1 &a ');
      lines[j] = (lines[j] ?? '').replace(/^(\s*(?:- )?[\w.-]+:).*$/, '$1 *a');
      return lines.join('\n');
    }
  }
}

/** Special documents: non-mapping roots, several documents, deep nesting, a billion laughs, garbage. */
const specialArb: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '',
    '\n',
    '---',
    '~',
    'null',
    '42',
    '"a string"',
    '- a\n- b',
    '[1, 2]',
    'services: []',
    'interfaces: eth0\nservices: x',
    'a: 1\n---\nb: 2',
    '%YAML 1.2\n---\ninterfaces: {capture: eth0}',
    '!!binary aGVsbG8=',
    '? [a, b]\n: c',
    '{? {a: 1} : 2}',
    '<<: {interfaces: {capture: eth0}}',
  ),
  fc.integer({ min: 1, max: 3000 }).map((n) => '['.repeat(n) + ']'.repeat(n)),
  fc.integer({ min: 1, max: 3000 }).map((n) => '{a: '.repeat(n) + '1' + '}'.repeat(n)),
  fc.integer({ min: 1, max: 400 }).map((n) => Array.from({ length: n }, (_, i) => `${' '.repeat(i)}k${i}:`).join('\n') + ' 1'),
  fc.integer({ min: 1, max: 400 }).map((n) => Array.from({ length: n }, (_, i) => `${' '.repeat(2 * i)}- `).join('\n') + 'x'),
  fc.integer({ min: 2, max: 12 }).map((n) => {
    // A billion laughs: each anchor aliases the one before ten times.
    const out = ['a0: &a0 [lol, lol]'];
    for (let i = 1; i < n; i++)
      out.push(
        `a${i}: &a${i} [${Array(10)
          .fill(`*a${i - 1}`)
          .join(', ')}]`,
      );
    return `${out.join('\n')}\ninterfaces:\n  capture: *a${n - 1}\n`;
  }),
  fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b).toString('utf8')),
  fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b).toString('latin1')),
  fc.string({ unit: 'binary', maxLength: 200 }),
);

/** Every input kind, with the seeds (examples/lb.yaml, the config fixtures) mutated. */
export function configInputArb(seeds: readonly string[]): fc.Arbitrary<string> {
  const mutated = fc
    .tuple(fc.nat({ max: seeds.length - 1 }), fc.array(textOpArb, { minLength: 1, maxLength: 8 }))
    .map(([i, ops]) => ops.reduce(applyTextOp, seeds[i]));
  return fc.oneof(
    { weight: 5, arbitrary: mutated },
    { weight: 3, arbitrary: configLikeArb },
    { weight: 1, arbitrary: valueArb.map((v) => stringify(v)) },
    { weight: 1, arbitrary: specialArb },
  );
}

export function configSeeds(root: string): string[] {
  const dir = path.join(root, 'test/fixtures/configs');
  return [
    fs.readFileSync(path.join(root, 'examples/lb.yaml'), 'utf8'),
    ...fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.yaml'))
      .sort()
      .map((f) => fs.readFileSync(path.join(dir, f), 'utf8')),
  ];
}

export const configStats = { inputs: 0, accepted: 0, refused: 0, issues: 0, checks: 0, slowestMs: 0 };

/** The property on one input (throws an AssertionError saying what is wrong). */
export function checkConfig(text: string, limitMs = CONFIG_TIME_LIMIT_MS): void {
  const t0 = performance.now();
  let outcome: 'config' | ConfigError;
  try {
    const cfg = parseConfig(text, CONFIG_FILE);
    assert.ok(cfg && typeof cfg === 'object' && Array.isArray(cfg.services) && cfg.services.length > 0, 'a Config with services');
    outcome = 'config';
  } catch (e) {
    if (!(e instanceof ConfigError))
      assert.fail(`parseConfig threw ${(e as Error)?.constructor?.name ?? typeof e}, not a ConfigError: ${(e as Error)?.stack ?? e}`);
    outcome = e;
  }
  const ms = performance.now() - t0;
  configStats.inputs++;
  configStats.slowestMs = Math.max(configStats.slowestMs, ms);
  if (ms > limitMs) assert.fail(`parseConfig took ${Math.round(ms)} ms (limit ${limitMs})`);
  configStats.checks += 2;
  if (outcome === 'config') {
    configStats.accepted++;
    return;
  }
  configStats.refused++;
  const err = outcome;
  assert.equal(err.code, 'E_CONFIG');
  if (err.issues.length === 0) assert.fail('a ConfigError without issues');
  const lines = text.split(/\r\n|\r|\n/).length;
  for (const i of err.issues) {
    configStats.issues++;
    configStats.checks += 4;
    const shown = formatConfigIssue(i);
    if (i.file !== CONFIG_FILE) assert.fail(`issue in file ${JSON.stringify(i.file)}: ${shown}`);
    if (!(Number.isInteger(i.line) && i.line >= 1 && i.line <= lines + 1 && Number.isInteger(i.col) && i.col >= 1)) {
      assert.fail(`issue not located (line ${i.line}, col ${i.col} of ${lines} lines): ${shown}`);
    }
    if (typeof i.message !== 'string' || i.message.trim() === '') assert.fail(`issue without a message: ${shown}`);
    // About the document, not a field: YAML syntax, an empty or non-mapping document, a top-level key that is no plain key.
    const syntax = /^(invalid YAML|the config is empty|expected a mapping at the top level|expected a plain key)/.test(i.message);
    if (!syntax && (typeof i.path !== 'string' || i.path.trim() === '')) assert.fail(`issue without a field path: ${shown}`);
    if (!shown.startsWith(`${CONFIG_FILE}:${i.line}:${i.col}`)) assert.fail(`formatted without file:line:col: ${shown}`);
  }
}

// ---- Fixtures and runs ---------------------------------------------------------------------------

export function writeConfigFixture(dir: string, text: string, error: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `config-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}.yaml`);
  // The input as it was (bytes), and why it failed beside it.
  fs.writeFileSync(file, text);
  fs.writeFileSync(file.replace(/\.yaml$/, '.why.txt'), error.slice(0, 4000) + '\n');
  return file;
}

export function readConfigFixtures(dir: string): { file: string; text: string }[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => ({ file: f, text: fs.readFileSync(path.join(dir, f), 'utf8') }));
}

export interface InputRunOptions {
  seed: number;
  /** Each input's time limit (default CONFIG_TIME_LIMIT_MS; a smoke on a loaded machine may allow more). */
  limitMs?: number;
  inputs?: number;
  deadline?: number;
  runsPerRound?: number;
  fixtureDir?: string;
  maxFailures?: number;
  log?: (s: string) => void;
}
export interface InputRunSummary {
  inputs: number;
  propertiesChecked: number;
  failures: { seed: number; error: string; fixture?: string }[];
  rounds: number;
}

export async function fuzzConfig(seeds: readonly string[], o: InputRunOptions): Promise<InputRunSummary> {
  const arb = configInputArb(seeds);
  const start = { ...configStats };
  const failures: InputRunSummary['failures'] = [];
  let rounds = 0;
  const done = () => (o.inputs !== undefined && configStats.inputs - start.inputs >= o.inputs) || (o.deadline !== undefined && Date.now() >= o.deadline);
  while (!done() && failures.length < (o.maxFailures ?? 5)) {
    const seed = (o.seed + rounds) | 0;
    rounds++;
    const r = fc.check(
      fc.property(arb, (text) => checkConfig(text, o.limitMs)),
      { seed, numRuns: o.runsPerRound ?? 200, interruptAfterTimeLimit: 120_000 },
    );
    if (r.failed && r.counterexample) {
      const error = String((r.errorInstance as Error)?.message ?? r.errorInstance);
      const fixture = o.fixtureDir ? writeConfigFixture(o.fixtureDir, r.counterexample[0], error) : undefined;
      failures.push({ seed, error: error.slice(0, 500), fixture });
      o.log?.(`FAILURE (config, seed ${seed}): ${error.slice(0, 300)}${fixture ? `\n  → ${fixture}` : ''}`);
    }
    if (rounds % 20 === 0) o.log?.(`  ${configStats.inputs - start.inputs} inputs, ${failures.length} failures`);
    await new Promise((r) => setImmediate(r));
  }
  return { inputs: configStats.inputs - start.inputs, propertiesChecked: configStats.checks - start.checks, failures, rounds };
}
