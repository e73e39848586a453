/**
 * The admin protocol's requests, described once: each request's `cmd` and, for each of its
 * fields, the type it must have. The daemon validates every line it reads against it and the CLI
 * every request before it sends it, so that both refuse the same requests with the same message
 * and everything past `parseRequest` works on typed values, never on what came off the socket.
 *
 * The schema checks types and ranges only; what a value means (an IPv4 address, a service that
 * exists, a scheduler name) is checked where the request is carried out (apply.ts), against the
 * running config.
 */
import { THRESHOLD_MAX, WEIGHT_MAX } from '../../config/values';
import { didYouMean } from '../../config/suggest';
import { AdminError } from './protocol';

/** How one field is checked. `optional` fields may be absent (JSON null is not absent: it is refused). */
type FieldSpec = { optional?: boolean; what?: string } & (
  | { kind: 'string' }
  /**
   * `digits`: a decimal string is accepted too and turned into the number, as the CLI's flags
   * have always been passed through.
   */
  | { kind: 'integer'; min: number; max: number; digits?: boolean; note?: string }
  | { kind: 'boolean' }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'strings' }
  /** A duration: seconds as a number, or text such as "5m" (config/values parseDuration). */
  | { kind: 'duration' }
);
type Fields = Readonly<Record<string, FieldSpec>>;

const str = (what?: string) => ({ kind: 'string', what }) as const;
const optStr = (what?: string) => ({ kind: 'string', optional: true, what }) as const;
const count = (max: number, note?: string) => ({ kind: 'integer', min: 0, max, digits: true, optional: true, note }) as const;
const REAL_FIELDS = {
  service: str('a service name or VIP:PORT[/PROTO]'),
  address: str('an IPv4 address'),
  weight: count(WEIGHT_MAX),
  mac: optStr('a MAC address or "auto"'),
  u_threshold: count(THRESHOLD_MAX, '0 = none'),
  l_threshold: count(THRESHOLD_MAX, '0 = none'),
} as const;
/** ipvsadm's -b: the scheduler's flags, comma-separated. */
const SCHED_FLAGS_WHAT = 'scheduler flags such as "mh-fallback,mh-port"; "none" or "" for none';
const SERVER_REF = { service: REAL_FIELDS.service, address: REAL_FIELDS.address } as const;

/** Each runtime change (`op`) and its fields. */
export const CHANGE_SCHEMA = {
  'server-add': REAL_FIELDS,
  'server-edit': REAL_FIELDS,
  'server-remove': SERVER_REF,
  'server-drain': SERVER_REF,
  'service-add': {
    name: str(),
    vip: str('an IPv4 address'),
    port: { kind: 'integer', min: 1, max: 65535 },
    protocol: optStr('tcp or udp'),
    scheduler: optStr('a scheduler name'),
    sched_flags: optStr(SCHED_FLAGS_WHAT),
    persistence: { kind: 'duration', optional: true },
    netmask: optStr('an IPv4 netmask'),
    on_remove: optStr('drain or drop'),
    on_miss: optStr('drop or hash'),
    servers: { kind: 'strings' },
  },
  'service-edit': {
    service: REAL_FIELDS.service,
    name: optStr(),
    scheduler: optStr('a scheduler name'),
    sched_flags: optStr(SCHED_FLAGS_WHAT),
    persistence: { kind: 'duration', optional: true },
    netmask: optStr('an IPv4 netmask'),
    on_remove: optStr('drain or drop'),
    on_miss: optStr('drop or hash'),
    // Refused by apply with a why (they identify a service); accepted here so that it can say so.
    vip: optStr('an IPv4 address'),
    port: { kind: 'integer', min: 1, max: 65535, optional: true },
    protocol: optStr('tcp or udp'),
  },
  'service-remove': { service: REAL_FIELDS.service },
} as const satisfies Record<string, Fields>;

/** Each request (`cmd`) and the fields of its `args` (an object, or absent when it has none). */
export const REQUEST_SCHEMA = {
  ping: {},
  list: {},
  connections: { limit: { kind: 'integer', min: 0, max: Number.MAX_SAFE_INTEGER, optional: true } },
  save: {},
  reload: {},
  /** lbd stop: the daemon answers, then stops; clean: it also removes every change it made to the host. */
  stop: { clean: { kind: 'boolean', optional: true } },
  /** lbd --take-over: the daemon answers who it is and, for a moment, hands over at the new lbd's SIGUSR2. */
  handover: {},
  change: 'change',
} as const satisfies Record<string, Fields | 'change'>;

// The TypeScript types the schema describes: what parseRequest returns.

type ValueOf<F> = F extends { kind: 'string' }
  ? string
  : F extends { kind: 'integer' }
    ? number
    : F extends { kind: 'boolean' }
      ? boolean
      : F extends { kind: 'enum'; values: readonly (infer V)[] }
        ? V
        : F extends { kind: 'strings' }
          ? string[]
          : F extends { kind: 'duration' }
            ? string | number
            : never;
type Pretty<T> = { [K in keyof T]: T[K] } & {};
type Shape<S> = Pretty<
  { -readonly [K in keyof S as S[K] extends { optional: true } ? never : K]: ValueOf<S[K]> } & {
    -readonly [K in keyof S as S[K] extends { optional: true } ? K : never]?: ValueOf<S[K]>;
  }
>;

export type ChangeOp = keyof typeof CHANGE_SCHEMA;
/** A runtime change, as the CLI sends it and apply.ts carries it out. */
export type Change = { [Op in ChangeOp]: Pretty<{ op: Op } & Shape<(typeof CHANGE_SCHEMA)[Op]>> }[ChangeOp];
export type AdminCommand = keyof typeof REQUEST_SCHEMA;
/** A validated request. */
export type ValidRequest = {
  [C in AdminCommand]: (typeof REQUEST_SCHEMA)[C] extends 'change' ? { cmd: C; args: Change } : { cmd: C; args: Shape<(typeof REQUEST_SCHEMA)[C]> };
}[AdminCommand];

/** The message for a line that is not a JSON object (kept: scripts and tests match it). */
export const NOT_AN_OBJECT = 'a request is one JSON object per line';

const COMMANDS = Object.keys(REQUEST_SCHEMA) as AdminCommand[];
const OPS = Object.keys(CHANGE_SCHEMA) as ChangeOp[];

/** A value as the message shows it: JSON, cut short (it came from a client and may be huge). */
function show(v: unknown): string {
  let s: string;
  try {
    s = v === undefined ? 'undefined' : (JSON.stringify(v) ?? String(v));
  } catch {
    s = String(v);
  }
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function usage(message: string): AdminError {
  return new AdminError('E_USAGE', message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function expected(f: FieldSpec): string {
  const what = f.what ? ` (${f.what})` : '';
  switch (f.kind) {
    case 'string':
      return `a string${what}`;
    case 'integer':
      return `an integer ${f.min}-${f.max}${f.note ? ` (${f.note})` : ''}`;
    case 'boolean':
      return 'true or false';
    case 'enum':
      return `one of ${f.values.join(', ')}`;
    case 'strings':
      return `an array of strings${what}`;
    case 'duration':
      return 'a duration (e.g. 300, 5m) or 0 for off';
  }
}

/** One field's value, checked and (for integers given as digits) converted; throws E_USAGE naming it. */
function checkField(name: string, f: FieldSpec, v: unknown): unknown {
  const bad = () => usage(`invalid ${name} ${show(v)}: expected ${expected(f)}`);
  switch (f.kind) {
    case 'string':
      if (typeof v !== 'string') throw bad();
      return v;
    case 'integer': {
      const n = typeof v === 'number' ? v : f.digits && typeof v === 'string' && /^\d{1,16}$/.test(v) ? Number(v) : NaN;
      if (!Number.isInteger(n) || n < f.min || n > f.max) throw bad();
      return n;
    }
    case 'boolean':
      if (typeof v !== 'boolean') throw bad();
      return v;
    case 'enum':
      if (typeof v !== 'string' || !f.values.includes(v)) throw bad();
      return v;
    case 'strings':
      if (!Array.isArray(v)) throw bad();
      v.forEach((x, i) => {
        if (typeof x !== 'string') throw usage(`invalid ${name}[${i}] ${show(x)}: expected a string${f.what ? ` (${f.what})` : ''}`);
      });
      return [...(v as string[])];
    case 'duration':
      if (typeof v !== 'string' && !(typeof v === 'number' && Number.isFinite(v))) throw bad();
      return v;
  }
}

/** An object's fields against `fields` (`skip`: keys checked by the caller); returns a new object with only them. */
function checkFields(obj: Record<string, unknown>, fields: Fields, where: string, skip: string[] = []): Record<string, unknown> {
  const known = Object.keys(fields);
  for (const k of Object.keys(obj)) {
    if (known.includes(k) || skip.includes(k)) continue;
    const guess = didYouMean(k, known);
    throw usage(
      `unknown field ${show(k)} in ${where}${guess ? `; did you mean "${guess}"?` : ''} (${known.length ? `fields: ${known.join(', ')}` : 'it has none'})`,
    );
  }
  const out: Record<string, unknown> = {};
  for (const [k, f] of Object.entries(fields)) {
    if (!Object.hasOwn(obj, k)) {
      if (!f.optional) throw usage(`missing field "${k}" in ${where}: expected ${expected(f)}`);
      continue;
    }
    out[k] = checkField(k, f, obj[k]);
  }
  return out;
}

/** A runtime change (a `change` request's args), checked against CHANGE_SCHEMA. */
export function parseChange(v: unknown): Change {
  if (!isObject(v)) throw usage(`invalid args ${show(v)}: a change is a JSON object with an "op" (${OPS.join(', ')})`);
  const op = v.op;
  if (op === undefined) throw usage(`missing field "op" in a change: expected one of ${OPS.join(', ')}`);
  if (typeof op !== 'string' || !Object.hasOwn(CHANGE_SCHEMA, op)) throw usage(`unknown change ${show(op)} (field "op": ${OPS.join(', ')})`);
  const fields = CHANGE_SCHEMA[op as ChangeOp] as Fields;
  return { op, ...checkFields(v, fields, `a ${op} change`, ['op']) } as Change;
}

/**
 * A parsed request line checked against REQUEST_SCHEMA: the typed request, or an E_USAGE
 * AdminError naming the field that is wrong.
 */
export function parseRequest(v: unknown): ValidRequest {
  if (!isObject(v)) throw usage(NOT_AN_OBJECT);
  checkFields(v, {}, 'a request', ['cmd', 'args']);
  const cmd = v.cmd;
  if (cmd === undefined) throw usage(`missing field "cmd" in a request: expected one of ${COMMANDS.join(', ')}`);
  if (typeof cmd !== 'string' || !Object.hasOwn(REQUEST_SCHEMA, cmd)) {
    const guess = typeof cmd === 'string' ? didYouMean(cmd, COMMANDS) : undefined;
    throw usage(`unknown admin request ${show(cmd)}${guess ? `; did you mean "${guess}"?` : ''} (field "cmd": ${COMMANDS.join(', ')})`);
  }
  const spec = REQUEST_SCHEMA[cmd as AdminCommand];
  if (spec === 'change') return { cmd: 'change', args: parseChange(v.args) };
  const args = v.args === undefined ? {} : v.args;
  if (!isObject(args)) throw usage(`invalid args ${show(args)}: expected an object with the fields of ${cmd} (or no args)`);
  return { cmd, args: checkFields(args, spec, `the args of ${cmd}`) } as ValidRequest;
}
