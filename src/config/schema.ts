/**
 * A JSON Schema (draft-07) of lb.yaml, generated from the field table (./fields.ts): the table
 * is the single source, schema/lb.yaml.schema.json is this function's output (`lbd schema`
 * prints it). Editors (yaml-language-server, IntelliJ) use it for completion, hover text and
 * checks as you type; `lbd check` stays the authority.
 *
 * Each field type maps to what JSON Schema can say of the values its reader (./readers.ts)
 * accepts: types, ranges, choices, patterns; a section's mapping refuses unknown keys, as the
 * loader does. Left to the loader: the rules that relate several fields (./rules.ts: duplicates,
 * timeout <= interval, keys of one health-check type or scheduler, mh_table_size's primes, ...)
 * and what a pattern cannot say (a unicast address, a duration's maximum written as text).
 */
import type { DefaultValue, Field, ScalarType, Section } from './fields';
import { CONFIG } from './fields';
import { runtimeDir } from '../runtime-dir';
import { GID_MAX, GROUP_NAME_MAX, GROUP_NAME_RE, IFNAME_MAX, SERVICE_NAME_RE, SOCKET_PATH_MAX, ipv4ToString } from './values';

export type JsonSchema = { [key: string]: unknown };

/** Where the installed package keeps the schema (the repository's copy: schema/lb.yaml.schema.json). */
export const SCHEMA_ID = 'file:///usr/share/lbd/lb.yaml.schema.json';

// --- value patterns (what ./values.ts parses) ------------------------------------------------

/** One number 0-255 without a leading zero (parseIPv4 refuses "010"). */
const OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const IPV4 = `${OCTET}(?:\\.${OCTET}){3}`;
/** PORT_MIN-PORT_MAX (1-65535), leading zeros allowed (parseListen reads the digits as a number). */
const PORT = '0*(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})';
const DURATION_TEXT = '(?:[0-9]+(?:\\.[0-9]+)?|(?:[0-9]+(?:\\.[0-9]+)?(?:ms|us|s|m|h))+)';
const STATUS_PART = '[1-5][0-9]{2}(?:-[1-5][0-9]{2})?';
const HEX = '[0-9A-Fa-f]';
/** A unicast MAC: the first byte even. The all-zero address is refused by the loader only. */
const MAC_FIRST = `${HEX}[02468ACEace]`;

/** Every contiguous netmask, /0 to /32 (parseNetmask refuses the others). */
function netmasks(): string[] {
  const out: string[] = [];
  for (let bits = 0; bits <= 32; bits++) out.push(ipv4ToString(bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0));
  return out;
}

/** The runtime directory of the environment the generator runs in is no part of the schema: its defaults name the packaged one. */
export function documented(value: DefaultValue): DefaultValue {
  const here = runtimeDir();
  const packaged = runtimeDir({});
  return typeof value === 'string' && here !== packaged && value.startsWith(`${here}/`) ? packaged + value.slice(here.length) : value;
}

function duration(f: Field): JsonSchema {
  const number: JsonSchema = { type: 'number' };
  if (f.positive) number.exclusiveMinimum = 0;
  else number.minimum = 0;
  if (f.max !== undefined) number.maximum = f.max;
  // A positive duration written as text has a non-zero digit somewhere.
  const text: JsonSchema = { type: 'string', pattern: `^\\s*${f.positive ? '(?=[^1-9]*[1-9])' : ''}${DURATION_TEXT}\\s*$` };
  return { oneOf: [number, text] };
}

/** The schema of a scalar field's value, without its annotations. */
const SCALARS: Record<ScalarType, (f: Field) => JsonSchema> = {
  int: (f) => ({ type: 'integer', ...(f.min !== undefined ? { minimum: f.min } : {}), ...(f.max !== undefined ? { maximum: f.max } : {}) }),
  bool: () => ({ type: 'boolean' }),
  enum: (f) => ({ type: 'string', enum: [...f.choices!] }),
  duration,
  ipv4: () => ({ type: 'string', pattern: `^${IPV4}$` }),
  netmask: () => ({ type: 'string', enum: netmasks() }),
  mac: () => ({ type: 'string', pattern: `^${MAC_FIRST}(?::${HEX}{2}){5}$|^${MAC_FIRST}(?:-${HEX}{2}){5}$` }),
  listen: () => ({ type: 'string', pattern: `^${IPV4}:${PORT}$` }),
  ifname: () => ({ type: 'string', minLength: 1, maxLength: IFNAME_MAX, pattern: '^[^\\s/]+$' }),
  socket: () => ({ type: 'string', maxLength: SOCKET_PATH_MAX, pattern: '^/.*[^/]$' }),
  path: () => ({ type: 'string', pattern: '^/.*[^/]$' }),
  // A name (kept as written) or a gid: a number, or digits in quotes.
  group: () => ({
    oneOf: [
      { type: 'string', maxLength: GROUP_NAME_MAX, pattern: `^(?:${GROUP_NAME_RE.source.replace(/^\^|\$$/g, '')}|[0-9]+)$` },
      { type: 'integer', minimum: 0, maximum: GID_MAX },
    ],
  }),
  // A plain number is a name as written (`name: 8080`).
  'service-name': () => ({ oneOf: [{ type: 'string', pattern: SERVICE_NAME_RE.source }, { type: 'number' }] }),
  'http-path': () => ({ type: 'string', pattern: '^/' }),
  'http-host': () => ({ type: 'string', pattern: '^\\S+$' }),
  'status-set': () => ({
    oneOf: [
      { type: 'integer', minimum: 100, maximum: 599 },
      { type: 'string', pattern: `^\\s*${STATUS_PART}\\s*(?:,\\s*${STATUS_PART}\\s*)*$` },
    ],
  }),
  regex: () => ({ type: 'string' }),
};

/** The string written instead of a section's mapping (Section.shorthand), by section name. */
const SHORTHANDS: Record<string, { schema: JsonSchema; description: string }> = {
  real_server: { schema: { type: 'string', pattern: `^${IPV4}(?::${PORT})?$` }, description: 'the shorthand "address" or "address:port"' },
  sorry_server: { schema: { type: 'string', pattern: `^${IPV4}$` }, description: 'the shorthand: an address' },
};

/** A section's mapping: its fields, the required ones, nothing else. */
function section(spec: Section, partial: boolean): JsonSchema {
  const properties: Record<string, JsonSchema> = {};
  for (const f of spec.fields) properties[f.key] = field(f);
  const required = partial ? [] : spec.fields.filter((f) => f.required !== undefined).map((f) => f.key);
  const mapping: JsonSchema = { type: 'object', properties, ...(required.length ? { required } : {}), additionalProperties: false };
  const alternatives: JsonSchema[] = [];
  // `log:` with nothing under it: every default (only where nothing is required).
  if (spec.nullIsEmpty && required.length === 0) alternatives.push({ type: 'null' });
  if (spec.shorthand) {
    const s = SHORTHANDS[spec.name];
    if (!s) throw new Error(`schema: section ${spec.name} has a shorthand the schema does not know`);
    alternatives.push({ ...s.schema, description: s.description });
  }
  return alternatives.length ? { oneOf: [mapping, ...alternatives] } : mapping;
}

function field(f: Field): JsonSchema {
  let value: JsonSchema;
  if (f.type === 'section') value = section(f.section!, f.inherit !== undefined);
  else if (f.type === 'list') value = { type: 'array', minItems: 1, items: section(f.section!, false) };
  else value = SCALARS[f.type](f);
  // Hover text: the table's description, then what the table knows besides.
  const notes = [f.description];
  if (f.required !== undefined) notes.push(`Required: ${f.required}.`);
  if (f.derived !== undefined) notes.push(`Default: ${f.derived}.`);
  if (f.onlyWhen) notes.push(`Only with ${f.onlyWhen.key}: ${f.onlyWhen.equals}.`);
  const description = notes.join('. ').replace(/\.\. /g, '. ');
  const def = f.default ?? f.implied;
  return { description, ...(def !== undefined ? { default: documented(def) } : {}), ...value };
}

/** The JSON Schema of lb.yaml (draft-07), from the field table. */
export function configSchema(): JsonSchema {
  const root = section(CONFIG, false);
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $id: SCHEMA_ID,
    title: 'lbd configuration (lb.yaml)',
    description:
      'The configuration of lbd, the userspace L4 Direct Routing load balancer; generated from its field table by `lbd schema`. ' +
      'It checks every key, type, range and choice; rules that relate several fields (duplicates, timeout <= interval, keys of one ' +
      'health-check type or scheduler, a real server that is the VIP, ...) are left to `lbd check`, which has the last word.',
    ...root,
  };
}

/** The schema as the committed file schema/lb.yaml.schema.json holds it. */
export function configSchemaText(): string {
  return `${JSON.stringify(configSchema(), null, 2)}\n`;
}
