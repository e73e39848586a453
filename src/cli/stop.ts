/**
 * `lbd stop [--clean]`: asks the daemon on the admin socket to stop and waits until it is gone.
 * With --clean and no daemon answering, cleans up after a stopped (or crashed, or killed) lbd:
 * its nftables tables whose owner is gone, its state file, and a stale admin socket.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { adminRequest, NoDaemonError } from '../control/admin/client';
import type { StopResult } from '../control/admin/protocol';
import { isListening } from '../control/admin/server';
import { loadConfig } from '../config/load';
import type { Config } from '../config/types';
import { ConfigError, InstanceConflictError, LbdError } from '../errors';
import { instanceNames, stateFilePath } from '../host/instance';
import { HOST_LEASE_S } from '../host/leased-table';
import { nftApply, nftListTable, type NftObject } from '../host/nftables';
import { ownerAlive, parseOwnerTag, processStart, type Owner } from '../host/owner';
import { bool, CliIO, Command, FlagSpec, parseFlags, reportError, SOCKET_FLAGS, socketPath, str, UsageError } from './command';

const USAGE = `Usage: lbd stop [--clean] [--socket PATH | --config FILE]

Stops the daemon listening on the admin socket, as SIGTERM does: it stops capturing, removes
the admin socket and exits 0, leaving its state file (the connection table, adopted by the next
lbd) and its nftables guard (whose lease lapses by itself ${HOST_LEASE_S} s later). Waits until the
daemon is gone; exit 1 if it still runs 5 s later, or if no lbd runs on the socket.

Options:
      --clean          remove every change lbd made to the host as well: the nftables guard
                       and probe tables, the state file. With no daemon running, cleans up
                       what a stopped, crashed or killed lbd left (needs --config FILE): its
                       tables (only when their owner is gone), state file and stale socket
      --socket PATH    the daemon's admin socket
  -c, --config FILE    the daemon's lb.yaml (its admin.socket, capture interface, state_file)
`;

const STOP_FLAGS: Record<string, FlagSpec> = { ...SOCKET_FLAGS, '--clean': {} };

/** How long `lbd stop` waits for the daemon to be gone (it exits within a second of the request). */
const STOP_WAIT_MS = 5000;
const POLL_MS = 100;

// --- cleaning up after a stopped lbd ------------------------------------------------------------

/** What an offline clean-up touches on the host; the defaults are the real ones, tests give fakes. */
export interface CleanupHost {
  /** The instance lock (the addon's lockFile): throws code EWOULDBLOCK when another process holds it. */
  lock(path: string): number;
  unlock(fd: number): void;
  /** `nft -j list table netdev NAME`, or null when there is no such table. */
  listTable(name: string): Promise<NftObject[] | null>;
  /** Runs an nft script (one transaction). */
  nft(script: string): Promise<void>;
  /** Whether the process an owner tag names still runs. */
  ownerAlive(o: Owner): boolean;
  /** Whether something accepts connections on a unix socket. */
  listening(path: string): Promise<boolean>;
}

export function realCleanupHost(): CleanupHost {
  return {
    lock: (p) => {
      // The data plane's addon, loaded only here: `lbd stop` with a daemon running never needs it.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { requireBinding } = require('../dataplane/binding') as typeof import('../dataplane/binding');
      return requireBinding().lockFile(p);
    },
    unlock: (fd) => {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const { requireBinding } = require('../dataplane/binding') as typeof import('../dataplane/binding');
      requireBinding().unlockFile(fd);
    },
    listTable: nftListTable,
    nft: nftApply,
    ownerAlive,
    listening: (p) => isListening(p),
  };
}

/** What a stopped lbd may have left, by name. */
export interface CleanupTarget {
  socket: string;
  stateFile: string;
  /** nftables tables (family netdev). */
  tables: string[];
}

export interface CleanupReport {
  /** One line per thing removed. */
  removed: string[];
  /** One line per thing found and left alone (another lbd's). */
  left: string[];
  /** What could not be looked at or removed. */
  errors: string[];
}

/** The owner a table's comments name (its sets', else its own), or null when it has no lbd owner tag. */
export function tableOwner(objects: NftObject[]): Owner | null {
  let fromTable: Owner | null = null;
  for (const o of objects) {
    if (o.set) {
      const owner = parseOwnerTag(o.set.comment);
      if (owner) return owner;
    } else if (o.table && !fromTable) {
      fromTable = parseOwnerTag(o.table.comment);
    }
  }
  return fromTable;
}

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes what a stopped lbd left, all under its state file's lock (so no lbd starts with that
 * state file meanwhile, and none makes its admin socket while this one looks at the old one):
 * its nftables tables whose owner is gone (one whose owner still runs, or one lbd did not make,
 * is left alone), the state file with its `.new` and `.rejected` (one set aside by an lbd that
 * could not trust it), and the admin socket when nothing listens on it. The `.lock` file stays:
 * removing a file that is (or was just) flocked would let two later processes lock different
 * inodes of the same name. InstanceConflictError, and nothing touched, when another process
 * holds the lock: an lbd runs with that state file.
 */
export async function cleanStopped(t: CleanupTarget, host: CleanupHost): Promise<CleanupReport> {
  const report: CleanupReport = { removed: [], left: [], errors: [] };
  const lockPath = `${t.stateFile}.lock`;
  let fd = -1;
  // No directory, no lock to take: no lbd ever ran with this state file (it makes the directory).
  if (exists(path.dirname(t.stateFile))) {
    try {
      fd = host.lock(lockPath);
    } catch (e) {
      if ((e as { code?: string }).code === 'EWOULDBLOCK')
        throw new InstanceConflictError(
          `an lbd runs with the state file ${t.stateFile} (it holds ${lockPath}): nothing cleaned; stop it with lbd stop --socket ITS_SOCKET`,
        );
      throw new LbdError('E_STATE_FILE', `cannot lock ${lockPath}: ${(e as Error).message}; nothing cleaned`);
    }
  }
  try {
    for (const name of t.tables) {
      try {
        const objects = await host.listTable(name);
        if (objects === null) continue;
        const owner = tableOwner(objects);
        if (owner === null) {
          report.left.push(`nftables table netdev ${name} was not made by lbd: left alone`);
        } else if (host.ownerAlive(owner)) {
          report.left.push(`nftables table netdev ${name} belongs to lbd pid ${owner.pid}, which still runs: left alone`);
        } else {
          await host.nft(`delete table netdev ${name}\n`);
          report.removed.push(`removed nftables table netdev ${name} (its lbd, pid ${owner.pid}, is gone)`);
        }
      } catch (e) {
        report.errors.push(`nftables table netdev ${name}: ${(e as Error).message}`);
      }
    }
    const files: [string, string][] = [
      [t.stateFile, `removed state file ${t.stateFile}`],
      [`${t.stateFile}.new`, `removed ${t.stateFile}.new`],
      [`${t.stateFile}.rejected`, `removed set-aside state file ${t.stateFile}.rejected`],
    ];
    for (const [p, line] of files) {
      if (!exists(p)) continue;
      try {
        fs.rmSync(p, { force: true });
        report.removed.push(line);
      } catch (e) {
        report.errors.push(`cannot remove ${p}: ${(e as Error).message}`);
      }
    }
    // Still under the lock: an lbd starting now stops at the lock (E_INSTANCE) before it makes its
    // admin socket, so the socket looked at here is the old one and a fresh one is never removed.
    await removeStaleSocket(t.socket, host, report);
  } finally {
    if (fd >= 0) host.unlock(fd);
  }
  return report;
}

/** Removes the admin socket at `sock` when it is a socket nothing listens on. */
async function removeStaleSocket(sock: string, host: CleanupHost, report: CleanupReport): Promise<void> {
  try {
    const st = fs.lstatSync(sock);
    if (!st.isSocket()) report.left.push(`${sock} is not a socket: left alone`);
    else if (await host.listening(sock)) report.left.push(`something listens on ${sock}: left alone`);
    else {
      fs.rmSync(sock, { force: true });
      report.removed.push(`removed stale admin socket ${sock}`);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') report.errors.push(`cannot remove ${sock}: ${(e as Error).message}`);
  }
}

// --- the command --------------------------------------------------------------------------------

/** What `lbd stop` waits with; tests give their own. */
export interface StopDeps {
  host: CleanupHost;
  /** The start time of a process, or null when it is gone (owner.ts processStart). */
  processStart(pid: number): number | null;
  waitMs: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Whether the daemon answered on `sock` is gone: its socket and (when this host sees it) its process. */
async function waitGone(sock: string, pid: number, start: number | null, deps: StopDeps): Promise<boolean> {
  const deadline = Date.now() + deps.waitMs;
  for (;;) {
    const socketGone = !exists(sock) || !(await deps.host.listening(sock));
    const processGone = start === null || deps.processStart(pid) !== start;
    if (socketGone && processGone) return true;
    if (Date.now() >= deadline) return false;
    await sleep(POLL_MS);
  }
}

/** `lbd stop` with its dependencies: the exit status. */
export async function stop(argv: string[], io: CliIO, deps: Partial<StopDeps> = {}): Promise<number> {
  const d: StopDeps = { host: deps.host ?? realCleanupHost(), processStart: deps.processStart ?? processStart, waitMs: deps.waitMs ?? STOP_WAIT_MS };
  const p = parseFlags(argv, STOP_FLAGS, 'lbd stop');
  if (bool(p, '--help')) {
    io.out(USAGE);
    return 0;
  }
  if (p.positionals.length) throw new UsageError(`lbd stop: unexpected argument "${p.positionals[0]}"`);
  const clean = bool(p, '--clean');
  const sock = socketPath(p);
  let r: StopResult;
  try {
    r = await adminRequest<StopResult>(sock, 'stop', { clean }, 10000);
  } catch (e) {
    if (!(e instanceof NoDaemonError)) throw e;
    if (!clean) {
      io.err(`lbd: no lbd runs on ${sock}\n`);
      return 1;
    }
    return cleanOffline(sock, str(p, '--config'), io, d);
  }
  // The process is named by its start time too: a PID reused meanwhile is not waited for.
  const start = d.processStart(r.pid);
  // A daemon that announces its VIPs forwards on for its withdraw delay first.
  const wait = { ...d, waitMs: d.waitMs + (r.withdraw_delay_ms ?? 0) };
  if (!(await waitGone(sock, r.pid, start, wait))) {
    io.err(`lbd: lbd (pid ${r.pid}) was asked to stop but still runs ${Math.round(wait.waitMs / 1000)} s later\n`);
    return 1;
  }
  io.out(`lbd (pid ${r.pid}) stopped${r.clean ? ', every host change removed' : ''}\n`);
  if (clean && !r.clean) io.err(`lbd: it was already stopping without --clean; to remove what it left: lbd stop --clean --config FILE\n`);
  return 0;
}

/** lbd stop --clean with no daemon answering: cleans up after the one that ran with --config FILE. */
async function cleanOffline(sock: string, file: string | undefined, io: CliIO, d: StopDeps): Promise<number> {
  if (!file) {
    io.err(`lbd: no lbd runs on ${sock}; cleaning up after a stopped lbd needs --config FILE (its capture interface and state_file)\n`);
    return 1;
  }
  let cfg: Config;
  try {
    cfg = loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) {
      io.err(`${e.message}\n${file}: cannot clean up after lbd with a config that has errors\n`);
      return 1;
    }
    throw e;
  }
  const names = instanceNames(cfg.interfaces.capture);
  let report: CleanupReport;
  try {
    report = await cleanStopped({ socket: sock, stateFile: stateFilePath(cfg), tables: [names.guardTable, names.probeTable] }, d.host);
  } catch (e) {
    return reportError(e, io); // an lbd holds the state file (E_INSTANCE), or its lock cannot be taken
  }
  for (const line of report.removed) io.out(`${line}\n`);
  if (report.removed.length === 0) io.out('nothing to clean\n');
  for (const line of report.left) io.err(`lbd: ${line}\n`);
  for (const line of report.errors) io.err(`lbd: ${line}\n`);
  return report.errors.length ? 1 : 0;
}

export const command: Command = {
  name: 'stop',
  summary: 'stop the daemon (like SIGTERM); --clean also removes every change it made to the host',
  usage: USAGE,
  run: (argv, io) => stop(argv, io),
};
