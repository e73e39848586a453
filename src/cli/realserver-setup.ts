/**
 * lbd realserver-setup: the real-server side of Direct Routing. Prints (or, with --apply, runs)
 * what a real server needs to accept frames for the VIP without answering ARP for it:
 *  - method lo (default): VIP/32 on lo, arp_ignore=1 / arp_announce=2, optionally persisted
 *    (/etc/sysctl.d/90-lbd-vip.conf + an ifupdown or systemd-networkd snippet);
 *  - method redirect: an iptables nat REDIRECT rule for the VIP (the other classic LVS-DR
 *    recipe: the VIP is never local, so nothing answers ARP for it and no sysctl is needed).
 * --undo reverses either. The plan is a pure function of the options and of what the host
 * already has (unit-tested); printing never depends on the host it runs on.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { runSync, runSyncOk, type Command as ProgramCommand } from '../host/programs';
import { bool, list, optionsOrExit, parseFlags, processIO, str, UsageError, type CliIO, type Command } from './command';

export type Method = 'lo' | 'redirect';
export type PersistWith = 'networkd' | 'ifupdown';

export interface RsOptions {
  vips: string[];
  apply: boolean;
  undo: boolean;
  method: Method;
  persist: boolean;
  /** Which network-config snippet --persist writes; default: detected (ifupdown if /etc/network/interfaces). */
  persistWith?: PersistWith;
  /** Extra interfaces to set arp_ignore/arp_announce on (all + lo are always set). */
  devs: string[];
}

/** What the host already has; null in print mode (then every step is printed). */
export interface RsState {
  /** IPv4 addresses on lo, a.b.c.d (without /len). */
  loAddresses: string[];
  /** VIPs that already have the REDIRECT rule. */
  redirected: string[];
  /** Existing file contents by path (absent = no file). */
  files: Record<string, string>;
}

export interface Step {
  /** Why, one line (printed as a comment). */
  say: string;
  cmd?: ProgramCommand;
  write?: { path: string; content: string };
  remove?: string;
  /** Set when --apply finds the step already done. */
  skip?: string;
}

export const SYSCTL_FILE = '/etc/sysctl.d/90-lbd-vip.conf';
export const NETWORKD_FILE = '/etc/systemd/network/90-lbd-lo.network';
export const IFUPDOWN_DIR = '/etc/network/interfaces.d';

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

export const ifupdownFile = (vip: string) => path.join(IFUPDOWN_DIR, `lbd-vip-${vip.replace(/\./g, '-')}`);
/** An ifupdown alias label for the VIP: lo: + the address in hex (≤ 15 characters). */
export const loLabel = (vip: string) =>
  `lo:${vip
    .split('.')
    .map((o) => Number(o).toString(16).padStart(2, '0'))
    .join('')}`;

function sysctlKeys(devs: string[]): string[] {
  return ['all', 'lo', ...devs.filter((d) => d !== 'all' && d !== 'lo')].flatMap((d) => [`net.ipv4.conf.${d}.arp_ignore`, `net.ipv4.conf.${d}.arp_announce`]);
}
const arpValue = (key: string, on: boolean) => (on ? (key.endsWith('arp_ignore') ? '1' : '2') : '0');

export function sysctlFileContent(devs: string[]): string {
  return [
    '# Written by lbd realserver-setup: this host is a Direct Routing real server with VIPs on lo.',
    '# arp_ignore=1: answer ARP only for addresses of the interface asked on (never for a VIP on lo);',
    '# arp_announce=2: never use a VIP as the source of our own ARP requests.',
    ...sysctlKeys(devs).map((k) => `${k} = ${arpValue(k, true)}`),
    '',
  ].join('\n');
}

/** The VIPs listed in an lbd-written networkd file. */
export function networkdVips(content: string | undefined): string[] {
  if (!content) return [];
  return [...content.matchAll(/^Address=(\d+\.\d+\.\d+\.\d+)\/32\s*$/gm)].map((m) => m[1]);
}

export function networkdContent(vips: string[]): string {
  return [
    '# Written by lbd realserver-setup: the VIPs this Direct Routing real server accepts, on lo.',
    '[Match]',
    'Name=lo',
    '',
    '[Network]',
    // networkd would otherwise drop addresses it did not configure (127.0.0.1 included).
    'KeepConfiguration=yes',
    'Address=127.0.0.1/8',
    ...vips.map((v) => `Address=${v}/32`),
    '',
  ].join('\n');
}

export function ifupdownContent(vip: string): string {
  const label = loLabel(vip);
  return [
    `# Written by lbd realserver-setup: VIP ${vip} on lo for Direct Routing (needs "source /etc/network/interfaces.d/*").`,
    `auto ${label}`,
    `iface ${label} inet static`,
    `    address ${vip}/32`,
    '',
  ].join('\n');
}

export function detectPersistWith(exists: (p: string) => boolean = fs.existsSync): PersistWith {
  if (exists('/etc/network/interfaces')) return 'ifupdown';
  return 'networkd';
}

export function plan(o: RsOptions, state: RsState | null): Step[] {
  const steps: Step[] = [];
  const has = (p: string) => state !== null && p in state.files;
  const loHas = (v: string) => state?.loAddresses.includes(v) ?? false;

  if (o.method === 'redirect') {
    for (const vip of o.vips) {
      const rule = ['-d', `${vip}/32`, '-j', 'REDIRECT'];
      if (!o.undo) {
        steps.push({
          say: `accept frames for ${vip} by redirecting them to this host (the VIP stays non-local: nothing answers ARP for it)`,
          cmd: ['iptables', '-t', 'nat', '-A', 'PREROUTING', ...rule],
          skip: state && state.redirected.includes(vip) ? 'the REDIRECT rule is already there' : undefined,
        });
      } else {
        steps.push({
          say: `remove the REDIRECT rule for ${vip}`,
          cmd: ['iptables', '-t', 'nat', '-D', 'PREROUTING', ...rule],
          skip: state && !state.redirected.includes(vip) ? 'no REDIRECT rule for it' : undefined,
        });
      }
    }
    if (o.persist) {
      steps.push({ say: 'persist the iptables rules (package iptables-persistent)', cmd: ['netfilter-persistent', 'save'] });
    }
    return steps;
  }

  // method lo
  const keys = sysctlKeys(o.devs);
  if (!o.undo) {
    for (const vip of o.vips) {
      steps.push({
        say: `VIP ${vip} on lo: the kernel accepts frames for it`,
        cmd: ['ip', 'addr', 'add', `${vip}/32`, 'dev', 'lo'],
        skip: loHas(vip) ? `${vip} is already on lo` : undefined,
      });
    }
    steps.push({
      say: 'never answer ARP for the VIP, never use it as an ARP source',
      cmd: ['sysctl', '-q', '-w', ...keys.map((k) => `${k}=${arpValue(k, true)}`)],
    });
    if (o.persist) {
      steps.push({ say: 'the ARP sysctls at boot', write: { path: SYSCTL_FILE, content: sysctlFileContent(o.devs) } });
      const how = o.persistWith ?? 'networkd';
      if (how === 'networkd') {
        const vips = [...new Set([...networkdVips(state?.files[NETWORKD_FILE]), ...o.vips])];
        steps.push({ say: 'the VIPs on lo at boot (systemd-networkd)', write: { path: NETWORKD_FILE, content: networkdContent(vips) } });
      } else {
        for (const vip of o.vips) steps.push({ say: `VIP ${vip} on lo at boot (ifupdown)`, write: { path: ifupdownFile(vip), content: ifupdownContent(vip) } });
      }
    }
    return steps;
  }

  // undo, method lo
  for (const vip of o.vips) {
    steps.push({
      say: `remove VIP ${vip} from lo`,
      cmd: ['ip', 'addr', 'del', `${vip}/32`, 'dev', 'lo'],
      skip: state && !loHas(vip) ? `${vip} is not on lo` : undefined,
    });
  }
  const others = state ? state.loAddresses.filter((a) => !a.startsWith('127.') && !o.vips.includes(a)) : [];
  const remaining = networkdVips(state?.files[NETWORKD_FILE]).filter((v) => !o.vips.includes(v));
  if (others.length) {
    steps.push({ say: `keep arp_ignore/arp_announce: other addresses remain on lo (${others.join(', ')})` });
  } else {
    steps.push({
      say: state ? 'no VIP left on lo: back to the kernel defaults' : 'back to the kernel defaults (only when no other VIP remains on lo)',
      cmd: ['sysctl', '-q', '-w', ...keys.map((k) => `${k}=0`)],
    });
    if ((!state && o.persist) || has(SYSCTL_FILE)) steps.push({ say: 'the ARP sysctls at boot', remove: SYSCTL_FILE });
  }
  if ((!state && o.persist && o.persistWith !== 'ifupdown') || has(NETWORKD_FILE)) {
    if (state && remaining.length)
      steps.push({ say: 'the other VIPs stay on lo at boot (systemd-networkd)', write: { path: NETWORKD_FILE, content: networkdContent(remaining) } });
    else steps.push({ say: 'no VIP on lo at boot (systemd-networkd)', remove: NETWORKD_FILE });
  }
  for (const vip of o.vips)
    if ((!state && o.persist && o.persistWith === 'ifupdown') || has(ifupdownFile(vip)))
      steps.push({ say: `no VIP ${vip} on lo at boot (ifupdown)`, remove: ifupdownFile(vip) });
  return steps;
}

const shq = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** The plan as a shell script a human can read and paste on the real server. */
export function formatScript(o: RsOptions, steps: Step[]): string {
  const lines = [
    '#!/bin/sh',
    `# lbd realserver-setup --vip ${o.vips.join(' --vip ')} --method ${o.method}${o.undo ? ' --undo' : ''}${o.persist ? ' --persist' : ''}`,
    `# ${o.undo ? 'Undoes' : 'Prepares'} a Direct Routing real server for lbd. Run as root on every real server`,
    '# (or run this command there with --apply).',
    'set -e',
  ];
  for (const s of steps) {
    lines.push('', `# ${s.say}`);
    if (s.cmd) lines.push(s.cmd.map(shq).join(' '));
    if (s.write) lines.push(`mkdir -p ${shq(path.dirname(s.write.path))}`, `cat > ${shq(s.write.path)} <<'EOF'`, s.write.content.replace(/\n$/, ''), 'EOF');
    if (s.remove) lines.push(`rm -f ${shq(s.remove)}`);
  }
  return lines.join('\n') + '\n';
}

export interface RsSystem {
  exec(cmd: ProgramCommand): void;
  loAddresses(): string[];
  redirected(vip: string): boolean;
  readFile(p: string): string | undefined;
  writeFile(p: string, content: string): void;
  removeFile(p: string): void;
}

export const realSystem: RsSystem = {
  exec(cmd) {
    // a missing program: the error names its Debian package
    runSyncOk(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], timeoutMs: 15000 });
  },
  loAddresses() {
    const j = JSON.parse(runSyncOk('ip', ['-j', '-4', 'addr', 'show', 'dev', 'lo'])) as { addr_info?: { local: string }[] }[];
    return (j[0]?.addr_info ?? []).map((a) => a.local);
  },
  redirected(vip) {
    try {
      return runSync('iptables', ['-t', 'nat', '-C', 'PREROUTING', '-d', `${vip}/32`, '-j', 'REDIRECT'], { stdio: 'ignore', timeoutMs: 15000 }).status === 0;
    } catch {
      return false; // no iptables: no rule
    }
  },
  readFile(p) {
    try {
      return fs.readFileSync(p, 'utf8');
    } catch {
      return undefined;
    }
  },
  writeFile(p, content) {
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content, { mode: 0o644 });
  },
  removeFile(p) {
    fs.rmSync(p, { force: true });
  },
};

export function readState(o: RsOptions, sys: RsSystem): RsState {
  const files: Record<string, string> = {};
  for (const p of [SYSCTL_FILE, NETWORKD_FILE, ...o.vips.map(ifupdownFile)]) {
    const c = sys.readFile(p);
    if (c !== undefined) files[p] = c;
  }
  return {
    loAddresses: sys.loAddresses(),
    redirected: o.method === 'redirect' ? o.vips.filter((v) => sys.redirected(v)) : [],
    files,
  };
}

/** Runs the steps; returns a log line per step. Stops at the first failure (throws). */
export function applySteps(steps: Step[], sys: RsSystem, log: (line: string) => void): void {
  for (const s of steps) {
    if (s.skip) {
      log(`= ${s.say}: ${s.skip}`);
      continue;
    }
    if (s.cmd) {
      log(`+ ${s.cmd.map(shq).join(' ')}`);
      sys.exec(s.cmd);
    }
    if (s.write) {
      log(`+ write ${s.write.path}`);
      sys.writeFile(s.write.path, s.write.content);
    }
    if (s.remove) {
      log(`+ rm -f ${s.remove}`);
      sys.removeFile(s.remove);
    }
    if (!s.cmd && !s.write && !s.remove) log(`= ${s.say}`);
  }
}

export const RS_USAGE = `Usage: lbd realserver-setup --vip VIP [--vip VIP …] [--method lo|redirect] [--apply] [--undo]
                            [--persist [--persist-with networkd|ifupdown]] [--dev IF …]

Prints (default) or applies (--apply, as root, on the real server) what a Direct Routing
real server needs for lbd:
  --method lo        VIP/32 on lo, net.ipv4.conf.{all,lo}.arp_ignore=1 and arp_announce=2 (default)
  --method redirect  iptables -t nat -A PREROUTING -d VIP/32 -j REDIRECT (the VIP stays non-local)
  --persist          also at boot: ${SYSCTL_FILE} and a systemd-networkd
                     (${NETWORKD_FILE}) or ifupdown (${IFUPDOWN_DIR}/lbd-vip-*)
                     snippet; for redirect, netfilter-persistent save
  --persist-with     networkd | ifupdown (default: ifupdown when /etc/network/interfaces exists)
  --dev IF           also set the ARP sysctls on IF (all + lo already cover every interface)
  --undo             reverse: remove the VIP / the rule, reset the sysctls when no VIP is left
                     on lo, remove the persisted snippets
`;

export function parseRsArgs(argv: string[]): RsOptions | 'help' {
  const cmd = 'lbd realserver-setup';
  const p = parseFlags(
    argv,
    {
      '--vip': { value: true, repeat: true },
      '--method': { value: true },
      '--persist-with': { value: true },
      '--dev': { value: true, repeat: true },
      '--apply': {},
      '--undo': {},
      '--persist': {},
      '--help': { short: '-h' },
    },
    cmd,
  );
  if (bool(p, '--help')) return 'help';
  if (p.positionals.length) throw new UsageError(`${cmd}: unexpected argument "${p.positionals[0]}"`);
  const o: RsOptions = { vips: [], apply: bool(p, '--apply'), undo: bool(p, '--undo'), method: 'lo', persist: bool(p, '--persist'), devs: [] };
  for (const x of list(p, '--vip').flatMap((v) => v.split(','))) {
    if (!IPV4.test(x)) throw new UsageError(`${cmd}: --vip: "${x}" is not an IPv4 address`);
    if (!o.vips.includes(x)) o.vips.push(x);
  }
  const method = str(p, '--method');
  if (method !== undefined) {
    if (method !== 'lo' && method !== 'redirect') throw new UsageError(`${cmd}: --method: "${method}" (lo or redirect)`);
    o.method = method;
  }
  const persistWith = str(p, '--persist-with');
  if (persistWith !== undefined) {
    if (persistWith !== 'networkd' && persistWith !== 'ifupdown') throw new UsageError(`${cmd}: --persist-with: "${persistWith}" (networkd or ifupdown)`);
    o.persistWith = persistWith;
  }
  for (const dev of list(p, '--dev')) {
    if (!/^[\w.-]{1,15}$/.test(dev)) throw new UsageError(`${cmd}: --dev: "${dev}" is not an interface name`);
    o.devs.push(dev);
  }
  if (!o.vips.length) throw new UsageError(`${cmd}: --vip VIP is required`);
  return o;
}

export async function realserverSetupMain(argv: string[], io: CliIO = processIO, sys: RsSystem = realSystem): Promise<number> {
  const parsed = optionsOrExit(() => parseRsArgs(argv), RS_USAGE, io);
  if ('exit' in parsed) return parsed.exit;
  const o = parsed.options;
  if (o.persist && !o.persistWith) o.persistWith = detectPersistWith();
  if (!o.apply) {
    io.out(formatScript(o, plan(o, null)));
    return 0;
  }
  try {
    const steps = plan(o, readState(o, sys));
    applySteps(steps, sys, (l) => io.out(`${l}\n`));
  } catch (e) {
    io.err(`lbd realserver-setup: ${(e as Error).message}\n`);
    return 1;
  }
  io.out(`lbd realserver-setup: ${o.undo ? 'undone' : 'applied'} (${o.method}) for ${o.vips.join(', ')}\n`);
  return 0;
}

export const command: Command = {
  name: 'realserver-setup',
  summary: "print (or --apply) a real server's side of DR: VIP on lo + ARP sysctls, or REDIRECT",
  usage: RS_USAGE,
  run: (argv, io) => realserverSetupMain(argv, io),
};
