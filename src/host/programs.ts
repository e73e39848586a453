/**
 * The one way lbd, its lab, tests and benchmark start external programs. Every program is
 * declared in programs.json with the Debian package that provides it, so a missing one is an
 * error that says what to install, and scripts/setup.sh installs exactly the declared lists.
 * This is the only module that imports node:child_process (test/unit/programs.test.ts checks).
 */
import { spawn as cpSpawn, spawnSync, type ChildProcess, type SpawnOptions, type StdioOptions } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LbdError } from '../errors';
import { PACKAGE_ROOT } from '../package-root';
import declaration from './programs.json';

export type { ChildProcess, SpawnOptions, StdioOptions };

export type ProgramName = keyof typeof declaration.programs;
export type ListName = keyof typeof declaration.lists;
/** A program and its arguments: what the lab runs inside a namespace. */
export type Command = [ProgramName, ...string[]];

export interface Program {
  name: ProgramName;
  /** the Debian package; null for Node.js itself, what comes with it, and what the project builds */
  package: string | null;
  list: ListName;
  /** a fixed location instead of a PATH search (absolute, or relative to the repository) */
  path?: string;
  /** the source a program the project builds itself is compiled from (relative to the repository) */
  built?: string;
  /** false: declared, but setup does not install it (the why says when it is needed) */
  install?: boolean;
  why?: string;
}

export interface ExtraPackage {
  name: string;
  list: ListName;
  why: string;
}

const PROGRAMS = declaration.programs as unknown as Record<ProgramName, Omit<Program, 'name'>>;
const PACKAGES = declaration.packages as unknown as Record<string, Omit<ExtraPackage, 'name'>>;

/** The repository (or installed package) root, where built programs' paths are relative to. */
export const REPO_ROOT = PACKAGE_ROOT;

// Where a program is looked for after PATH: a non-root PATH often lacks the sbin directories,
// where ip, nft and ethtool live.
const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

export class UndeclaredProgramError extends LbdError {
  constructor(readonly program: string) {
    super('E_PROGRAM_UNDECLARED', `${program}: not a declared program (declare it with its Debian package in src/host/programs.json)`);
  }
}

export class ProgramNotFoundError extends LbdError {
  constructor(
    readonly program: Program,
    readonly where?: string,
  ) {
    super('E_PROGRAM_NOT_FOUND', notFoundMessage(program, where));
  }
}

function notFoundMessage(p: Program, where?: string): string {
  const at = where ? ` ${where}` : '';
  if (p.built) return `${p.name}: not built:${at} (compiled from ${p.built})`;
  if (p.package === null) return `${p.name}: not found${at}${p.why ? ` (${p.why})` : ''}`;
  return `${p.name}: not found:${at ? `${at}:` : ''} install Debian package ${p.package} (apt-get install ${p.package})`;
}

export interface RunResult {
  status: number | null; // null when killed by a signal (e.g. the timeout)
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export class ProgramFailedError extends LbdError {
  constructor(
    readonly command: string[],
    readonly result: RunResult,
    detail?: string,
  ) {
    super('E_PROGRAM_FAILED', `${command.join(' ')}: ${detail ?? failureText(result)}`);
  }
}

/** How a run ended, for messages: "exit N", or "signal S" when it was killed. */
export function exitText(r: Pick<RunResult, 'status' | 'signal'>): string {
  return r.status !== null ? `exit ${r.status}` : `signal ${r.signal}`;
}

/** Why a run failed, for messages: what it said on stderr, else how it ended. */
export function failureText(r: Pick<RunResult, 'status' | 'signal' | 'stderr'>): string {
  return r.stderr.trim() || exitText(r);
}

export function isProgramName(name: string): name is ProgramName {
  return Object.prototype.hasOwnProperty.call(PROGRAMS, name);
}

export function programNames(): ProgramName[] {
  return Object.keys(PROGRAMS) as ProgramName[];
}

/** A program's declaration; throws UndeclaredProgramError for a name that is not declared. */
export function program(name: ProgramName): Program {
  if (!isProgramName(name)) throw new UndeclaredProgramError(name);
  return { name, ...PROGRAMS[name] };
}

export function extraPackages(): ExtraPackage[] {
  return Object.entries(PACKAGES).map(([name, p]) => ({ name, ...p }));
}

export function listNames(): ListName[] {
  return Object.keys(declaration.lists) as ListName[];
}

export function listDescription(list: ListName): string {
  return declaration.lists[list];
}

/** The Debian packages setup installs for these lists (programs flagged install: false left out), sorted. */
export function packagesOf(lists: ListName[]): string[] {
  const out = new Set<string>();
  for (const n of programNames()) {
    const p = PROGRAMS[n];
    if (lists.includes(p.list) && p.package !== null && p.install !== false) out.add(p.package);
  }
  for (const p of extraPackages()) if (lists.includes(p.list)) out.add(p.name);
  return [...out].sort();
}

function isExecutableFile(f: string): boolean {
  try {
    fs.accessSync(f, fs.constants.X_OK);
    return fs.statSync(f).isFile();
  } catch {
    return false;
  }
}

/** Where a program with a fixed location is (whether or not it is there yet), else undefined. */
export function declaredPath(name: ProgramName): string | undefined {
  const p = program(name);
  return p.path === undefined ? undefined : path.resolve(REPO_ROOT, p.path);
}

/**
 * The absolute path a program is started from: Node.js itself for `node`, the declared
 * location if it has one, else the first match in PATH and then the system directories (not
 * resolved through symlinks: multi-call programs such as iptables look at their name).
 */
export function programPath(name: ProgramName): string {
  const p = program(name);
  if (name === 'node') return process.execPath;
  const fixed = declaredPath(name);
  if (fixed !== undefined) {
    if (isExecutableFile(fixed)) return fixed;
    throw new ProgramNotFoundError(p, fixed);
  }
  const dirs = (process.env.PATH ?? '').split(':').filter((d) => path.isAbsolute(d));
  for (const d of SYSTEM_DIRS) if (!dirs.includes(d)) dirs.push(d);
  for (const d of dirs) {
    const f = path.join(d, name);
    if (isExecutableFile(f)) return f;
  }
  throw new ProgramNotFoundError(p);
}

export interface RunOptions {
  input?: string | Buffer;
  /** killed with SIGTERM after this long; default: no limit */
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** default: all three piped (stdout and stderr collected) */
  stdio?: StdioOptions;
  /** default 64 MiB per stream */
  maxBuffer?: number;
}

const MAX_BUFFER = 64 * 1024 * 1024;

function startFailure(name: ProgramName, file: string, args: string[], err: NodeJS.ErrnoException): LbdError {
  if (err.code === 'ENOENT') return new ProgramNotFoundError(program(name), file);
  return new ProgramFailedError([name, ...args], { status: null, signal: null, stdout: '', stderr: '' }, `could not start ${file}: ${err.message}`);
}

/**
 * Runs a program to completion, synchronously (for code that is synchronous today: the lab,
 * teardown in exit handlers, the CLI). Never throws on a non-zero exit or a timeout; throws
 * ProgramNotFoundError when it is not installed.
 */
export function runSync(name: ProgramName, args: string[], opts: RunOptions = {}): RunResult {
  const file = programPath(name);
  const r = spawnSync(file, args, {
    input: opts.input,
    timeout: opts.timeoutMs,
    env: opts.env,
    cwd: opts.cwd,
    stdio: opts.stdio ?? 'pipe',
    maxBuffer: opts.maxBuffer ?? MAX_BUFFER,
    encoding: 'utf8',
  });
  if (r.error && !r.pid) throw startFailure(name, file, args, r.error);
  return { status: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** runSync, and stdout; a non-zero exit or a timeout is a ProgramFailedError with the program's stderr. */
export function runSyncOk(name: ProgramName, args: string[], opts: RunOptions = {}): string {
  const r = runSync(name, args, opts);
  if (r.status !== 0) throw new ProgramFailedError([name, ...args], r);
  return r.stdout;
}

/** Runs a program to completion without blocking the event loop; rejects only when it cannot start. */
export function run(name: ProgramName, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  let file: string;
  try {
    file = programPath(name);
  } catch (e) {
    return Promise.reject(e);
  }
  return new Promise((resolve, reject) => {
    const stdio = opts.stdio ?? ['pipe', 'pipe', 'pipe'];
    const child = cpSpawn(file, args, { env: opts.env, cwd: opts.cwd, stdio, timeout: opts.timeoutMs });
    const max = opts.maxBuffer ?? MAX_BUFFER;
    const out = { stdout: '', stderr: '' };
    for (const k of ['stdout', 'stderr'] as const) {
      child[k]?.setEncoding('utf8');
      child[k]?.on('data', (d: string) => {
        out[k] += d;
        if (out[k].length > max) child.kill('SIGTERM');
      });
    }
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (child.pid === undefined) reject(startFailure(name, file, args, e));
    });
    child.on('close', (status, signal) => resolve({ status, signal, ...out }));
    if (child.stdin) {
      child.stdin.on('error', () => undefined); // a program that exits without reading its input
      child.stdin.end(opts.input);
    }
  });
}

/** Starts a program (for long-running ones: the caller owns the ChildProcess). */
export function spawnProgram(name: ProgramName, args: string[], opts: SpawnOptions = {}): ChildProcess {
  return cpSpawn(programPath(name), args, opts);
}

/**
 * The arguments of `ip` that run a command inside a named network namespace. `ip netns exec`
 * execs the program, so a spawned process's PID is the program's own.
 */
export function netnsArgs(ns: string, cmd: Command): string[] {
  return ['netns', 'exec', ns, programPath(cmd[0]), ...cmd.slice(1)];
}
