/**
 * Value parsers and limits of lb.yaml: pure functions on text and numbers, no YAML and no
 * positions, so that the validator, the admin socket, the ipvsadm import and the health checks
 * share one definition of what a duration, an address or a MAC is.
 */

/** Connection table size limits (entries). */
export const CONN_TABLE_MIN = 1024;
export const CONN_TABLE_MAX = 16777216;
export const WEIGHT_MAX = 65535;
/** Seconds: the native loop yields to the event loop after 1 ms of a wake-up anyway. */
export const BUSY_POLL_MAX = 0.001;
/** announce: routing table ids are u32; 0 is "unspecified" and 2^32-1 is not a table. */
export const ANNOUNCE_TABLE_MAX = 4294967294;
/** announce: its delays and timeout, at most (a stop that waits longer looks hung to its supervisor). */
export const ANNOUNCE_DELAY_MAX = 300;
/** IPVS keeps thresholds in a u32; a connection table never holds more than 2^31 entries. */
export const THRESHOLD_MAX = 2 ** 31 - 1;
export const RISE_FALL_MAX = 1000;
export const QUORUM_MAX = 4096;
export const PORT_MIN = 1;
export const PORT_MAX = 65535;
/** sun_path holds 108 bytes including the terminating NUL. */
export const SOCKET_PATH_MAX = 107;
/** Longest Linux interface name (IFNAMSIZ 16 including the NUL). */
export const IFNAME_MAX = 15;
/**
 * Unix group names as shadow's groupadd and systemd accept them (a letter or "_" first; letters,
 * digits, "_", "." and "-"; a "$" at the end for Samba), at most 32 bytes.
 */
export const GROUP_NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]*\$?$/;
export const GROUP_NAME_MAX = 32;
/** The largest gid a group may have: (gid_t)-1 means "no change" to chown(2). */
export const GID_MAX = 0xfffffffe;
/** Service names: they end up in metrics labels and CLI arguments. */
export const SERVICE_NAME_RE = /^[A-Za-z0-9_.-]+$/;

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

export function ipv4ToString(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Why an address cannot be a VIP or a real server, or undefined when it is a unicast host address. */
export function notUnicast(n: number): string | undefined {
  if (n === 0) return 'the unspecified address 0.0.0.0';
  if (n === 0xffffffff) return 'the broadcast address';
  if (n >>> 24 === 0) return 'in 0.0.0.0/8 ("this network")';
  if (n >>> 24 === 127) return 'a loopback address';
  if (n >>> 28 === 0xe) return 'a multicast address';
  if (n >>> 28 === 0xf) return 'a reserved (240.0.0.0/4) address';
  return undefined;
}

/** Parses a contiguous IPv4 netmask ("255.255.255.0") to its number, or undefined. */
export function parseNetmask(s: string): number | undefined {
  const n = parseIPv4(s);
  if (n === undefined) return undefined;
  // Contiguous: the inverted mask plus one is a power of two (or zero for 0.0.0.0 inverted).
  const inv = ~n >>> 0;
  return (inv & (inv + 1)) === 0 ? n : undefined;
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
  const m = /^([0-9A-Fa-f]{2})([:-])([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})\2([0-9A-Fa-f]{2})$/.exec(s);
  if (!m) return undefined;
  return [m[1], m[3], m[4], m[5], m[6], m[7]].join(':').toLowerCase();
}

/** Parses "host:port" with an IPv4 host and a port 1-65535 (metrics.listen), normalized. */
export function parseListen(s: string): { listen: string; host: string; port: number } | undefined {
  const m = /^(.*):(\d+)$/.exec(s);
  const addr = m ? parseIPv4(m[1]) : undefined;
  const port = m ? Number(m[2]) : NaN;
  if (!m || addr === undefined || !(port >= PORT_MIN && port <= PORT_MAX)) return undefined;
  const host = ipv4ToString(addr);
  return { listen: `${host}:${port}`, host, port };
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
