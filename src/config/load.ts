/**
 * Loads and validates lb.yaml.
 *
 * The YAML is parsed into a document tree (not plain JS) so that every value keeps its source
 * position: each problem is reported as `file:line:col path: message`, and all problems are
 * reported at once in one ConfigError. Nothing but ConfigError escapes parseConfig/loadConfig.
 */
import * as fs from 'node:fs';
import {
  Document,
  LineCounter,
  Pair,
  Scalar,
  YAMLMap,
  YAMLSeq,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  parseDocument,
  stringify,
} from 'yaml';
import { ConfigError, ConfigIssue } from '../errors';
import { SCHEDULER_NAMES } from '../scheduler/index';
import {
  Config,
  DEFAULTS,
  DataplaneMode,
  HEALTH_DEFAULTS,
  HealthCheckConfig,
  HealthCheckType,
  InitialState,
  LogLevel,
  OnDown,
  OnRemove,
  Protocol,
  RealServerConfig,
  ServiceConfig,
} from './types';
import { didYouMean } from './suggest';

const TOP_KEYS = [
  'interfaces',
  'metrics',
  'log',
  'dataplane',
  'busy_poll',
  'connection_table',
  'timeouts',
  'services',
  'admin',
  'on_remove',
  'local_access',
] as const;
const INTERFACE_KEYS = ['capture', 'egress'] as const;
const METRICS_KEYS = ['listen'] as const;
const LOG_KEYS = ['level'] as const;
const CONNTABLE_KEYS = ['size'] as const;
const TIMEOUT_KEYS = ['tcp', 'tcpfin', 'udp'] as const;
const SERVICE_KEYS = [
  'name',
  'vip',
  'port',
  'protocol',
  'scheduler',
  'persistence',
  'persistence_netmask',
  'real_servers',
  'health_check',
  'on_down',
  'inhibit_on_failure',
  'quorum',
  'sorry_server',
  'initial_state',
  'on_remove',
] as const;
const REAL_SERVER_KEYS = ['address', 'port', 'weight', 'mac', 'u_threshold', 'l_threshold', 'health_check'] as const;
const HEALTH_KEYS = ['type', 'interval', 'timeout', 'rise', 'fall', 'path', 'host', 'expect_status', 'expect_body', 'port'] as const;
const HTTP_ONLY_KEYS = ['path', 'host', 'expect_status', 'expect_body'] as const;
const HEALTH_TYPES: readonly HealthCheckType[] = ['tcp', 'http', 'vip'];
const ON_DOWN: readonly OnDown[] = ['reschedule', 'drop', 'keep'];
const INITIAL_STATES: readonly InitialState[] = ['up', 'down'];
const SORRY_KEYS = ['address', 'mac'] as const;
export const RISE_FALL_MAX = 1000;
// Operator tooling (issue 5): the admin socket and what removing a real server does.
const ADMIN_KEYS = ['socket'] as const;
const ON_REMOVE: readonly OnRemove[] = ['drain', 'drop'];
/** sun_path holds 108 bytes including the terminating NUL. */
export const SOCKET_PATH_MAX = 107;

const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];
const LOG_LEVELS: readonly LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const DATAPLANE_MODES: readonly DataplaneMode[] = ['auto', 'native', 'ts'];

export const CONN_TABLE_MIN = 1024;
export const CONN_TABLE_MAX = 16777216;
export const WEIGHT_MAX = 65535;
/** Seconds: the native loop yields to the event loop after 1 ms of a wake-up anyway. */
export const BUSY_POLL_MAX = 0.001;
/** IPVS keeps thresholds in a u32; a connection table never holds more than 2^31 entries. */
export const THRESHOLD_MAX = 2 ** 31 - 1;

const NAME_RE = /^[A-Za-z0-9_.-]+$/;

type YNode = Scalar | YAMLMap | YAMLSeq;
/** A mapping's entries by key, each with its key node (for unknown-key positions) and value. */
type Fields = Map<string, { key: YNode; value: YNode | undefined }>;

// ---------------------------------------------------------------------------------------------
// Pure value parsers (no positions): shared by the validator and usable elsewhere.

/** Parses a strict dotted quad ("10.0.10.100") to an unsigned 32-bit number, or undefined. */
export function parseIPv4(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  let n = 0;
  for (let i = 1; i <= 4; i++) {
    const part = m[i];
    if (part.length > 1 && part[0] === '0') return undefined; // 010 could mean octal: refuse
    const v = Number(part);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

/**
 * Parses a duration to seconds: a non-negative number of seconds, or a string of one or more
 * number+unit parts (`500ms`, `2s`, `1m`, `1h`, `1m30s`), or a plain numeric string.
 * Returns undefined when the text is not a duration.
 */
export function parseDuration(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const s = v.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Number(s);
  const re = /(\d+(?:\.\d+)?)(ms|us|s|m|h)/y;
  const unitMs: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let ms = 0;
  let parts = 0;
  re.lastIndex = 0;
  while (re.lastIndex < s.length) {
    const m = re.exec(s);
    if (!m) return undefined;
    ms += Number(m[1]) * unitMs[m[2]];
    parts++;
  }
  if (parts === 0) return undefined;
  return Math.round(ms * 1000) / 1e6; // seconds, rounded to the microsecond
}

/** Normalizes a MAC address (`:` or `-` separated, any case) to lower-case `aa:bb:cc:dd:ee:ff`. */
export function parseMac(s: string): string | undefined {
  const m = /^([0-9A-Fa-f]{2})([:-])([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})$/.exec(
    s,
  );
  if (!m) return undefined;
  return [m[1], m[3], m[4], m[5], m[6], m[7]].join(':').toLowerCase();
}

/**
 * Parses an HTTP status set: a code ("200"), a range ("200-299") or a comma list of both
 * ("200,301-302"), codes 100-599. Returns the normalized text (no spaces), or undefined.
 */
export function parseStatusSet(v: string): string | undefined {
  const parts = v.split(',').map((p) => p.trim());
  for (const p of parts) {
    const m = /^(\d{3})(?:-(\d{3}))?$/.exec(p);
    if (!m) return undefined;
    const lo = Number(m[1]);
    const hi = m[2] !== undefined ? Number(m[2]) : lo;
    if (lo < 100 || hi > 599 || hi < lo) return undefined;
  }
  return parts.join(',');
}

/** True when `status` is in a set parsed by parseStatusSet. */
export function statusMatches(set: string, status: number): boolean {
  for (const p of set.split(',')) {
    const i = p.indexOf('-');
    const lo = Number(i < 0 ? p : p.slice(0, i));
    const hi = i < 0 ? lo : Number(p.slice(i + 1));
    if (status >= lo && status <= hi) return true;
  }
  return false;
}

function ipv4ToString(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Why an address cannot be a VIP or a real server, or undefined when it is a unicast host address. */
function notUnicast(n: number): string | undefined {
  if (n === 0) return 'the unspecified address 0.0.0.0';
  if (n === 0xffffffff) return 'the broadcast address';
  if (n >>> 24 === 0) return 'in 0.0.0.0/8 ("this network")';
  if (n >>> 24 === 127) return 'a loopback address';
  if (n >>> 28 === 0xe) return 'a multicast address';
  if (n >>> 28 === 0xf) return 'a reserved (240.0.0.0/4) address';
  return undefined;
}

// ---------------------------------------------------------------------------------------------

function joinPath(path: string, key: string): string {
  return path ? `${path}.${key}` : key;
}

function listOf(values: readonly string[]): string {
  return values.join(', ');
}

/** `unknown scheduler "wl"; did you mean "wlc"? (rr, wrr, ...)` */
function unknownValueMessage(what: string, value: string, valid: readonly string[]): string {
  const guess = didYouMean(value, valid);
  const hint = guess !== undefined ? `; did you mean "${guess}"?` : '';
  return `unknown ${what} "${value}"${hint} (${listOf(valid)})`;
}

class Validator {
  readonly issues: ConfigIssue[] = [];

  constructor(
    private readonly file: string,
    private readonly text: string,
    private readonly lc: LineCounter,
    private readonly doc: Document,
  ) {}

  // --- positions and reporting --------------------------------------------------------------

  position(offset: number): { line: number; col: number } {
    const p = this.lc.linePos(offset);
    if (p.line === 0) return { line: 1, col: offset + 1 };
    return p;
  }

  report(node: YNode | undefined, path: string, message: string, fallback?: YNode): void {
    const target = node?.range ? node : fallback;
    const offset = target?.range ? target.range[0] : 0;
    const { line, col } = this.position(offset);
    this.issues.push({ file: this.file, line, col, path, message });
  }

  reportAtOffset(offset: number, path: string, message: string): void {
    const { line, col } = this.position(offset);
    this.issues.push({ file: this.file, line, col, path, message });
  }

  /** Follows an alias (`*name`) to the node it refers to. */
  deref(node: unknown): YNode | undefined {
    if (node === null || node === undefined) return undefined;
    if (isAlias(node)) {
      const target = node.resolve(this.doc) as YNode | undefined;
      if (!target) {
        this.reportAtOffset(node.range?.[0] ?? 0, '', `invalid YAML: unknown alias "*${node.source}" (no anchor "&${node.source}" before it)`);
      }
      return target;
    }
    if (isScalar(node) || isMap(node) || isSeq(node)) return node;
    return undefined;
  }

  /** The text a scalar was written as (numbers keep their spelling: `1e3`, `0x50`). */
  scalarText(node: Scalar): string {
    if (typeof node.value === 'string') return node.value;
    if (node.range) {
      const src = this.text.slice(node.range[0], node.range[1]).trim();
      if (src) return src;
    }
    return String(node.value);
  }

  /** How a value is shown in "got ..." messages. */
  describe(node: YNode | undefined): string {
    if (!node) return 'nothing';
    if (isMap(node)) return 'a mapping';
    if (isSeq(node)) return 'a list';
    const v = node.value;
    if (v === null || v === undefined) return 'nothing';
    if (typeof v === 'string') return JSON.stringify(v);
    return this.scalarText(node);
  }

  // --- structure ------------------------------------------------------------------------------

  /**
   * Reads a mapping: reports keys that are not in `valid` (with a suggestion) and returns the
   * known ones. With `nullIsEmpty` (sections such as `log:` with nothing under it) a null
   * value counts as an empty mapping. Returns undefined (after reporting) when the node is
   * something else; `fallback` locates the report when the node has no position.
   */
  mapping(node: YNode | undefined, path: string, valid: readonly string[], what: string, fallback?: YNode, nullIsEmpty = true): Fields | undefined {
    const fields: Fields = new Map();
    if (nullIsEmpty && isScalar(node) && node.value === null) return fields;
    if (!isMap(node)) {
      this.report(node, path, `expected ${what} (keys: ${listOf(valid)}), got ${this.describe(node)}`, fallback);
      return undefined;
    }
    for (const item of node.items as Pair<unknown, unknown>[]) {
      const keyNode = this.deref(item.key);
      if (!isScalar(keyNode)) {
        this.report(keyNode, path, `expected a plain key (${listOf(valid)}), got ${this.describe(keyNode)}`, node);
        continue;
      }
      const key = this.scalarText(keyNode);
      if (!valid.includes(key)) {
        const guess = didYouMean(key, valid);
        const hint = guess !== undefined ? `; did you mean "${guess}"?` : ` (valid: ${listOf(valid)})`;
        this.report(keyNode, joinPath(path, key), `unknown key "${key}"${hint}`);
        continue;
      }
      fields.set(key, { key: keyNode, value: this.deref(item.value) });
    }
    return fields;
  }

  /** Reports a missing required key at its parent mapping; returns the value node otherwise. */
  required(fields: Fields, key: string, parent: YNode | undefined, path: string, what: string): YNode | undefined {
    const f = fields.get(key);
    if (!f) {
      this.report(parent, joinPath(path, key), `missing required key "${key}" (${what})`, this.doc.contents as YNode);
      return undefined;
    }
    return f.value;
  }

  /** The value node of `key`, or undefined when the key is absent. Keeps the key for positions. */
  optional(fields: Fields, key: string): { node: YNode | undefined; key: YNode } | undefined {
    const f = fields.get(key);
    return f ? { node: f.value, key: f.key } : undefined;
  }

  // --- scalar values --------------------------------------------------------------------------

  integer(node: YNode | undefined, path: string, min: number, max: number, fallback?: YNode): number | undefined {
    if (isScalar(node) && typeof node.value === 'number' && Number.isInteger(node.value)) {
      if (node.value >= min && node.value <= max) return node.value;
    }
    this.report(node, path, `expected an integer ${min}-${max}, got ${this.describe(node)}`, fallback);
    return undefined;
  }

  /** A string value; plain numbers are taken as written (`name: 80` is the name "80"). */
  string(node: YNode | undefined, path: string, what: string, fallback?: YNode): string | undefined {
    if (isScalar(node) && node.value !== null && node.value !== undefined && typeof node.value !== 'boolean') {
      if (typeof node.value === 'string' || typeof node.value === 'number' || typeof node.value === 'bigint') {
        return this.scalarText(node);
      }
    }
    this.report(node, path, `expected ${what}, got ${this.describe(node)}`, fallback);
    return undefined;
  }

  oneOf<T extends string>(node: YNode | undefined, path: string, what: string, valid: readonly T[], fallback?: YNode): T | undefined {
    if (isScalar(node) && typeof node.value === 'string') {
      if ((valid as readonly string[]).includes(node.value)) return node.value as T;
      this.report(node, path, unknownValueMessage(what, node.value, valid), fallback);
      return undefined;
    }
    this.report(node, path, `expected a ${what} (${listOf(valid)}), got ${this.describe(node)}`, fallback);
    return undefined;
  }

  ipv4(node: YNode | undefined, path: string, role: string, fallback?: YNode): string | undefined {
    const example = 'e.g. 10.0.10.100';
    if (!isScalar(node) || node.value === null || typeof node.value === 'boolean') {
      this.report(node, path, `expected an IPv4 address (${example}), got ${this.describe(node)}`, fallback);
      return undefined;
    }
    const text = this.scalarText(node);
    const n = parseIPv4(text);
    if (n === undefined) {
      this.report(node, path, `invalid IPv4 address "${text}": expected a dotted quad of four numbers 0-255 (${example})`, fallback);
      return undefined;
    }
    const why = notUnicast(n);
    if (why) {
      this.report(node, path, `${text} is ${why}; ${role} must be a unicast IPv4 address`, fallback);
      return undefined;
    }
    return ipv4ToString(n);
  }

  netmask(node: YNode | undefined, path: string): string | undefined {
    const text = isScalar(node) && node.value !== null ? this.scalarText(node) : undefined;
    const n = text !== undefined ? parseIPv4(text) : undefined;
    // Contiguous: the inverted mask plus one is a power of two (or zero for 0.0.0.0 inverted).
    const inv = n === undefined ? -1 : ~n >>> 0;
    if (n === undefined || (inv & (inv + 1)) !== 0) {
      const got = text !== undefined ? JSON.stringify(text) : this.describe(node);
      this.report(node, path, `expected a contiguous IPv4 netmask (e.g. 255.255.255.0 or 255.255.255.255), got ${got}`);
      return undefined;
    }
    return ipv4ToString(n);
  }

  duration(node: YNode | undefined, path: string, positive: boolean): number | undefined {
    const examples = 'e.g. 500ms, 2s, 1m, 1h or a number of seconds';
    if (!isScalar(node) || node.value === null) {
      this.report(node, path, `expected a duration (${examples}), got ${this.describe(node)}`);
      return undefined;
    }
    const v = node.value;
    const secs = parseDuration(v);
    if (secs === undefined) {
      if (typeof v === 'number') {
        this.report(node, path, `expected a non-negative duration (${examples}), got ${this.scalarText(node)}`);
      } else {
        this.report(node, path, `invalid duration ${this.describe(node)}: expected ${examples}`);
      }
      return undefined;
    }
    if (positive && secs === 0) {
      this.report(node, path, `expected a duration greater than 0 (${examples}), got ${this.describe(node)}`);
      return undefined;
    }
    return secs;
  }

  mac(node: YNode | undefined, path: string): string | undefined {
    const example = 'six hex bytes like 02:00:00:00:01:11';
    if (!isScalar(node) || node.value === null || typeof node.value === 'boolean') {
      this.report(node, path, `expected a MAC address (${example}), got ${this.describe(node)}`);
      return undefined;
    }
    const text = this.scalarText(node);
    const mac = parseMac(text);
    if (mac === undefined) {
      this.report(node, path, `invalid MAC address "${text}": expected ${example}`);
      return undefined;
    }
    if (mac === '00:00:00:00:00:00') {
      this.report(node, path, `invalid MAC address "${text}": the all-zero address is not a host`);
      return undefined;
    }
    if (parseInt(mac.slice(0, 2), 16) & 1) {
      this.report(node, path, `${text} is a multicast MAC address; a real server needs a unicast MAC (even first byte)`);
      return undefined;
    }
    return mac;
  }

  interfaceName(node: YNode | undefined, path: string, fallback?: YNode): string | undefined {
    const what = 'an interface name (1-15 characters, no spaces or "/")';
    const name = this.string(node, path, what, fallback);
    if (name === undefined) return undefined;
    if (name.length === 0 || name.length > 15 || /[\s/]/.test(name)) {
      this.report(node, path, `expected ${what}, got ${JSON.stringify(name)}`, fallback);
      return undefined;
    }
    return name;
  }

  listen(node: YNode | undefined, path: string): { listen: string; host: string; port: number } | undefined {
    const what = 'host:port with an IPv4 host and a port 1-65535 (e.g. 127.0.0.1:9469 or 0.0.0.0:9469)';
    const text = isScalar(node) && typeof node.value === 'string' ? node.value : undefined;
    const m = text !== undefined ? /^(.*):(\d+)$/.exec(text) : null;
    const addr = m ? parseIPv4(m[1]) : undefined;
    const port = m ? Number(m[2]) : NaN;
    if (!m || addr === undefined || !(port >= 1 && port <= 65535)) {
      this.report(node, path, `expected ${what}, got ${this.describe(node)}`);
      return undefined;
    }
    const host = ipv4ToString(addr);
    return { listen: `${host}:${port}`, host, port };
  }

  // --- health checks (issue 3) -----------------------------------------------------------------

  bool(node: YNode | undefined, path: string, fallback?: YNode): boolean | undefined {
    if (isScalar(node) && typeof node.value === 'boolean') return node.value;
    this.report(node, path, `expected true or false, got ${this.describe(node)}`, fallback);
    return undefined;
  }

  /**
   * A health_check mapping. At service level (`base` undefined) every default is filled in;
   * as a real server's override only the written keys are returned, checked against the
   * service's check (`base`). Returns undefined after reporting a problem.
   */
  healthCheck(
    node: YNode | undefined,
    keyNode: YNode,
    path: string,
    o: { servicePort: number | undefined; protocol: Protocol | undefined; override: boolean; base?: HealthCheckConfig },
  ): Partial<HealthCheckConfig> | undefined {
    const f = this.mapping(node, path, HEALTH_KEYS, 'a health_check mapping', keyNode, false);
    if (!f) return undefined;
    const here = node && isMap(node) ? node : keyNode;
    let ok = true;
    const out: Partial<HealthCheckConfig> = {};
    const t = this.optional(f, 'type');
    if (t) {
      const v = this.oneOf(t.node, `${path}.type`, 'health check type', HEALTH_TYPES, t.key);
      if (v === undefined) ok = false;
      else out.type = v;
    } else if (!o.override || !o.base) {
      const why = o.override ? ' (the service has no health_check to inherit it from)' : '';
      this.report(here, `${path}.type`, `missing required key "type" (${listOf(HEALTH_TYPES)})${why}`);
      ok = false;
    }
    for (const k of ['interval', 'timeout'] as const) {
      const d = this.optional(f, k);
      if (!d) continue;
      const v = this.duration(d.node ?? d.key, `${path}.${k}`, true);
      if (v === undefined) ok = false;
      else out[k] = v;
    }
    for (const k of ['rise', 'fall'] as const) {
      const d = this.optional(f, k);
      if (!d) continue;
      const v = this.integer(d.node, `${path}.${k}`, 1, RISE_FALL_MAX, d.key);
      if (v === undefined) ok = false;
      else out[k] = v;
    }
    const p = this.optional(f, 'path');
    if (p) {
      const v = this.string(p.node, `${path}.path`, 'an HTTP path starting with "/"', p.key);
      if (v !== undefined && !v.startsWith('/')) {
        this.report(p.node, `${path}.path`, `expected an HTTP path starting with "/", got ${JSON.stringify(v)}`, p.key);
        ok = false;
      } else if (v === undefined) ok = false;
      else out.path = v;
    }
    const h = this.optional(f, 'host');
    if (h) {
      const v = this.string(h.node, `${path}.host`, 'a Host header value (e.g. www.example.com)', h.key);
      if (v === undefined || /[\s]/.test(v) || v === '') {
        if (v !== undefined) this.report(h.node, `${path}.host`, `expected a Host header value without spaces, got ${JSON.stringify(v)}`, h.key);
        ok = false;
      } else out.host = v;
    }
    const es = this.optional(f, 'expect_status');
    if (es) {
      const text = isScalar(es.node) && es.node.value !== null && typeof es.node.value !== 'boolean' ? this.scalarText(es.node) : undefined;
      const v = text !== undefined ? parseStatusSet(text) : undefined;
      if (v === undefined) {
        this.report(es.node, `${path}.expect_status`, `expected HTTP status codes 100-599: a code, a range or a comma list (e.g. 200, "200-299", "200,301-302"), got ${this.describe(es.node)}`, es.key);
        ok = false;
      } else out.expect_status = v;
    }
    const eb = this.optional(f, 'expect_body');
    if (eb) {
      const v = this.string(eb.node, `${path}.expect_body`, 'a regular expression the body must match', eb.key);
      if (v === undefined) ok = false;
      else {
        try {
          new RegExp(v);
          out.expect_body = v;
        } catch (e) {
          this.report(eb.node, `${path}.expect_body`, `invalid regular expression ${JSON.stringify(v)}: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}`, eb.key);
          ok = false;
        }
      }
    }
    const pt = this.optional(f, 'port');
    if (pt) {
      const v = this.integer(pt.node, `${path}.port`, 1, 65535, pt.key);
      if (v === undefined) ok = false;
      else out.port = v;
    }
    // Type-dependent rules, on the type in effect for this mapping.
    const type = out.type ?? o.base?.type;
    if (type !== undefined && type !== 'http') {
      for (const k of HTTP_ONLY_KEYS) {
        const w = f.get(k);
        if (w) {
          this.report(w.key, `${path}.${k}`, `"${k}" applies to http checks only (this check is type ${type})`);
          ok = false;
        }
      }
    }
    if (type === 'vip') {
      if (o.protocol === 'udp') {
        this.report(t?.node ?? here, `${path}.type`, 'the vip check probes with a TCP SYN: it needs a tcp service');
        ok = false;
      }
      if (pt && o.servicePort !== undefined && out.port !== undefined && out.port !== o.servicePort) {
        this.report(pt.node, `${path}.port`, `the vip check probes the VIP on the service port ${o.servicePort} (Direct Routing cannot change it), got ${out.port}`, pt.key);
        ok = false;
      }
    }
    const interval = out.interval ?? o.base?.interval ?? HEALTH_DEFAULTS.interval;
    const timeout = out.timeout ?? o.base?.timeout ?? Math.min(HEALTH_DEFAULTS.timeout, interval);
    if (timeout > interval) {
      const at = f.get('timeout') ?? f.get('interval');
      this.report(at?.value ?? at?.key, `${path}.timeout`, `timeout (${timeout}s) must not exceed interval (${interval}s): a check must end before the next one starts`, here);
      ok = false;
    }
    if (!ok) return undefined;
    if (o.override) return out;
    const full: HealthCheckConfig = {
      type: out.type!,
      interval,
      timeout,
      rise: out.rise ?? HEALTH_DEFAULTS.rise,
      fall: out.fall ?? HEALTH_DEFAULTS.fall,
      path: out.path ?? HEALTH_DEFAULTS.path,
      expect_status: out.expect_status ?? HEALTH_DEFAULTS.expectStatus,
      port: out.port ?? o.servicePort ?? 0,
    };
    if (out.host !== undefined) full.host = out.host;
    if (out.expect_body !== undefined) full.expect_body = out.expect_body;
    return full;
  }

  /** The service's health policy keys besides health_check; false when one is invalid. */
  healthPolicy(f: Fields, path: string, vip: string | undefined, into: Partial<ServiceConfig>): boolean {
    let ok = true;
    const od = this.optional(f, 'on_down');
    if (od) {
      const v = this.oneOf(od.node, `${path}.on_down`, 'on_down action', ON_DOWN, od.key);
      if (v === undefined) ok = false;
      else into.on_down = v;
    }
    const ih = this.optional(f, 'inhibit_on_failure');
    if (ih) {
      const v = this.bool(ih.node, `${path}.inhibit_on_failure`, ih.key);
      if (v === undefined) ok = false;
      else into.inhibit_on_failure = v;
    }
    const q = this.optional(f, 'quorum');
    if (q) {
      const v = this.integer(q.node, `${path}.quorum`, 1, 4096, q.key);
      if (v === undefined) ok = false;
      else into.quorum = v;
    }
    const is = this.optional(f, 'initial_state');
    if (is) {
      const v = this.oneOf(is.node, `${path}.initial_state`, 'initial state', INITIAL_STATES, is.key);
      if (v === undefined) ok = false;
      else into.initial_state = v;
    }
    const ss = this.optional(f, 'sorry_server');
    if (ss) {
      const sp = `${path}.sorry_server`;
      let address: string | undefined;
      let mac: string | undefined;
      let sok = true;
      if (isScalar(ss.node) && typeof ss.node.value === 'string') {
        address = this.ipv4(ss.node, `${sp}.address`, 'a sorry server');
      } else {
        const sf = this.mapping(ss.node, sp, SORRY_KEYS, 'a sorry_server mapping (address, optional mac) or an address', ss.key, false);
        if (!sf) sok = false;
        else {
          const a = this.required(sf, 'address', ss.node && isMap(ss.node) ? ss.node : ss.key, sp, 'the sorry server IPv4 address');
          if (sf.has('address')) address = this.ipv4(a, `${sp}.address`, 'a sorry server', sf.get('address')!.key);
          const m = this.optional(sf, 'mac');
          if (m) {
            mac = this.mac(m.node ?? m.key, `${sp}.mac`);
            if (mac === undefined) sok = false;
          }
        }
      }
      if (address !== undefined && vip !== undefined && address === vip) {
        this.report(ss.node, `${sp}.address`, `the sorry server address must not be the VIP ${vip} (list its own address; it carries the VIP on its loopback like a real server)`, ss.key);
        sok = false;
      }
      if (!sok || address === undefined) ok = false;
      else into.sorry_server = mac !== undefined ? { address, mac } : { address };
    }
    return ok;
  }

  // --- the document ---------------------------------------------------------------------------

  config(): Config | undefined {
    const root = this.deref(this.doc.contents);
    if (!root || (isScalar(root) && root.value === null)) {
      this.reportAtOffset(0, '', 'the config is empty: expected a mapping with at least interfaces and services');
      return undefined;
    }
    if (!isMap(root)) {
      this.report(root, '', `expected a mapping at the top level (keys: ${listOf(TOP_KEYS)}), got ${this.describe(root)}`);
      return undefined;
    }
    const top = this.mapping(root, '', TOP_KEYS, 'a mapping')!;

    // interfaces
    let capture: string | undefined;
    let egress: string | undefined;
    const ifNode = this.required(top, 'interfaces', root, '', 'the capture interface, e.g. interfaces: { capture: eth0 }');
    if (top.has('interfaces')) {
      const f = this.mapping(ifNode, 'interfaces', INTERFACE_KEYS, 'a mapping', top.get('interfaces')!.key);
      if (f) {
        const parent = ifNode && isMap(ifNode) ? ifNode : top.get('interfaces')!.key;
        const c = this.required(f, 'capture', parent, 'interfaces', 'the interface VIP traffic arrives on, e.g. eth0');
        if (f.has('capture')) capture = this.interfaceName(c, 'interfaces.capture', f.get('capture')!.key);
        const e = this.optional(f, 'egress');
        egress = e ? this.interfaceName(e.node, 'interfaces.egress', e.key) : capture;
      }
    }

    // metrics
    const [defHost, defPort] = DEFAULTS.metricsListen.split(':');
    let metrics = { listen: DEFAULTS.metricsListen, host: defHost, port: Number(defPort) };
    const mNode = this.optional(top, 'metrics');
    if (mNode) {
      const f = this.mapping(mNode.node, 'metrics', METRICS_KEYS, 'a mapping', mNode.key);
      const l = f && this.optional(f, 'listen');
      if (l) {
        const v = this.listen(l.node ?? l.key, 'metrics.listen');
        if (v) metrics = v;
      }
    }

    // log
    let level: LogLevel = DEFAULTS.logLevel;
    const lNode = this.optional(top, 'log');
    if (lNode) {
      const f = this.mapping(lNode.node, 'log', LOG_KEYS, 'a mapping', lNode.key);
      const lv = f && this.optional(f, 'level');
      if (lv) level = this.oneOf(lv.node, 'log.level', 'log level', LOG_LEVELS, lv.key) ?? level;
    }

    // dataplane
    let dataplane: DataplaneMode = DEFAULTS.dataplane;
    const dNode = this.optional(top, 'dataplane');
    if (dNode) dataplane = this.oneOf(dNode.node, 'dataplane', 'dataplane mode', DATAPLANE_MODES, dNode.key) ?? dataplane;

    // busy_poll: how long the native path keeps polling its ring after it ran dry
    let busyPoll = 0;
    const bpNode = this.optional(top, 'busy_poll');
    if (bpNode) {
      const v = this.duration(bpNode.node ?? bpNode.key, 'busy_poll', false);
      if (v !== undefined && v > BUSY_POLL_MAX) {
        this.report(bpNode.node ?? bpNode.key, 'busy_poll', `expected at most 1ms (a wake-up of the native loop yields after 1 ms anyway), got ${this.describe(bpNode.node)}`);
      } else if (v !== undefined) {
        busyPoll = v;
      }
    }

    // connection_table
    let size = DEFAULTS.connTableSize;
    const ctNode = this.optional(top, 'connection_table');
    if (ctNode) {
      const f = this.mapping(ctNode.node, 'connection_table', CONNTABLE_KEYS, 'a mapping', ctNode.key);
      const s = f && this.optional(f, 'size');
      if (s) size = this.integer(s.node, 'connection_table.size', CONN_TABLE_MIN, CONN_TABLE_MAX, s.key) ?? size;
    }

    // timeouts
    const timeouts = { ...DEFAULTS.timeouts };
    const tNode = this.optional(top, 'timeouts');
    if (tNode) {
      const f = this.mapping(tNode.node, 'timeouts', TIMEOUT_KEYS, 'a mapping', tNode.key);
      if (f) {
        for (const k of TIMEOUT_KEYS) {
          const t = this.optional(f, k);
          if (t) timeouts[k] = this.duration(t.node ?? t.key, `timeouts.${k}`, true) ?? timeouts[k];
        }
      }
    }

    // services
    const services: ServiceConfig[] = [];
    const sNode = this.required(top, 'services', root, '', 'at least one service');
    if (top.has('services')) {
      const key = top.get('services')!.key;
      if (isSeq(sNode)) {
        if (sNode.items.length === 0) this.report(sNode, 'services', 'expected at least one service, got an empty list');
        this.services(sNode, services);
      } else if (!sNode || (isScalar(sNode) && sNode.value === null)) {
        this.report(key, 'services', 'expected a list of at least one service, got nothing');
      } else {
        this.report(sNode, 'services', `expected a list of services, got ${this.describe(sNode)}`);
      }
    }

    // admin (issue 5)
    let adminSocket = DEFAULTS.adminSocket;
    const aNode = this.optional(top, 'admin');
    if (aNode) {
      const f = this.mapping(aNode.node, 'admin', ADMIN_KEYS, 'a mapping', aNode.key);
      const so = f && this.optional(f, 'socket');
      if (so) adminSocket = this.socketPath(so.node ?? so.key, 'admin.socket', so.key) ?? adminSocket;
    }
    let onRemove: OnRemove | undefined;
    const orNode = this.optional(top, 'on_remove');
    if (orNode) onRemove = this.oneOf(orNode.node, 'on_remove', 'on_remove action', ON_REMOVE, orNode.key);

    // local_access: the VIPs reachable from this host itself
    let localAccess = false;
    const laNode = this.optional(top, 'local_access');
    if (laNode) localAccess = this.bool(laNode.node ?? laNode.key, 'local_access', laNode.key) ?? localAccess;

    if (this.issues.length > 0 || capture === undefined || egress === undefined) return undefined;
    return {
      local_access: localAccess,
      file: this.file,
      interfaces: { capture, egress },
      metrics,
      log: { level },
      dataplane,
      busy_poll: busyPoll,
      connection_table: { size },
      timeouts,
      services,
      admin: { socket: adminSocket },
      ...(onRemove !== undefined ? { on_remove: onRemove } : {}),
    };
  }

  /** An absolute path that fits a unix socket address (issue 5). */
  socketPath(node: YNode | undefined, path: string, fallback?: YNode): string | undefined {
    const what = `an absolute path of at most ${SOCKET_PATH_MAX} bytes (e.g. /run/lbd/lbd.sock)`;
    const v = this.string(node, path, what, fallback);
    if (v === undefined) return undefined;
    if (!v.startsWith('/') || Buffer.byteLength(v) > SOCKET_PATH_MAX || v.includes('\0') || v.endsWith('/')) {
      this.report(node, path, `expected ${what}, got ${JSON.stringify(v)}`, fallback);
      return undefined;
    }
    return v;
  }

  services(seq: YAMLSeq, out: ServiceConfig[]): void {
    const byName = new Map<string, number>();
    const byEndpoint = new Map<string, number>();
    seq.items.forEach((item, i) => {
      const path = `services[${i}]`;
      const node = this.deref(item);
      const svc = this.service(node, path, seq);
      if (!svc) return;
      // Duplicates are checked on whatever parts are valid, so they show up alongside
      // other problems in the same service.
      if (svc.name !== undefined && svc.nameNode) {
        const prevName = byName.get(svc.name);
        if (prevName !== undefined) {
          this.report(svc.nameNode, `${path}.name`, `duplicate service name "${svc.name}" (also services[${prevName}])`);
        } else {
          byName.set(svc.name, i);
        }
      }
      if (svc.vip !== undefined && svc.port !== undefined && svc.protocol !== undefined && svc.vipNode) {
        const ep = `${svc.vip}:${svc.port}/${svc.protocol}`;
        const prevEp = byEndpoint.get(ep);
        if (prevEp !== undefined) {
          this.report(svc.vipNode, path, `duplicates services[${prevEp}] (${ep})`);
        } else {
          byEndpoint.set(ep, i);
        }
      }
      if (svc.config) out.push(svc.config);
    });
  }

  service(
    node: YNode | undefined,
    path: string,
    seq: YAMLSeq,
  ):
    | {
        /** Undefined when something in the service is invalid (already reported). */
        config?: ServiceConfig;
        name?: string;
        vip?: string;
        port?: number;
        protocol?: Protocol;
        nameNode?: YNode;
        vipNode?: YNode;
      }
    | undefined {
    const f = this.mapping(node, path, SERVICE_KEYS, 'a service mapping', seq, false);
    if (!f) return undefined;
    const here = node && isMap(node) ? node : seq;
    let ok = true;
    const need = <T>(v: T | undefined): T | undefined => {
      if (v === undefined) ok = false;
      return v;
    };

    const nameNode = this.required(f, 'name', here, path, 'a unique name of letters, digits, "_", "." or "-"');
    let name: string | undefined;
    if (f.has('name')) {
      const what = 'a service name of letters, digits, "_", "." or "-"';
      name = this.string(nameNode, `${path}.name`, what, f.get('name')!.key);
      if (name !== undefined && !NAME_RE.test(name)) {
        this.report(nameNode, `${path}.name`, `invalid service name ${JSON.stringify(name)}: use only letters, digits, "_", "." or "-"`);
        name = undefined;
      }
    }
    need(name);

    const vipNode = this.required(f, 'vip', here, path, 'the virtual IPv4 address, e.g. 10.0.10.100');
    const vip = need(f.has('vip') ? this.ipv4(vipNode, `${path}.vip`, 'a VIP', f.get('vip')!.key) : undefined);

    const portNode = this.required(f, 'port', here, path, 'the service port 1-65535');
    const port = need(f.has('port') ? this.integer(portNode, `${path}.port`, 1, 65535, f.get('port')!.key) : undefined);

    let protocol: Protocol | undefined = DEFAULTS.protocol;
    const pr = this.optional(f, 'protocol');
    if (pr) protocol = need(this.oneOf(pr.node, `${path}.protocol`, 'protocol', PROTOCOLS, pr.key));

    let scheduler = DEFAULTS.scheduler;
    const sc = this.optional(f, 'scheduler');
    if (sc) scheduler = need(this.oneOf(sc.node, `${path}.scheduler`, 'scheduler', SCHEDULER_NAMES, sc.key)) ?? scheduler;

    let persistence = DEFAULTS.persistence;
    const pe = this.optional(f, 'persistence');
    if (pe) persistence = need(this.duration(pe.node ?? pe.key, `${path}.persistence`, false)) ?? persistence;

    let persistenceNetmask = DEFAULTS.persistenceNetmask;
    const pm = this.optional(f, 'persistence_netmask');
    if (pm) persistenceNetmask = need(this.netmask(pm.node ?? pm.key, `${path}.persistence_netmask`)) ?? persistenceNetmask;

    // Health checks (issue 3): parsed before the real servers, whose overrides build on them.
    const health: Partial<ServiceConfig> = {};
    const hc = this.optional(f, 'health_check');
    if (hc) {
      const v = this.healthCheck(hc.node, hc.key, `${path}.health_check`, { servicePort: port, protocol, override: false });
      if (v === undefined) ok = false;
      else health.health_check = v as HealthCheckConfig;
    }
    if (!this.healthPolicy(f, path, vip, health)) ok = false;
    const removal: Partial<ServiceConfig> = {};
    const orm = this.optional(f, 'on_remove');
    if (orm) removal.on_remove = need(this.oneOf(orm.node, `${path}.on_remove`, 'on_remove action', ON_REMOVE, orm.key));

    const realServers: RealServerConfig[] = [];
    const rsNode = this.required(f, 'real_servers', here, path, 'at least one real server');
    if (f.has('real_servers')) {
      const rsPath = `${path}.real_servers`;
      const key = f.get('real_servers')!.key;
      if (isSeq(rsNode)) {
        if (rsNode.items.length === 0) {
          this.report(rsNode, rsPath, 'expected at least one real server, got an empty list');
          ok = false;
        }
        const seen = new Map<string, number>();
        rsNode.items.forEach((item, j) => {
          const rs = this.realServer(this.deref(item), `${rsPath}[${j}]`, port, vip, rsNode, { protocol, base: health.health_check });
          if (!rs?.config) ok = false;
          if (rs?.address !== undefined && rs.addressNode) {
            const prev = seen.get(rs.address);
            if (prev !== undefined) {
              this.report(rs.addressNode, `${rsPath}[${j}].address`, `duplicate real server ${rs.address} (also real_servers[${prev}])`);
              ok = false;
            } else {
              seen.set(rs.address, j);
            }
          }
          if (rs?.config) realServers.push(rs.config);
        });
      } else if (!rsNode || (isScalar(rsNode) && rsNode.value === null)) {
        this.report(key, rsPath, 'expected a list of at least one real server, got nothing');
        ok = false;
      } else {
        this.report(rsNode, rsPath, `expected a list of real servers, got ${this.describe(rsNode)}`);
        ok = false;
      }
    }

    const parts = { name, vip, port, protocol, nameNode, vipNode };
    if (!ok || name === undefined || vip === undefined || port === undefined || protocol === undefined) return parts;
    return {
      ...parts,
      config: {
        name,
        vip,
        port,
        protocol,
        scheduler,
        persistence,
        persistence_netmask: persistenceNetmask,
        real_servers: realServers,
        ...health,
        ...removal,
      },
    };
  }

  /**
   * One real server: a mapping, or the shorthand "address" / "address:port". `servicePort` and
   * `vip` are undefined when the service's own values were invalid (already reported).
   */
  realServer(
    node: YNode | undefined,
    path: string,
    servicePort: number | undefined,
    vip: string | undefined,
    seq: YAMLSeq,
    health: { protocol?: Protocol; base?: HealthCheckConfig } = {},
  ): { config?: RealServerConfig; address?: string; addressNode?: YNode } | undefined {
    let healthOverride: Partial<HealthCheckConfig> | undefined;
    let address: string | undefined;
    let port: number | undefined;
    let weight = DEFAULTS.weight;
    let mac: string | undefined;
    const thresholds: { u_threshold?: number; l_threshold?: number } = {};
    let addressNode: YNode | undefined;
    let portNode: YNode | undefined;
    let ok = true;

    if (isScalar(node) && typeof node.value === 'string') {
      // Shorthand: "10.0.10.40" or "10.0.10.40:80".
      addressNode = node;
      portNode = node;
      const m = /^([^:]*)(?::(.*))?$/.exec(node.value)!;
      address = this.shorthandAddress(node, m[1], `${path}.address`);
      if (m[2] !== undefined) {
        const p = /^\d+$/.test(m[2]) ? Number(m[2]) : NaN;
        if (p >= 1 && p <= 65535) {
          port = p;
        } else {
          this.report(node, `${path}.port`, `expected "address" or "address:port" with a port 1-65535, got ${JSON.stringify(node.value)}`);
          ok = false;
        }
      }
    } else {
      const what = 'a real server: a mapping with address (and optional port, weight, mac, u_threshold, l_threshold) or a string "address[:port]"';
      if (!isMap(node)) {
        this.report(node, path, `expected ${what}, got ${this.describe(node)}`, seq);
        return undefined;
      }
      const f = this.mapping(node, path, REAL_SERVER_KEYS, 'a real server mapping')!;
      addressNode = this.required(f, 'address', node, path, 'the real server IPv4 address');
      if (f.has('address')) address = this.ipv4(addressNode, `${path}.address`, 'a real server', f.get('address')!.key);
      const p = this.optional(f, 'port');
      if (p) {
        portNode = p.node ?? p.key;
        port = this.integer(p.node, `${path}.port`, 1, 65535, p.key);
        if (port === undefined) ok = false;
      }
      const w = this.optional(f, 'weight');
      if (w) {
        const v = this.integer(w.node, `${path}.weight`, 0, WEIGHT_MAX, w.key);
        if (v === undefined) ok = false;
        else weight = v;
      }
      const mc = this.optional(f, 'mac');
      if (mc) {
        mac = this.mac(mc.node ?? mc.key, `${path}.mac`);
        if (mac === undefined) ok = false;
      }
      for (const k of ['u_threshold', 'l_threshold'] as const) {
        const t = this.optional(f, k);
        if (!t) continue;
        const v = this.integer(t.node, `${path}.${k}`, 0, THRESHOLD_MAX, t.key);
        if (v === undefined) ok = false;
        else thresholds[k] = v;
      }
      // As the kernel's ip_vs_add_dest: a lower threshold above the upper one is refused (with
      // no upper threshold, any lower one is: nothing would ever overload the server).
      const l = thresholds.l_threshold ?? 0;
      if (l > (thresholds.u_threshold ?? 0) && ok) {
        const at = f.get('l_threshold')!;
        this.report(
          at.value ?? at.key,
          `${path}.l_threshold`,
          thresholds.u_threshold
            ? `l_threshold (${l}) must not exceed u_threshold (${thresholds.u_threshold}): the server takes new flows again once its connections fall below l_threshold`
            : `l_threshold (${l}) needs a u_threshold: without an upper threshold the server is never overloaded`,
        );
        ok = false;
      }
      const hc = this.optional(f, 'health_check');
      if (hc) {
        healthOverride = this.healthCheck(hc.node, hc.key, `${path}.health_check`, { servicePort, protocol: health.protocol, override: true, base: health.base });
        if (healthOverride === undefined) ok = false;
      }
    }

    if (address !== undefined && vip !== undefined && address === vip) {
      this.report(addressNode, `${path}.address`, `the real server address must not be the VIP ${vip} (the VIP lives on the real servers' loopback; list their own addresses)`);
      ok = false;
    }
    if (port !== undefined && servicePort !== undefined && port !== servicePort) {
      this.report(
        portNode,
        `${path}.port`,
        `Direct Routing cannot change the destination port: real server port ${port} must equal the service port ${servicePort}`,
      );
      ok = false;
    }
    if (!ok || address === undefined) return { address, addressNode };
    const config: RealServerConfig = { address, port: servicePort ?? port ?? 0, weight };
    if (mac !== undefined) config.mac = mac;
    if (thresholds.u_threshold) config.u_threshold = thresholds.u_threshold;
    if (thresholds.l_threshold) config.l_threshold = thresholds.l_threshold;
    if (healthOverride !== undefined) config.health_check = healthOverride;
    return { config, address, addressNode };
  }

  shorthandAddress(node: Scalar, text: string, path: string): string | undefined {
    const n = parseIPv4(text);
    if (n === undefined) {
      this.report(
        node,
        path,
        `invalid IPv4 address "${text}": expected a real server "address" or "address:port" with a dotted quad of four numbers 0-255 (e.g. 10.0.10.40 or 10.0.10.40:80)`,
      );
      return undefined;
    }
    const why = notUnicast(n);
    if (why) {
      this.report(node, path, `${text} is ${why}; a real server must be a unicast IPv4 address`);
      return undefined;
    }
    return ipv4ToString(n);
  }
}

function yamlMessage(code: string, message: string): string {
  if (code === 'DUPLICATE_KEY') return 'duplicate key (each key may appear only once in a mapping)';
  if (code === 'MULTIPLE_DOCS') return 'more than one YAML document (remove the extra "---")';
  return message.replace(/\s+/g, ' ').trim();
}

/**
 * Parses, validates and normalizes a config. Throws ConfigError listing every problem found,
 * and nothing else.
 */
export function parseConfig(text: string, file: string): Config {
  const issues: ConfigIssue[] = [];
  try {
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    const lc = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lc, keepSourceTokens: true, prettyErrors: false, uniqueKeys: true });
    const v = new Validator(file, text, lc, doc);
    for (const e of doc.errors) v.reportAtOffset(e.pos[0], '', `invalid YAML: ${yamlMessage(e.code, e.message)}`);
    // With a syntax error the tree is a guess: validating it would only add noise. Duplicate
    // keys leave a sound tree (the last value wins), so keep going and report the rest too.
    const onlyDuplicates = doc.errors.every((e) => e.code === 'DUPLICATE_KEY');
    const cfg = onlyDuplicates ? v.config() : undefined;
    issues.push(...v.issues);
    if (cfg && issues.length === 0) return cfg;
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    // A bug in this module must not surface as a stack trace for a user's file.
    issues.push({ file, line: 0, col: 0, path: '', message: `cannot validate config: ${(err as Error)?.message ?? String(err)}` });
  }
  if (issues.length === 0) {
    issues.push({ file, line: 0, col: 0, path: '', message: 'invalid config' });
  }
  issues.sort((a, b) => a.line - b.line || a.col - b.col);
  throw new ConfigError(issues);
}

/** Reads and parses a config file; an unreadable file is a ConfigError too. */
export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    // "ENOENT: no such file or directory, open 'lb.yaml'" → drop the syscall and path (the
    // file name is already the location).
    const msg = String(e?.message ?? err).replace(/, \w+(?: '.*')?$/, '');
    throw new ConfigError([{ file, line: 0, col: 0, path: '', message: `cannot read config: ${msg}` }]);
  }
  return parseConfig(text, file);
}

/** The health keys a service has written (issue 3), in their normalized form. */
function healthKeys(s: ServiceConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of ['health_check', 'on_down', 'inhibit_on_failure', 'quorum', 'sorry_server', 'initial_state'] as const) {
    if (s[k] !== undefined) out[k] = s[k];
  }
  return out;
}

/**
 * The normalized config as YAML (what `lbd check` prints): every default filled in, durations
 * as seconds, real-server ports spelled out, `file` omitted. Parsing it again gives the same
 * Config.
 */
export function formatConfig(cfg: Config): string {
  const out = {
    interfaces: { capture: cfg.interfaces.capture, egress: cfg.interfaces.egress },
    metrics: { listen: cfg.metrics.listen },
    log: { level: cfg.log.level },
    dataplane: cfg.dataplane,
    busy_poll: cfg.busy_poll,
    local_access: cfg.local_access,
    connection_table: { size: cfg.connection_table.size },
    timeouts: { tcp: cfg.timeouts.tcp, tcpfin: cfg.timeouts.tcpfin, udp: cfg.timeouts.udp },
    services: cfg.services.map((s) => ({
      name: s.name,
      vip: s.vip,
      port: s.port,
      protocol: s.protocol,
      scheduler: s.scheduler,
      persistence: s.persistence,
      persistence_netmask: s.persistence_netmask,
      real_servers: s.real_servers.map((r) => {
        const rs: Record<string, unknown> = { address: r.address, port: r.port, weight: r.weight };
        if (r.mac !== undefined) rs.mac = r.mac;
        if (r.u_threshold) rs.u_threshold = r.u_threshold;
        if (r.l_threshold) rs.l_threshold = r.l_threshold;
        if (r.health_check !== undefined) rs.health_check = r.health_check;
        return rs;
      }),
      ...healthKeys(s),
      ...(s.on_remove !== undefined ? { on_remove: s.on_remove } : {}),
    })),
    admin: { socket: cfg.admin.socket },
    ...(cfg.on_remove !== undefined ? { on_remove: cfg.on_remove } : {}),
  };
  return stringify(out, { lineWidth: 0 });
}
