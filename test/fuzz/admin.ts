/**
 * Property-based fuzzing of the admin protocol: the schema (src/control/admin/schema.ts
 * parseRequest) on random JSON values and request-shaped objects, and the AdminServer's framing
 * (server.ts) on random request lines (JSON, request-shaped objects, byte strings that are not
 * UTF-8, blank lines, CRs) pipelined on one connection to a whole daemon on in-memory ports.
 *
 * Properties:
 *   - parseRequest returns a request of the schema, or throws an AdminError E_USAGE whose message
 *     names what is wrong (the field, "cmd", "op", "args", or that a request is one JSON object);
 *     never another exception (checkRequest);
 *   - the server answers every non-blank line, in order, with one JSON answer line: a result, or
 *     an error with a code of lbd's closed set (src/errors.ts), never E_INTERNAL (a bug); a line
 *     the schema refuses gets E_USAGE with parseRequest's very message; a line that is no JSON
 *     the fixed "one JSON object per line" message; and the server keeps answering (a ping after
 *     every batch, on the same connection and on a new one) (checkServerLines); the batch is
 *     written in random pieces, so that lines and UTF-8 characters are split across reads.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Control } from '../../src/control/admin/control';
import { AdminError } from '../../src/control/admin/protocol';
import { CHANGE_SCHEMA, NOT_AN_OBJECT, REQUEST_SCHEMA, parseRequest } from '../../src/control/admin/schema';
import { AdminServer } from '../../src/control/admin/server';
import { ERROR_CODES } from '../../src/errors';
import { BASE_CONFIG, testDaemon, type TestDaemon } from '../helpers/daemon';

const COMMANDS = Object.keys(REQUEST_SCHEMA);
const OPS = Object.keys(CHANGE_SCHEMA);
const FIELDS = [...new Set([...Object.values(CHANGE_SCHEMA).flatMap((f) => Object.keys(f)), 'limit', 'clean'])];

const fieldValueArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    'web',
    'web2',
    '10.0.10.100:80',
    '10.0.10.100:80/tcp',
    '10.0.10.40',
    '10.0.10.112',
    '10.0.10.999',
    '02:00:00:00:00:41',
    'auto',
    'rr',
    'mh',
    'sh',
  ),
  fc.constantFrom('tcp', 'udp', 'drain', 'drop', 'hash', 'mh-fallback,mh-port', 'none', '', '255.255.255.0', '5m', '300', '65535', '0', '-1', '1e3', 'x'),
  fc.constantFrom(0, 1, 80, 65535, 65536, -1, 0.5, 1e308, Number.MAX_SAFE_INTEGER, 2 ** 53 + 2),
  fc.array(fc.constantFrom('10.0.10.40', '10.0.10.111', '10.0.10.112', 'x'), { maxLength: 3 }),
  fc.jsonValue({ maxDepth: 2 }),
);

/** Objects shaped like requests: a known or unknown cmd, args with the schema's fields (right or wrong types), extras. */
const requestLikeArb: fc.Arbitrary<unknown> = fc
  .record(
    {
      cmd: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...COMMANDS) }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) }),
      args: fc.oneof(
        {
          weight: 8,
          arbitrary: fc
            .record(
              {
                op: fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...OPS) }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) }),
                fields: fc.dictionary(
                  fc.oneof({ weight: 8, arbitrary: fc.constantFrom(...FIELDS) }, { weight: 1, arbitrary: fc.string({ maxLength: 8 }) }),
                  fieldValueArb,
                  {
                    maxKeys: 7,
                  },
                ),
              },
              { requiredKeys: ['fields'] },
            )
            .map(({ op, fields }) => (op === undefined ? fields : { op, ...fields })),
        },
        { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
      ),
      extra: fc.jsonValue({ maxDepth: 1 }),
    },
    { requiredKeys: [] },
  )
  .map((o) => {
    // Drop `extra` most of the time (it only tests the unknown-field refusal).
    const r = o as Record<string, unknown>;
    if (typeof r.extra !== 'string') delete r.extra;
    return r;
  });

const STRINGS: Record<string, readonly string[]> = {
  service: ['web', 'web2', 'nope', '10.0.10.100:80', '10.0.10.100:80/tcp', '10.0.10.100:81/udp', ''],
  name: ['web', 'web2', 'x', 'bad name', ''],
  address: ['10.0.10.40', '10.0.10.111', '10.0.10.112', '10.0.10.999', 'host', ''],
  vip: ['10.0.10.100', '10.0.10.102', '0.0.0.0', '1.2.3'],
  mac: ['02:00:00:00:00:41', 'auto', 'zz', ''],
  protocol: ['tcp', 'udp', 'sctp'],
  scheduler: ['rr', 'wlc', 'mh', 'sh', 'nope'],
  sched_flags: ['mh-fallback,mh-port', 'sh-port', 'none', '', 'bogus'],
  netmask: ['255.255.255.0', '255.0.255.0', 'x'],
  on_remove: ['drain', 'drop', 'x'],
  on_miss: ['drop', 'hash', 'x'],
};

/** Requests of the schema's types (most accepted by it), so that the daemon carries them out: changes, lists, reloads. */
const typedRequestArb: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(...COMMANDS.filter((c) => c !== 'change')).map((cmd) => ({ cmd })),
  fc.record({ cmd: fc.constant('connections'), args: fc.record({ limit: fc.constantFrom(0, 1, 10, 1e6) }) }),
  fc.constantFrom(...OPS).chain((op) => {
    const spec = CHANGE_SCHEMA[op as keyof typeof CHANGE_SCHEMA] as Record<string, { kind: string; optional?: boolean }>;
    const fields: Record<string, fc.Arbitrary<unknown>> = {};
    for (const [k, f] of Object.entries(spec)) {
      fields[k] =
        f.kind === 'string'
          ? fc.constantFrom(...(STRINGS[k] ?? ['x']))
          : f.kind === 'integer'
            ? fc.oneof(fc.constantFrom(0, 1, 2, 80, 100), fc.constantFrom('3', '10'))
            : f.kind === 'strings'
              ? fc.array(fc.constantFrom(...STRINGS.address), { minLength: 1, maxLength: 3 })
              : f.kind === 'duration'
                ? fc.constantFrom(0, 300, '5m', 'x')
                : fc.boolean();
    }
    const required = Object.entries(spec)
      .filter(([, f]) => !f.optional)
      .map(([k]) => k);
    return fc.record(fields, { requiredKeys: required as never[] }).map((args) => ({ cmd: 'change', args: { op, ...args } }));
  }),
);

export const requestValueArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: typedRequestArb },
  { weight: 4, arbitrary: requestLikeArb },
  { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }) },
);

/** Request lines: JSON of the above, JSON with __proto__ and duplicate keys, broken JSON, bytes that are not UTF-8. */
export const lineArb: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: requestValueArb.map((v) => Buffer.from(JSON.stringify(v) ?? 'null')) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        '{"cmd":"ping","__proto__":{"cmd":"stop"}}',
        '{"__proto__":{"x":1},"cmd":"list"}',
        '{"cmd":"ping","cmd":"stop"}',
        '{"cmd":"connections","args":{"limit":1e400}}',
        '{"cmd":"connections","args":{"limit":-0}}',
        '{"cmd":"change","args":{"op":"constructor"}}',
        '{"cmd":"toString"}',
        '{"cmd":"hasOwnProperty","args":{}}',
        '{"cmd":"change","args":{"op":"server-add","service":"web","address":"10.0.10.112","__proto__":{"weight":"x"}}}',
        '{"cmd":"list"}\r',
        '\t{"cmd":"ping"}  ',
        '{"cmd":"ping"',
        '{cmd:ping}',
        '[{"cmd":"ping"}]',
        '"{\\"cmd\\":\\"ping\\"}"',
        '\ufeff{"cmd":"ping"}',
        '\u2028',
        ' ',
      )
      .map((s) => Buffer.from(s)),
  },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b)) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 60 }).map((s) => Buffer.from(s)) },
);

export const adminStats = { values: 0, lines: 0, answers: 0, checks: 0, accepted: 0, refused: 0, byCode: {} as Record<string, number> };

/** What a refusal's message must say: the field that is wrong (or the cmd, the op, the args, or what a request is). */
const NAMED =
  /^(a request is one JSON object per line$|missing field "(cmd|op|[a-z_]+)"|unknown field ".*" in |unknown admin request .*\(field "cmd"|unknown change .*\(field "op"|invalid args |invalid ([a-z_]+)(\[\d+\])? )/s;

/** parseRequest's property on one value; returns its refusal's message, or null when it accepts it. */
export function checkRequest(v: unknown, count = true): string | null {
  if (count) adminStats.values++;
  adminStats.checks += 2;
  try {
    const r = parseRequest(v);
    assert.ok(COMMANDS.includes(r.cmd), `accepted a request of cmd ${JSON.stringify(r.cmd)}`);
    assert.ok(r.args !== null && typeof r.args === 'object' && !Array.isArray(r.args), 'accepted args that are not an object');
    adminStats.accepted++;
    return null;
  } catch (e) {
    if (!(e instanceof AdminError)) assert.fail(`parseRequest threw ${(e as Error)?.constructor?.name ?? typeof e}: ${(e as Error)?.stack ?? e}`);
    if (e.code !== 'E_USAGE') assert.fail(`parseRequest refused with ${e.code}, not E_USAGE: ${e.message}`);
    const m = NAMED.exec(e.message);
    if (!m) assert.fail(`a refusal that names no field: ${JSON.stringify(e.message)} (for ${JSON.stringify(v)?.slice(0, 200)})`);
    const named = m[4] ?? m[2];
    if (named !== undefined && m[4] !== undefined && !FIELDS.includes(named) && named !== 'args')
      assert.fail(`a refusal naming ${named}, no field of the schema: ${e.message}`);
    adminStats.refused++;
    return e.message;
  }
}

// ---- The server ----------------------------------------------------------------------------------

interface Answer {
  ok: boolean;
  result?: unknown;
  error?: { code: string; message: string };
}

/** A daemon on in-memory ports with its admin socket; close() ends both. */
export async function adminUnderTest(dir: string): Promise<{ sock: string; t: TestDaemon; close(): Promise<void> }> {
  fs.mkdirSync(dir, { recursive: true });
  const sock = path.join(fs.mkdtempSync(path.join(dir, 'a-')), 'lbd.sock');
  const t = await testDaemon(BASE_CONFIG());
  const admin = new AdminServer(new Control(t.daemon), sock);
  await admin.listen();
  return {
    sock,
    t,
    async close() {
      await admin.close();
      await t.daemon.stop();
    },
  };
}

/** Sends `payload` on a new connection (or `conn`), collects `count` answer lines. */
async function exchange(
  sock: string,
  payload: Buffer,
  count: number,
  cuts: number[] = [],
  timeoutMs = 10_000,
): Promise<{ answers: string[]; conn: net.Socket }> {
  const s = net.createConnection(sock);
  s.on('error', () => {});
  let buf = '';
  const answers: string[] = [];
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${answers.length} answers of ${count} after ${timeoutMs} ms`)), timeoutMs);
    s.setEncoding('utf8');
    s.on('data', (d: string) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        answers.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
      if (answers.length >= count) {
        clearTimeout(timer);
        resolve();
      }
    });
    s.on('close', () => {
      clearTimeout(timer);
      if (answers.length >= count) resolve();
      else reject(new Error(`the server closed the connection after ${answers.length} answers of ${count}`));
    });
    // In pieces of the given sizes, a turn of the event loop apart (lines and UTF-8 characters split across reads), then the rest.
    void (async () => {
      let at = 0;
      for (const n of cuts) {
        if (at >= payload.length || s.destroyed) break;
        s.write(payload.subarray(at, at + n));
        at += n;
        await new Promise((r) => setImmediate(r));
      }
      if (at < payload.length && !s.destroyed) s.write(payload.subarray(at));
    })();
  });
  return { answers, conn: s };
}

/**
 * The server's property on one batch of lines, pipelined on one connection and then a ping; then a
 * ping on a new connection.
 */
export async function checkServerLines(sock: string, lines: Buffer[], cuts: number[] = []): Promise<void> {
  const payload = Buffer.concat([...lines.flatMap((l) => [l, Buffer.from('\n')]), Buffer.from('{"cmd":"ping"}\n')]);
  // What the server sees: the bytes as UTF-8, split at newlines, trimmed, blank ones skipped.
  const seen = payload
    .toString('utf8')
    .split('\n')
    .slice(0, -1)
    .map((l) => l.trim())
    .filter((l) => l !== '');
  adminStats.lines += seen.length;
  const { answers, conn } = await exchange(sock, payload, seen.length, cuts);
  conn.destroy();
  assert.equal(answers.length, seen.length, 'one answer a line');
  for (const [i, text] of answers.entries()) {
    const where = `line ${i} ${JSON.stringify(seen[i].slice(0, 200))}`;
    let a: Answer;
    try {
      a = JSON.parse(text) as Answer;
    } catch {
      assert.fail(`${where}: the answer is no JSON: ${text.slice(0, 200)}`);
    }
    adminStats.answers++;
    adminStats.checks += 3;
    if (a.ok === true) continue;
    if (a.ok !== false || !a.error || typeof a.error.message !== 'string' || a.error.message === '')
      assert.fail(`${where}: malformed answer ${text.slice(0, 200)}`);
    const code = a.error.code;
    adminStats.byCode[code] = (adminStats.byCode[code] ?? 0) + 1;
    if (!(ERROR_CODES as readonly string[]).includes(code)) assert.fail(`${where}: code ${code} is not one of lbd's`);
    if (code === 'E_INTERNAL') assert.fail(`${where}: E_INTERNAL (an unexpected failure in the daemon): ${a.error.message}`);
    let value: unknown;
    try {
      value = JSON.parse(seen[i]);
    } catch {
      if (code !== 'E_USAGE' || a.error.message !== NOT_AN_OBJECT) assert.fail(`${where}: no JSON, answered ${code} ${a.error.message}`);
      continue;
    }
    const refusal = checkRequest(value, false);
    if (refusal !== null && (code !== 'E_USAGE' || a.error.message !== refusal))
      assert.fail(`${where}: the schema refuses it (${refusal}), the server answered ${code}: ${a.error.message}`);
  }
  const last = JSON.parse(answers[answers.length - 1]) as Answer;
  assert.equal(last.ok, true, 'the ping after the batch');
  const again = await exchange(sock, Buffer.from('{"cmd":"ping"}\n'), 1);
  again.conn.destroy();
  assert.equal((JSON.parse(again.answers[0]) as Answer).ok, true, 'a ping on a new connection');
}

// ---- Fixtures and runs ---------------------------------------------------------------------------

/** A failing batch: one line per line of the file, as base64 (the lines may be any bytes). */
export function writeAdminFixture(dir: string, lines: Buffer[], error: string): string {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `admin-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e6).toString(36)}.json`);
  fs.writeFileSync(file, JSON.stringify({ error: error.slice(0, 2000), lines: lines.map((l) => l.toString('base64')) }, null, 1) + '\n');
  return file;
}

export function readAdminFixtures(dir: string): { file: string; lines: Buffer[] }[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({
      file: f,
      lines: (JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { lines: string[] }).lines.map((l) => Buffer.from(l, 'base64')),
    }));
}

export interface AdminRunOptions {
  seed: number;
  /** Stop after this many lines (server) + values (schema), or at `deadline`. */
  inputs?: number;
  deadline?: number;
  runsPerRound?: number;
  fixtureDir?: string;
  maxFailures?: number;
  log?: (s: string) => void;
}

export async function fuzzAdmin(
  o: AdminRunOptions,
): Promise<{ inputs: number; propertiesChecked: number; failures: { seed: number; error: string; fixture?: string }[]; rounds: number }> {
  const start = { ...adminStats };
  const failures: { seed: number; error: string; fixture?: string }[] = [];
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-fuzz-admin-'));
  let rounds = 0;
  const count = () => adminStats.values - start.values + adminStats.lines - start.lines;
  const done = () => (o.inputs !== undefined && count() >= o.inputs) || (o.deadline !== undefined && Date.now() >= o.deadline);
  try {
    while (!done() && failures.length < (o.maxFailures ?? 5)) {
      const seed = (o.seed + rounds) | 0;
      rounds++;
      // The schema alone, fast.
      const r1 = fc.check(
        fc.property(requestValueArb, (v) => void checkRequest(v)),
        { seed, numRuns: (o.runsPerRound ?? 100) * 10 },
      );
      if (r1.failed && r1.counterexample) {
        const error = String((r1.errorInstance as Error)?.message ?? r1.errorInstance);
        const lines = [Buffer.from(JSON.stringify(r1.counterexample[0]) ?? 'null')];
        const fixture = o.fixtureDir ? writeAdminFixture(o.fixtureDir, lines, error) : undefined;
        failures.push({ seed, error: error.slice(0, 500), fixture });
        o.log?.(`FAILURE (admin schema, seed ${seed}): ${error.slice(0, 300)}`);
      }
      // The server, on a fresh daemon each round.
      const a = await adminUnderTest(tmp);
      try {
        const r2 = await fc.check(
          fc.asyncProperty(fc.array(lineArb, { minLength: 1, maxLength: 24 }), fc.array(fc.integer({ min: 1, max: 48 }), { maxLength: 12 }), (lines, cuts) =>
            checkServerLines(a.sock, lines, cuts),
          ),
          { seed, numRuns: o.runsPerRound ?? 100, interruptAfterTimeLimit: 120_000 },
        );
        if (r2.failed && r2.counterexample) {
          const error = String((r2.errorInstance as Error)?.message ?? r2.errorInstance);
          const fixture = o.fixtureDir ? writeAdminFixture(o.fixtureDir, r2.counterexample[0], error) : undefined;
          failures.push({ seed, error: error.slice(0, 500), fixture });
          o.log?.(`FAILURE (admin server, seed ${seed}): ${error.slice(0, 300)}`);
        }
      } finally {
        await a.close();
      }
      if (rounds % 5 === 0) o.log?.(`  ${count()} inputs, ${failures.length} failures`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return { inputs: count(), propertiesChecked: adminStats.checks - start.checks, failures, rounds };
}
