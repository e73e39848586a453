/**
 * The benchmark's scenarios: how each one is set up and torn down in the lab's balancer
 * namespace, what it serves (an HTTP URL for wrk, the VIP for the packet generator) and which
 * processes' run time counts as the balancer's.
 *
 * VIP reachability (the client must resolve the VIP to the balancer's MAC):
 *   lbd-*     lbd's own ARP agent answers for the VIP (no VIP address on the balancer);
 *   nftables  the VIP is added to the balancer's lo for the scenario: the kernel answers ARP for
 *             it (arp_ignore=0), the netdev-ingress rule forwards port 80 before the IP stack
 *             ever sees it — the classic IPVS director setup;
 *   haproxy   the VIP is added to the balancer's lo for the scenario: HAProxy listens on it;
 *   direct    no VIP: wrk goes to the first real server's own address.
 * The real servers' replies always go straight to the client (DSR), except through HAProxy,
 * which proxies to the real servers' own addresses.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Lab } from '../lab/lab';
import type { ChildProcess } from '../src/host/programs';
import { labService, lbdConfig, startLbd, type LbdProcess } from '../test/helpers/lbd-process';
import { BULK_PORT, bulkService } from './bulk';
import { runInLab, sleep } from './measure';

export class Unavailable extends Error {
  override name = 'Unavailable';
}

export interface Scenario {
  name: string;
  /** one line for the report */
  what: string;
  /** wrk target, or null (no HTTP figures) */
  url: string | null;
  /** packet generator figures */
  packets: boolean;
  /** bulk-upload target (host; port BULK_PORT), or null (no bulk figures) */
  bulk: string | null;
  /** the baseline: frames dropped at the balancer's ingress, no balancer process */
  baseline?: boolean;
  /**
   * The balancer keeps state from one packet test to the next (lbd's connection table: a SYN test
   * at full rate can fill it with 60 s SYN_RECV entries and leave the steady flows no room), so
   * each packet test after the first starts from a new process.
   */
  freshForEachPacketTest?: boolean;
  setup(): Promise<void>;
  teardown(): Promise<void>;
  /** processes whose every task's run time counts as the balancer's (lbd, HAProxy) */
  pids(): number[];
  /** extra per-run diagnostics (e.g. lbd's drop counters), read before/after a packet run */
  diag?(): Record<string, number>;
}

export const NFT_FWD_TABLE = 'lbbench_fwd';
export const NFT_BASE_TABLE = 'lbbench_base';
export const NFT_RSDROP_TABLE = 'lbbench_rsdrop';
const OUR_TABLES = [NFT_FWD_TABLE, NFT_BASE_TABLE];

export function nft(lab: Lab, ns: string, script: string): void {
  lab.exec(ns, ['nft', '-f', '-'], { input: script, timeoutMs: 10000 });
}

/** delete our nftables tables in a namespace, if present */
export function dropTables(lab: Lab, ns: string, tables: string[]): void {
  for (const t of tables) lab.tryExec(ns, ['nft', 'delete', 'table', 'netdev', t]);
}

function vipOnBalancer(lab: Lab, on: boolean): void {
  if (on) lab.exec(lab.ns.balancer, ['ip', 'addr', 'replace', `${lab.addr.vip}/32`, 'dev', 'lo']);
  else lab.tryExec(lab.ns.balancer, ['ip', 'addr', 'del', `${lab.addr.vip}/32`, 'dev', 'lo']);
}

/** curl the URL from the client until every real server has answered (or time runs out) */
export async function waitServing(lab: Lab, url: string, timeoutMs = 8000, wantAll = true): Promise<void> {
  const seen = new Set<string>();
  const end = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < end) {
    const r = lab.tryExec(lab.ns.client, ['curl', '-s', '--max-time', '1', url], { timeoutMs: 3000 });
    if (r.status === 0) seen.add(r.stdout.trim());
    else last = `curl exit ${r.status} ${r.stderr.trim()}`;
    if (seen.size > 0 && (!wantAll || lab.names.every((n) => seen.has(n)))) return;
    await sleep(r.status === 0 ? 10 : 200);
  }
  throw new Error(`${url} not serving from every real server within ${timeoutMs} ms (saw ${[...seen].join(',') || 'nothing'}; ${last})`);
}

/** the balancer namespace must be clean between scenarios: no VIP, none of our tables, no lbd table */
function assertBalancerClean(lab: Lab): void {
  const addrs = lab.exec(lab.ns.balancer, ['ip', '-o', 'addr', 'show']);
  if (addrs.includes(` ${lab.addr.vip}/`)) throw new Error(`VIP still configured on the balancer:\n${addrs}`);
  const tables = lab.exec(lab.ns.balancer, ['nft', 'list', 'tables']);
  if (tables.trim()) throw new Error(`nftables tables left on the balancer: ${tables.trim()}`);
}

// ───────────────────────────── direct ─────────────────────────────

export function direct(lab: Lab): Scenario {
  return {
    name: 'direct',
    what: `client → ${lab.addr.rs[0]} (one real server's own address, no balancer): the ceiling`,
    url: `http://${lab.addr.rs[0]}/`,
    packets: false,
    bulk: lab.addr.rs[0],
    async setup() {
      assertBalancerClean(lab);
      await waitServing(lab, this.url!, 5000, false);
    },
    async teardown() {},
    pids: () => [],
  };
}

// ───────────────────────────── lbd ─────────────────────────────

const DROP_REASONS = [
  'no_connection',
  'table_full',
  'no_mac',
  'send_failed',
  'no_real_server',
  'not_our_mac',
  // super-frames (TSO from the client, GRO on the capture interface): what the bulk upload meets
  'too_big',
  'gso_unsupported',
  'truncated',
  'unsupported',
];

/** lbd on one data-plane path; `busyPoll` (e.g. '200us') names the busy_poll variant lbd-native-bp. */
export function lbd(lab: Lab, mode: 'native' | 'ts', busyPoll?: string): Scenario {
  let p: LbdProcess | null = null;
  return {
    name: busyPoll ? `lbd-${mode}-bp` : `lbd-${mode}`,
    freshForEachPacketTest: true,
    what: `lbd, dataplane: ${mode}${busyPoll ? `, busy_poll: ${busyPoll}` : ''}, rr over both real servers, DSR`,
    url: `http://${lab.addr.vip}/`,
    packets: true,
    // lbd-native-bp: not in the bulk comparison (keeps the run short)
    bulk: busyPoll ? null : lab.addr.vip,
    async setup() {
      assertBalancerClean(lab);
      const yaml = `${lbdConfig(lab, { scheduler: 'rr', extraServices: labService(lab, 'stock', lab.ports.httpStock) + bulkService(lab) })}\ndataplane: ${mode}\n${busyPoll ? `busy_poll: ${busyPoll}\n` : ''}`;
      try {
        p = await startLbd(lab, yaml, { timeoutMs: 15000 });
      } catch (e) {
        const msg = (e as Error).message;
        // lbd refusing the mode (addon missing, not loadable) makes the scenario unavailable
        if (mode === 'native') throw new Unavailable(`lbd did not start with dataplane: native — ${firstError(msg)}`);
        throw e;
      }
      const m = p.metrics();
      const paths = [...m.matchAll(/^lbd_dataplane_info\{[^}]*path="([^"]+)"[^}]*\} 1$/gm)].map((x) => x[1]);
      if (!paths.includes(mode)) {
        const got = paths.join(',') || 'none';
        await this.teardown();
        const addon = nativeAddonState();
        throw new Unavailable(`dataplane: ${mode} requested, lbd reports lbd_dataplane_info{path="${got}"} (${addon})`);
      }
      await waitServing(lab, this.url!);
    },
    async teardown() {
      if (!p) return;
      const q = p;
      p = null;
      const r = await q.stop();
      if (r.code !== 0) process.stderr.write(`bench: lbd exited with ${r.code} after ${r.ms} ms\n`);
      // a crashed lbd leaves its guard table (leased for 15 s): remove it so the next scenario starts clean
      dropTables(lab, lab.ns.balancer, [`lbd_${lab.ifaces.balancerCapture}`]);
    },
    pids: () => (p?.proc.pid ? [p.proc.pid] : []),
    diag() {
      if (!p) return {};
      const text = p.metrics();
      const out: Record<string, number> = {};
      for (const c of ['received', 'forwarded']) {
        const m = new RegExp(`^lbd_${c}_packets_total(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
        out[`lbd_${c}`] = m ? Number(m[1]) : NaN;
      }
      for (const r of DROP_REASONS) {
        const m = new RegExp(`^lbd_dropped_packets_total\\{[^}]*reason="${r}"[^}]*\\} (\\S+)$`, 'm').exec(text);
        out[`lbd_dropped_${r}`] = m ? Number(m[1]) : 0;
      }
      // The native path's batching: frames per wake-up and per sendmmsg are these ÷ forwarded.
      for (const c of [
        'wakeups',
        'send_syscalls',
        'upcalls',
        'capture_dropped_packets',
        'upcall_seconds',
        'send_seconds',
        'busy_seconds',
        'ring_wait_seconds',
        'ring_wait_frames',
      ]) {
        const m = new RegExp(`^lbd_native_${c}_total (\\S+)$`, 'm').exec(text);
        if (m) out[`lbd_native_${c}`] = Number(m[1]);
      }
      return out;
    },
  };
}

function firstError(msg: string): string {
  for (const line of msg.split('\n')) {
    try {
      const j = JSON.parse(line) as Record<string, unknown> & { level?: number; msg?: string };
      if ((j.level ?? 0) < 50) continue;
      const rest = Object.entries(j)
        .filter(([k]) => !['level', 'time', 'pid', 'hostname', 'msg', 'v'].includes(k))
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      return `${j.msg ?? ''}${rest ? ` (${rest.slice(0, 400)})` : ''}`;
    } catch {
      /* not JSON */
    }
  }
  return msg.split('\n').slice(0, 3).join(' ').slice(0, 300);
}

export const NATIVE_ADDON_DIR = path.resolve(__dirname, '../../native/build/Release');
export function nativeAddonState(): string {
  try {
    const nodes = fs.readdirSync(NATIVE_ADDON_DIR).filter((f) => f.endsWith('.node'));
    return nodes.length ? `addon built: native/build/Release/${nodes.join(', ')}` : 'no addon in native/build/Release';
  } catch {
    return 'native/build/Release does not exist';
  }
}

// ───────────────────────────── nftables ─────────────────────────────

export function nftables(lab: Lab): Scenario {
  const dev = lab.ifaces.balancerCapture;
  const map = lab.macs.rs.map((m, i) => `${i} : ${m}`).join(', ');
  const script = [
    `table netdev ${NFT_FWD_TABLE} {`,
    `  chain ingress {`,
    `    type filter hook ingress device "${dev}" priority 0; policy accept;`,
    // one rule per line (nft 1.0.6); source MAC rewritten too, or the bridge learns the client
    // on the balancer's port
    // port 80 first; the stock Apache's port (workloads.ts) and the bulk upload's after it, rules
    // of their own that the packet tests never reach
    ...[lab.ports.http, lab.ports.httpStock, BULK_PORT].map(
      (port) =>
        `    ip daddr ${lab.addr.vip} tcp dport ${port} ether saddr set ${lab.macs.balancerEgress} ether daddr set jhash ip saddr . tcp sport mod ${lab.macs.rs.length} map { ${map} } fwd to "${lab.ifaces.balancerEgress}"`,
    ),
    `  }`,
    `}`,
    '',
  ].join('\n');
  return {
    name: 'nftables',
    what: 'in-kernel DSR: netdev ingress, dst MAC = jhash(saddr . sport) mod 2, fwd to egress; VIP on the balancer lo for ARP',
    url: `http://${lab.addr.vip}/`,
    packets: true,
    bulk: lab.addr.vip,
    async setup() {
      assertBalancerClean(lab);
      vipOnBalancer(lab, true);
      nft(lab, lab.ns.balancer, script);
      await waitServing(lab, this.url!);
    },
    async teardown() {
      dropTables(lab, lab.ns.balancer, [NFT_FWD_TABLE]);
      vipOnBalancer(lab, false);
    },
    pids: () => [],
  };
}

// ───────────────────────────── HAProxy ─────────────────────────────

export function haproxy(lab: Lab): Scenario {
  let proc: ChildProcess | null = null;
  let exited: Promise<unknown> | null = null;
  const cfgFile = path.join(lab.dir, 'haproxy.cfg');
  return {
    name: 'haproxy',
    what: "HAProxy (Debian package) TCP mode on the balancer, VIP local, roundrobin to the real servers' own addresses",
    url: `http://${lab.addr.vip}/`,
    packets: false,
    bulk: null,
    async setup() {
      assertBalancerClean(lab);
      fs.writeFileSync(
        cfgFile,
        [
          'global',
          '  maxconn 4000',
          'defaults',
          '  mode tcp',
          '  timeout connect 5s',
          '  timeout client 60s',
          '  timeout server 60s',
          'frontend web',
          `  bind ${lab.addr.vip}:${lab.ports.http}`,
          '  default_backend rs',
          'backend rs',
          '  balance roundrobin',
          ...lab.addr.rs.map((a, i) => `  server ${lab.names[i]} ${a}:${lab.ports.http}`),
          'frontend stock',
          `  bind ${lab.addr.vip}:${lab.ports.httpStock}`,
          '  default_backend rs_stock',
          'backend rs_stock',
          '  balance roundrobin',
          ...lab.addr.rs.map((a, i) => `  server ${lab.names[i]} ${a}:${lab.ports.httpStock}`),
          '',
        ].join('\n'),
      );
      vipOnBalancer(lab, true);
      // -db: foreground, no daemon: the PID we get is HAProxy's (`ip netns exec` execs it)
      const r = runInLab(lab, lab.ns.balancer, ['haproxy', '-db', '-f', cfgFile], {
        timeoutMs: 3600_000,
        name: 'haproxy',
        onSpawn: (p) => (proc = p),
      });
      exited = r;
      void r.then((res) => {
        if (proc && res.code !== 0 && res.code !== 143 && res.signal !== 'SIGTERM') process.stderr.write(`bench: haproxy exited ${res.code}: ${res.stderr}\n`);
      });
      await waitServing(lab, this.url!);
    },
    async teardown() {
      if (proc) {
        const p = proc;
        proc = null;
        try {
          lab.kill(p, { graceMs: 3000 });
        } catch {
          /* gone */
        }
        await exited;
      }
      vipOnBalancer(lab, false);
    },
    pids: () => (proc?.pid ? [proc.pid] : []),
  };
}

// ───────────────────────────── baseline ─────────────────────────────

export function baseline(lab: Lab): Scenario {
  const script = [
    `table netdev ${NFT_BASE_TABLE} {`,
    `  chain ingress {`,
    `    type filter hook ingress device "${lab.ifaces.balancerCapture}" priority 0; policy accept;`,
    `    ip daddr ${lab.addr.vip} tcp dport ${lab.ports.http} drop`,
    `  }`,
    `}`,
    '',
  ].join('\n');
  return {
    name: 'baseline',
    what: "the generator alone: frames dropped at the balancer's netdev ingress (no balancer process)",
    url: null,
    packets: true,
    bulk: null,
    baseline: true,
    async setup() {
      assertBalancerClean(lab);
      nft(lab, lab.ns.balancer, script);
    },
    async teardown() {
      dropTables(lab, lab.ns.balancer, [NFT_BASE_TABLE]);
    },
    pids: () => [],
  };
}

/** remove whatever a failed scenario may have left on the balancer */
export function scrubBalancer(lab: Lab): void {
  dropTables(lab, lab.ns.balancer, [...OUR_TABLES, `lbd_${lab.ifaces.balancerCapture}`]);
  vipOnBalancer(lab, false);
}

/** real servers drop the VIP's TCP frames at ingress (after the interface counted them) */
export function rsDrop(lab: Lab, on: boolean): void {
  for (const ns of lab.ns.rs) {
    if (!on) {
      dropTables(lab, ns, [NFT_RSDROP_TABLE]);
      continue;
    }
    nft(
      lab,
      ns,
      [
        `table netdev ${NFT_RSDROP_TABLE} {`,
        `  chain ingress {`,
        `    type filter hook ingress device "${lab.ifaces.rs}" priority -500; policy accept;`,
        `    ip daddr ${lab.addr.vip} tcp dport ${lab.ports.http} drop`,
        `  }`,
        `}`,
        '',
      ].join('\n'),
    );
  }
}
