/**
 * The BGP part of the lab (LabOptions.bgp): the router learns the VIP from every balancer by BGP
 * (BIRD 2, with BFD) and forwards it by ECMP, one next hop per balancer whose lbd can serve it.
 *
 *   client 192.168.13.50 ── router (eth0 .1 | eth1 10.0.10.1, BIRD AS 65000, ECMP, L4 hash)
 *                                     │ br0
 *        lb 10.0.10.30 (BIRD AS 65001, lbd) · lb31 10.0.10.31 (BIRD AS 65001, lbd) · rs40 · rs111
 *
 * Needs shape 'routed' and at least one of extraBalancers. Every BIRD runs the shipped configs,
 * contrib/bird/router.conf and contrib/bird/balancer.conf, with their @PLACEHOLDERS@ filled in
 * (the rendered files are in the lab's directory: bird-<role>.conf), in the foreground
 * (`bird -f -c CONF -s SOCK -P PIDFILE`), started with lab.spawn: the lab's teardown kills it by
 * PID like every process it started; its log is logs/bird-<role>.log.
 *
 * The router's kernel: net.ipv4.fib_multipath_hash_policy=1 (the lab's routed shape already
 * forwards). The router has no route of its own to the VIP beyond its connected 10.0.10.0/24: the
 * BGP /32 is what carries it.
 *
 * What the balancers announce is lbd's business (its `announce` section: VIP/32 in kernel table
 * 4242 while lbd lives and the VIP can be served).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from '../src/host/programs';
import type { Lab } from './lab';

/** The shipped configs this lab runs (dist/lab/bgp.js → contrib/bird). */
export const BIRD_CONF_DIR = path.resolve(__dirname, '../../contrib/bird');
export const ROUTER_AS = 65000;
export const BALANCER_AS = 65001;
/** lbd's announce.table default */
export const LBD_TABLE = 4242;
/** lbd's announce.interface in the lab */
export const ANNOUNCE_INTERFACE = 'lbdvip0';

export interface Bird {
  role: 'router' | 'balancer';
  /** protocol name on the router for a balancer (lb30, lb31), 'router' for the router */
  name: string;
  ns: string;
  addr: string;
  conf: string;
  socket: string;
  pidFile: string;
  log: string;
  proc: ChildProcess | null;
}

export interface BgpLab {
  router: Bird;
  /** one per balancer, in the order [lab.ns.balancer, ...lab.ns.extraBalancers] */
  balancers: Bird[];
  /** the next hops of the router's kernel route to the VIP, sorted; [] when it has none */
  nextHops(): string[];
  /** `ip route show VIP` in the router namespace, as text (for messages and the demo) */
  routeText(): string;
  /** the router's BGP sessions: protocol name → BIRD state (e.g. 'Established', 'Active', 'Idle') */
  sessions(): Record<string, string>;
  /** start a balancer's (or the router's) BIRD again after stopBird(); returns at once */
  startBird(b: Bird): void;
  /** stop a BIRD by its PID (SIGTERM, then SIGKILL) */
  stopBird(b: Bird): void;
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));
const sleepMs = (ms: number) => Atomics.wait(sleepCell, 0, 0, ms);

/**
 * The @NAME@ placeholders of a shipped config filled in; a block between `# BEGIN NAME` and
 * `# END NAME` is repeated once per element of blocks[NAME], with that element's values. Throws
 * if a placeholder is left.
 */
export function renderConf(text: string, values: Record<string, string>, blocks: Record<string, Record<string, string>[]> = {}): string {
  let out = text;
  for (const [name, items] of Object.entries(blocks)) {
    const re = new RegExp(`^# BEGIN ${name}\\b.*\\n([\\s\\S]*?)^# END ${name}\\b.*\\n`, 'm');
    const m = re.exec(out);
    if (!m) throw new Error(`no "# BEGIN ${name}" … "# END ${name}" block`);
    const body = items.map((v) => m[1].replace(/@([A-Z_]+)@/g, (all, k: string) => v[k] ?? all)).join('\n');
    out = out.slice(0, m.index) + body + out.slice(m.index + m[0].length);
  }
  out = out.replace(/@([A-Z_]+)@/g, (all, k: string) => values[k] ?? all);
  // placeholders in comments stay documentation; only live lines must be complete
  const left = out
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('#'))
    .join('\n')
    .match(/@[A-Z_]+@/g);
  if (left) throw new Error(`placeholders left: ${[...new Set(left)].join(' ')}`);
  return out;
}

/** Renders the configs, starts every BIRD, waits until the router's sessions are all Established. */
export function startBgp(lab: Lab, opts: { timeoutMs?: number; log?: (m: string) => void } = {}): BgpLab {
  const log = opts.log ?? (() => undefined);
  if (lab.shape !== 'routed' || !lab.ns.router) throw new Error("bgp: only with shape 'routed'");
  const lbNs = [lab.ns.balancer, ...(lab.ns.extraBalancers ?? [])];
  const lbAddr = [lab.addr.balancer, ...(lab.addr.extraBalancers ?? [])];
  if (lbNs.length < 2) throw new Error('bgp: needs a second balancer (extraBalancers: [31])');
  const vipPrefix = `${lab.addr.vip}/32`;
  const bird = (role: Bird['role'], name: string, ns: string, addr: string): Bird => ({
    role,
    name,
    ns,
    addr,
    conf: path.join(lab.dir, `bird-${name}.conf`),
    socket: path.join(lab.dir, `bird-${name}.ctl`),
    pidFile: path.join(lab.dir, `bird-${name}.pid`),
    log: path.join(lab.dir, 'logs', `bird-${name}.log`),
    proc: null,
  });
  const router = bird('router', 'router', lab.ns.router, '10.0.10.1');
  const balancers = lbNs.map((ns, i) => bird('balancer', `lb${lbAddr[i].split('.')[3]}`, ns, lbAddr[i]));

  fs.writeFileSync(
    router.conf,
    renderConf(
      fs.readFileSync(path.join(BIRD_CONF_DIR, 'router.conf'), 'utf8'),
      {
        ROUTER_ID: router.addr,
        ROUTER_AS: String(ROUTER_AS),
        BALANCER_AS: String(BALANCER_AS),
        INTERFACE: 'eth1',
        VIP_PREFIXES: vipPrefix,
      },
      { BALANCER: balancers.map((b) => ({ BALANCER_NAME: b.name, BALANCER_ADDR: b.addr, BALANCER_AS: String(BALANCER_AS) })) },
    ),
  );
  const balancerConf = fs.readFileSync(path.join(BIRD_CONF_DIR, 'balancer.conf'), 'utf8');
  for (const b of balancers) {
    fs.writeFileSync(
      b.conf,
      renderConf(balancerConf, {
        ROUTER_ID: b.addr,
        LOCAL_AS: String(BALANCER_AS),
        ROUTER_ADDR: router.addr,
        ROUTER_AS: String(ROUTER_AS),
        INTERFACE: lab.ifaces.balancerCapture,
        VIP_PREFIXES: vipPrefix,
        LBD_TABLE: String(LBD_TABLE),
      }),
    );
  }
  // BIRD's own parse check (bird -p) of every rendered file, before anything starts
  for (const b of [router, ...balancers]) lab.exec(b.ns, ['bird', '-p', '-c', b.conf]);

  // L4 ECMP hash on the router (the routed shape already has ip_forward=1)
  lab.exec(router.ns, ['sysctl', '-qw', 'net.ipv4.fib_multipath_hash_policy=1']);

  const startBird = (b: Bird): void => {
    if (b.proc && b.proc.exitCode === null && b.proc.signalCode === null) return;
    fs.rmSync(b.socket, { force: true });
    fs.rmSync(b.pidFile, { force: true });
    b.proc = lab.spawn(b.ns, ['bird', '-f', '-c', b.conf, '-s', b.socket, '-P', b.pidFile], { name: `bird-${b.name}` });
    log(`bird ${b.name} started in ${b.ns}: pid ${b.proc.pid}`);
  };
  const stopBird = (b: Bird): void => {
    if (b.proc) lab.kill(b.proc, { graceMs: 2000 });
    b.proc = null;
  };
  const sessions = (): Record<string, string> => {
    const r = lab.tryExec(router.ns, ['birdc', '-s', router.socket, 'show', 'protocols'], { timeoutMs: 5000 });
    const out: Record<string, string> = {};
    if (r.status !== 0) return out;
    for (const line of r.stdout.split('\n')) {
      const f = line.trim().split(/\s+/);
      if (f[1] === 'BGP') out[f[0]] = f[f.length - 1];
    }
    return out;
  };
  const routeText = (): string => lab.tryExec(router.ns, ['ip', 'route', 'show', lab.addr.vip], { timeoutMs: 5000 }).stdout.trim();
  const nextHops = (): string[] => {
    const r = lab.tryExec(router.ns, ['ip', '-j', 'route', 'show', lab.addr.vip], { timeoutMs: 5000 });
    if (r.status !== 0 || !r.stdout.trim()) return [];
    const routes = JSON.parse(r.stdout) as { dst: string; gateway?: string; nexthops?: { gateway?: string }[] }[];
    const vip = routes.find((x) => x.dst === lab.addr.vip);
    if (!vip) return [];
    const hops = vip.nexthops ? vip.nexthops.map((h) => h.gateway ?? '') : [vip.gateway ?? ''];
    return hops.filter(Boolean).sort();
  };

  for (const b of [router, ...balancers]) startBird(b);
  const timeoutMs = opts.timeoutMs ?? 20000;
  const t0 = Date.now();
  for (;;) {
    for (const b of [router, ...balancers]) {
      if (b.proc && (b.proc.exitCode !== null || b.proc.signalCode !== null || !isAlive(b.proc.pid!))) {
        throw new Error(`bird ${b.name} exited:\n${tail(b.log)}`);
      }
    }
    const s = sessions();
    if (balancers.every((b) => s[b.name] === 'Established')) break;
    if (Date.now() - t0 > timeoutMs) {
      throw new Error(`bgp: sessions not established within ${timeoutMs} ms: ${JSON.stringify(s)}\n${tail(router.log)}`);
    }
    sleepMs(100);
  }
  log(`bgp: every session established in ${Date.now() - t0} ms`);
  return { router, balancers, nextHops, routeText, sessions, startBird, stopBird };
}

function isAlive(pid: number): boolean {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = s.slice(s.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

function tail(file: string, n = 20): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

/** lbd's VIP routes in a balancer's table 4242 (`ip route show table 4242`), as text; throws when they cannot be read. */
export function announcedRoutes(lab: Lab, ns: string): string {
  const r = lab.tryExec(ns, ['ip', 'route', 'show', 'table', String(LBD_TABLE)], { timeoutMs: 5000 });
  // A table nothing was ever routed in does not exist yet: empty.
  if (r.status !== 0 && !/table does not exist/i.test(r.stderr)) throw new Error(`ip route show table ${LBD_TABLE} in ${ns}: ${r.stderr.trim()}`);
  return r.status === 0 ? r.stdout.trim() : '';
}
