/**
 * One reader per scalar field type of ./fields.ts: YAML node → normalized value, or a reported
 * problem (with the node's position) and undefined. The value syntax itself is in ./values.ts.
 *
 * `node` is the value written, `key` the key it is written under. Most readers report at the
 * value and fall back to the key when there is none; the duration, netmask, MAC, listen and
 * socket readers (and a `valueOrKey` bool) read the key itself when nothing follows it.
 */
import { isScalar } from 'yaml';
import type { Field, ScalarType } from './fields';
import { didYouMean } from './suggest';
import type { Validator, YNode } from './validate';
import {
  GID_MAX,
  GROUP_NAME_MAX,
  GROUP_NAME_RE,
  IFNAME_MAX,
  SERVICE_NAME_RE,
  SOCKET_PATH_MAX,
  ipv4ToString,
  notUnicast,
  parseDuration,
  parseIPv4,
  parseListen,
  parseMac,
  parseNetmask,
  parseStatusSet,
} from './values';

export function listOf(values: readonly string[]): string {
  return values.join(', ');
}

type Reader = (v: Validator, f: Field, node: YNode | undefined, key: YNode, path: string) => unknown;

/** `unknown scheduler "wl"; did you mean "wlc"? (rr, wrr, ...)` */
function unknownValueMessage(what: string, value: string, valid: readonly string[]): string {
  const guess = didYouMean(value, valid);
  const hint = guess !== undefined ? `; did you mean "${guess}"?` : '';
  return `unknown ${what} "${value}"${hint} (${listOf(valid)})`;
}

export function integer(v: Validator, node: YNode | undefined, path: string, min: number, max: number, fallback?: YNode): number | undefined {
  if (isScalar(node) && typeof node.value === 'number' && Number.isInteger(node.value)) {
    if (node.value >= min && node.value <= max) return node.value;
  }
  v.report(node, path, `expected an integer ${min}-${max}, got ${v.describe(node)}`, fallback);
  return undefined;
}

/** A string value; plain numbers are taken as written (`name: 80` is the name "80"). */
export function string(v: Validator, node: YNode | undefined, path: string, what: string, fallback?: YNode): string | undefined {
  if (isScalar(node) && node.value !== null && node.value !== undefined && typeof node.value !== 'boolean') {
    if (typeof node.value === 'string' || typeof node.value === 'number' || typeof node.value === 'bigint') {
      return v.scalarText(node);
    }
  }
  v.report(node, path, `expected ${what}, got ${v.describe(node)}`, fallback);
  return undefined;
}

export function oneOf<T extends string>(
  v: Validator,
  node: YNode | undefined,
  path: string,
  what: string,
  valid: readonly T[],
  fallback?: YNode,
): T | undefined {
  if (isScalar(node) && typeof node.value === 'string') {
    if ((valid as readonly string[]).includes(node.value)) return node.value as T;
    v.report(node, path, unknownValueMessage(what, node.value, valid), fallback);
    return undefined;
  }
  v.report(node, path, `expected a ${what} (${listOf(valid)}), got ${v.describe(node)}`, fallback);
  return undefined;
}

/** A unicast IPv4 address; `role` names what it is for ("a VIP"). */
export function ipv4(v: Validator, node: YNode | undefined, path: string, role: string, fallback?: YNode): string | undefined {
  const example = 'e.g. 10.0.10.100';
  if (!isScalar(node) || node.value === null || typeof node.value === 'boolean') {
    v.report(node, path, `expected an IPv4 address (${example}), got ${v.describe(node)}`, fallback);
    return undefined;
  }
  const text = v.scalarText(node);
  const n = parseIPv4(text);
  if (n === undefined) {
    v.report(node, path, `invalid IPv4 address "${text}": expected a dotted quad of four numbers 0-255 (${example})`, fallback);
    return undefined;
  }
  const why = notUnicast(n);
  if (why) {
    v.report(node, path, `${text} is ${why}; ${role} must be a unicast IPv4 address`, fallback);
    return undefined;
  }
  return ipv4ToString(n);
}

function netmask(v: Validator, node: YNode | undefined, path: string): string | undefined {
  const text = isScalar(node) && node.value !== null ? v.scalarText(node) : undefined;
  const n = text !== undefined ? parseNetmask(text) : undefined;
  if (n === undefined) {
    const got = text !== undefined ? JSON.stringify(text) : v.describe(node);
    v.report(node, path, `expected a contiguous IPv4 netmask (e.g. 255.255.255.0 or 255.255.255.255), got ${got}`);
    return undefined;
  }
  return ipv4ToString(n);
}

function duration(v: Validator, node: YNode | undefined, path: string, positive: boolean): number | undefined {
  const examples = 'e.g. 500ms, 2s, 1m, 1h or a number of seconds';
  if (!isScalar(node) || node.value === null) {
    v.report(node, path, `expected a duration (${examples}), got ${v.describe(node)}`);
    return undefined;
  }
  const value = node.value;
  const secs = parseDuration(value);
  if (secs === undefined) {
    if (typeof value === 'number') {
      v.report(node, path, `expected a non-negative duration (${examples}), got ${v.scalarText(node)}`);
    } else {
      v.report(node, path, `invalid duration ${v.describe(node)}: expected ${examples}`);
    }
    return undefined;
  }
  if (positive && secs === 0) {
    v.report(node, path, `expected a duration greater than 0 (${examples}), got ${v.describe(node)}`);
    return undefined;
  }
  return secs;
}

function mac(v: Validator, node: YNode | undefined, path: string): string | undefined {
  const example = 'six hex bytes like 02:00:00:00:01:11';
  if (!isScalar(node) || node.value === null || typeof node.value === 'boolean') {
    v.report(node, path, `expected a MAC address (${example}), got ${v.describe(node)}`);
    return undefined;
  }
  const text = v.scalarText(node);
  const m = parseMac(text);
  if (m === undefined) {
    v.report(node, path, `invalid MAC address "${text}": expected ${example}`);
    return undefined;
  }
  if (m === '00:00:00:00:00:00') {
    v.report(node, path, `invalid MAC address "${text}": the all-zero address is not a host`);
    return undefined;
  }
  if (parseInt(m.slice(0, 2), 16) & 1) {
    v.report(node, path, `${text} is a multicast MAC address; a real server needs a unicast MAC (even first byte)`);
    return undefined;
  }
  return m;
}

function listen(v: Validator, node: YNode | undefined, path: string): { listen: string; host: string; port: number } | undefined {
  const what = 'host:port with an IPv4 host and a port 1-65535 (e.g. 127.0.0.1:9469 or 0.0.0.0:9469)';
  const parsed = isScalar(node) && typeof node.value === 'string' ? parseListen(node.value) : undefined;
  if (!parsed) v.report(node, path, `expected ${what}, got ${v.describe(node)}`);
  return parsed;
}

function bool(v: Validator, node: YNode | undefined, path: string, fallback?: YNode): boolean | undefined {
  if (isScalar(node) && typeof node.value === 'boolean') return node.value;
  v.report(node, path, `expected true or false, got ${v.describe(node)}`, fallback);
  return undefined;
}

/** A string that must also pass `bad` (which returns the message when it does not). */
function refined(
  what: string,
  bad: (s: string) => string | undefined,
): (v: Validator, node: YNode | undefined, path: string, fallback?: YNode) => string | undefined {
  return (v, node, path, fallback) => {
    const s = string(v, node, path, what, fallback);
    if (s === undefined) return undefined;
    const message = bad(s);
    if (message === undefined) return s;
    v.report(node, path, message, fallback);
    return undefined;
  };
}

const IFNAME_WHAT = `an interface name (1-${IFNAME_MAX} characters, no spaces or "/")`;
const interfaceName = refined(IFNAME_WHAT, (s) =>
  s.length === 0 || s.length > IFNAME_MAX || /[\s/]/.test(s) ? `expected ${IFNAME_WHAT}, got ${JSON.stringify(s)}` : undefined,
);

/** An absolute path that fits a unix socket address. */
const SOCKET_WHAT = `an absolute path of at most ${SOCKET_PATH_MAX} bytes (e.g. /run/lbd/lbd.sock)`;
const socketPath = refined(SOCKET_WHAT, (s) =>
  !s.startsWith('/') || Buffer.byteLength(s) > SOCKET_PATH_MAX || s.includes('\0') || s.endsWith('/')
    ? `expected ${SOCKET_WHAT}, got ${JSON.stringify(s)}`
    : undefined,
);

/** A unix group: a name (kept as written) or a numeric gid (a number; digits in quotes too). */
function group(v: Validator, node: YNode | undefined, path: string, fallback?: YNode): string | number | undefined {
  const what = `a group name (e.g. lbd) or a numeric gid 0-${GID_MAX}`;
  const s = string(v, node, path, what, fallback);
  if (s === undefined) return undefined;
  if (/^\d+$/.test(s)) {
    if (Number(s) <= GID_MAX) return Number(s);
    v.report(node, path, `expected ${what}, got ${s}`, fallback);
    return undefined;
  }
  if (GROUP_NAME_RE.test(s) && Buffer.byteLength(s) <= GROUP_NAME_MAX) return s;
  v.report(
    node,
    path,
    `invalid group name ${JSON.stringify(s)}: expected ${what}; a name starts with a letter or "_", has letters, digits, "_", "." or "-", and at most ${GROUP_NAME_MAX} characters`,
    fallback,
  );
  return undefined;
}

/** An absolute path of a file. */
const FILE_WHAT = 'an absolute file path (e.g. /run/lbd/lbd_eth0.state)';
const filePath = refined(FILE_WHAT, (s) =>
  !s.startsWith('/') || s.includes('\0') || s.endsWith('/') ? `expected ${FILE_WHAT}, got ${JSON.stringify(s)}` : undefined,
);

const serviceName = refined('a service name of letters, digits, "_", "." or "-"', (s) =>
  SERVICE_NAME_RE.test(s) ? undefined : `invalid service name ${JSON.stringify(s)}: use only letters, digits, "_", "." or "-"`,
);

const httpPath = refined('an HTTP path starting with "/"', (s) =>
  s.startsWith('/') ? undefined : `expected an HTTP path starting with "/", got ${JSON.stringify(s)}`,
);

const httpHost = refined('a Host header value (e.g. www.example.com)', (s) =>
  /[\s]/.test(s) || s === '' ? `expected a Host header value without spaces, got ${JSON.stringify(s)}` : undefined,
);

const regex = refined('a regular expression the body must match', (s) => {
  try {
    new RegExp(s);
    return undefined;
  } catch (e) {
    return `invalid regular expression ${JSON.stringify(s)}: ${(e as Error).message.replace(/^Invalid regular expression: /, '')}`;
  }
});

function statusSet(v: Validator, node: YNode | undefined, path: string, fallback?: YNode): string | undefined {
  const text = isScalar(node) && node.value !== null && typeof node.value !== 'boolean' ? v.scalarText(node) : undefined;
  const set = text !== undefined ? parseStatusSet(text) : undefined;
  if (set === undefined) {
    v.report(
      node,
      path,
      `expected HTTP status codes 100-599: a code, a range or a comma list (e.g. 200, "200-299", "200,301-302"), got ${v.describe(node)}`,
      fallback,
    );
  }
  return set;
}

const READERS: Record<ScalarType, Reader> = {
  int: (v, f, node, key, path) => integer(v, node, path, f.min!, f.max!, key),
  bool: (v, f, node, key, path) => bool(v, f.valueOrKey ? (node ?? key) : node, path, key),
  enum: (v, f, node, key, path) => oneOf(v, node, path, f.noun!, f.choices!, key),
  duration: (v, f, node, key, path) => {
    const secs = duration(v, node ?? key, path, f.positive === true);
    if (secs === undefined || f.max === undefined || secs <= f.max) return secs;
    v.report(node ?? key, path, `expected at most ${f.maxText}, got ${v.describe(node)}`);
    return undefined;
  },
  ipv4: (v, f, node, key, path) => ipv4(v, node, path, f.noun!, key),
  netmask: (v, _f, node, key, path) => netmask(v, node ?? key, path),
  mac: (v, _f, node, key, path) => mac(v, node ?? key, path),
  listen: (v, _f, node, key, path) => listen(v, node ?? key, path),
  ifname: (v, _f, node, key, path) => interfaceName(v, node, path, key),
  socket: (v, _f, node, key, path) => socketPath(v, node ?? key, path, key),
  group: (v, _f, node, key, path) => group(v, node, path, key),
  path: (v, _f, node, key, path) => filePath(v, node ?? key, path, key),
  'service-name': (v, _f, node, key, path) => serviceName(v, node, path, key),
  'http-path': (v, _f, node, key, path) => httpPath(v, node, path, key),
  'http-host': (v, _f, node, key, path) => httpHost(v, node, path, key),
  'status-set': (v, _f, node, key, path) => statusSet(v, node, path, key),
  regex: (v, _f, node, key, path) => regex(v, node, path, key),
};

/** Reads the value of a scalar field; undefined after reporting a problem. */
export function readScalar(v: Validator, f: Field, node: YNode | undefined, key: YNode, path: string): unknown {
  if (f.type === 'section' || f.type === 'list') throw new Error(`${path}: not a scalar field`);
  return READERS[f.type](v, f, node, key, path);
}
