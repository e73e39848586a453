/**
 * Loads and validates lb.yaml: the public entry points (parseConfig, loadConfig, formatConfig).
 *
 * The YAML is parsed into a document tree (not plain JS) so that every value keeps its source
 * position: each problem is reported as `file:line:col path: message`, and all problems are
 * reported at once in one ConfigError. Nothing but ConfigError escapes parseConfig/loadConfig.
 *
 * The keys, types, defaults and ranges are a table (./fields.ts) that one validator walks
 * (./validate.ts, values read by ./readers.ts); rules across fields are in ./rules.ts and the
 * value syntax (durations, addresses, MACs, ...) in ./values.ts.
 */
import * as fs from 'node:fs';
import { LineCounter, parseDocument, stringify } from 'yaml';
import { ConfigError, ConfigIssue } from '../errors';
import { CONFIG } from './fields';
import { Config, ServiceConfig } from './types';
import { Validator } from './validate';

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
    const cfg = onlyDuplicates ? (v.document(CONFIG) as Config | undefined) : undefined;
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

/** The health-check keys a service has written, in their normalized form: absent keys stay absent, so a config without health checks prints as it was. */
/** The scheduler's options and on_miss, written only when set (as the config had them). */
const SCHEDULER_KEYS = ['mh_table_size', 'mh_fallback', 'mh_port', 'sh_fallback', 'sh_port', 'on_miss'] as const satisfies readonly (keyof ServiceConfig)[];

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
    connection_table: {
      size: cfg.connection_table.size,
      syn_flood_defense: cfg.connection_table.syn_flood_defense,
      defense_threshold: cfg.connection_table.defense_threshold,
      defense_syn_recv_timeout: cfg.connection_table.defense_syn_recv_timeout,
    },
    timeouts: { tcp: cfg.timeouts.tcp, tcpfin: cfg.timeouts.tcpfin, udp: cfg.timeouts.udp },
    services: cfg.services.map((s) => ({
      name: s.name,
      vip: s.vip,
      port: s.port,
      protocol: s.protocol,
      scheduler: s.scheduler,
      ...Object.fromEntries(SCHEDULER_KEYS.filter((k) => s[k] !== undefined).map((k) => [k, s[k]])),
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
      ...(s.conn_reuse_mode !== undefined ? { conn_reuse_mode: s.conn_reuse_mode } : {}),
    })),
    admin: { socket: cfg.admin.socket, ...(cfg.admin.group !== undefined ? { group: cfg.admin.group } : {}) },
    ...(cfg.on_remove !== undefined ? { on_remove: cfg.on_remove } : {}),
    ...(cfg.expire_nodest_conn !== undefined ? { expire_nodest_conn: cfg.expire_nodest_conn } : {}),
    conn_reuse_mode: cfg.conn_reuse_mode,
  };
  return stringify(out, { lineWidth: 0 });
}
