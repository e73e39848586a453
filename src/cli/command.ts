/**
 * What every `lbd` subcommand shares: the Command shape the dispatcher (main.ts) loads, the
 * option parsers, the admin-socket lookup and the error → exit-status convention
 * (0 ok, 1 failed, 2 usage error).
 */
import * as fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { didYouMean } from '../config/suggest';
import { DEFAULTS, LOG_LEVELS, type LogLevel } from '../config/types';
import { LbdError } from '../errors';
import { VERSION } from '../version';

/** What `lbd --version` (and `lbd run|check --version`) prints. */
export const VERSION_LINE = `lbd ${VERSION}\n`;

export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  /** Everything on standard input (import-ipvsadm). */
  stdin(): Promise<string>;
}

export const processIO: CliIO = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
  stdin: () =>
    new Promise((resolve, reject) => {
      let data = '';
      process.stdin.setEncoding('utf8');
      process.stdin.on('data', (c) => (data += c));
      process.stdin.on('end', () => resolve(data));
      process.stdin.on('error', reject);
    }),
};

export interface Command {
  /** The word after `lbd`. */
  name: string;
  /** One line for `lbd --help`. */
  summary: string;
  /** The full text of `lbd NAME --help`. */
  usage: string;
  /** Runs with the arguments after the command word; resolves with the exit status. */
  run(argv: string[], io: CliIO): Promise<number>;
}

export class UsageError extends LbdError {
  constructor(message: string) {
    super('E_USAGE', message);
  }
}

export interface FlagSpec {
  /** Short alias, e.g. '-c'. */
  short?: string;
  /** Takes a value (`--flag VALUE` or `--flag=VALUE`). */
  value?: boolean;
  /** May be given more than once (values collected in order). */
  repeat?: boolean;
}

export interface ParsedFlags {
  flags: Map<string, string | true | string[]>;
  positionals: string[];
}

/** The options every admin command takes (lbd list spells them out: its -c is --connections, as in ipvsadm). */
export const SOCKET_FLAGS: Record<string, FlagSpec> = {
  '--socket': { value: true },
  '--config': { short: '-c', value: true },
  '--help': { short: '-h' },
};

/**
 * Parses GNU-style options: `--long VALUE`, `--long=VALUE`, `-s VALUE`, boolean flags, `--`
 * to end the options; everything else is positional. Unknown options are usage errors with a
 * suggestion.
 */
export function parseFlags(argv: string[], spec: Record<string, FlagSpec>, command: string): ParsedFlags {
  const byShort = new Map<string, string>();
  for (const [long, s] of Object.entries(spec)) if (s.short) byShort.set(s.short, long);
  const flags = new Map<string, string | true | string[]>();
  const positionals: string[] = [];
  const args = [...argv];
  while (args.length) {
    const a = args.shift()!;
    if (a === '--') {
      positionals.push(...args);
      break;
    }
    if (!a.startsWith('-') || a === '-' || /^-\d/.test(a)) {
      positionals.push(a);
      continue;
    }
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const name = eq > 0 ? a.slice(0, eq) : a;
    const long = name.startsWith('--') ? name : byShort.get(name);
    const s = long ? spec[long] : undefined;
    if (!long || !s) {
      const known = [...Object.keys(spec), ...byShort.keys()];
      const guess = didYouMean(name, known);
      throw new UsageError(`${command}: unknown option "${name}"${guess ? `; did you mean "${guess}"?` : ''}`);
    }
    if (s.value) {
      const v = eq > 0 ? a.slice(eq + 1) : args.shift();
      if (v === undefined || v === '') throw new UsageError(`${command}: ${name} needs a value`);
      if (s.repeat) {
        const prev = flags.get(long);
        flags.set(long, [...(Array.isArray(prev) ? prev : []), v]);
      } else {
        flags.set(long, v);
      }
    } else {
      if (eq > 0) throw new UsageError(`${command}: ${name} takes no value`);
      flags.set(long, true);
    }
  }
  return { flags, positionals };
}

export function str(p: ParsedFlags, name: string): string | undefined {
  const v = p.flags.get(name);
  return typeof v === 'string' ? v : undefined;
}

export function bool(p: ParsedFlags, name: string): boolean {
  return p.flags.get(name) === true;
}

export function list(p: ParsedFlags, name: string): string[] {
  const v = p.flags.get(name);
  return Array.isArray(v) ? v : [];
}

export interface ParsedArgs {
  command: 'run' | 'check' | 'help' | 'version';
  config?: string;
  logLevel?: LogLevel;
  /** run --fresh: start with an empty connection table, not the state file's. */
  fresh?: boolean;
  /** run --take-over: take over from the running lbd without a gap (it hands over its table and guard). */
  takeOver?: boolean;
}

/** The config `lbd`, `lbd run` and `lbd check` read when no --config is given. */
export const DEFAULT_CONFIG = '/etc/lbd/lb.yaml';

/**
 * The daemon's exit status when its config is invalid or missing: EX_CONFIG (sysexits.h), so that
 * a service manager can tell it from a runtime failure (1) and not restart into the same error.
 */
export const EXIT_CONFIG = 78;

/**
 * The arguments of `run` and `check`, in the grammar of the first CLI (`lbd --config FILE` runs,
 * `lbd check FILE` checks). Not parseFlags, although both read options: here the messages carry
 * no command prefix and no suggestion, `-c=FILE` works, `--` is no end of options, and -h/-V
 * answer even when later arguments are wrong. Users of the first CLI see all of that, so the
 * grammar keeps its own loop; it lives here so that `lbd check` does not load the daemon.
 */
export function parseArgs(argv: string[]): ParsedArgs {
  const out: ParsedArgs = { command: 'run' };
  const args = [...argv];
  if (args[0] && !args[0].startsWith('-')) {
    const cmd = args.shift()!;
    if (cmd !== 'run' && cmd !== 'check') throw new UsageError(`unknown command "${cmd}" (run, check)`);
    out.command = cmd;
  }
  while (args.length) {
    const a = args.shift()!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = () => {
      const v = inline ?? args.shift();
      if (v === undefined || v === '') throw new UsageError(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '-h':
      case '--help':
        return { command: 'help' };
      case '-V':
      case '--version':
        return { command: 'version' };
      case '-c':
      case '--config':
        out.config = value();
        break;
      case '--fresh':
      case '--take-over':
        if (out.command !== 'run' || inline !== undefined) throw new UsageError(`unknown option "${a}"`);
        if (flag === '--fresh') out.fresh = true;
        else out.takeOver = true;
        break;
      case '-l':
      case '--log-level': {
        const v = value();
        if (!LOG_LEVELS.includes(v as LogLevel)) throw new UsageError(`--log-level: unknown level "${v}" (${LOG_LEVELS.join(', ')})`);
        out.logLevel = v as LogLevel;
        break;
      }
      default:
        // `lbd check lb.yaml`: a lone positional file.
        if (out.command === 'check' && !a.startsWith('-') && out.config === undefined) {
          out.config = a;
          break;
        }
        throw new UsageError(`unknown option "${a}"`);
    }
  }
  // Where operators keep a service's config (keepalived's /etc/keepalived, HAProxy's /etc/haproxy).
  if (!out.config) out.config = DEFAULT_CONFIG;
  if (out.fresh && out.takeOver) throw new UsageError('--fresh and --take-over together: a hand-over that starts with an empty table would cut every flow');
  return out;
}

/** `run` and `check` answer -h and -V alike: the exit status when parseArgs found one of them, else undefined. */
export function answerHelpOrVersion(args: ParsedArgs, usage: string, io: CliIO): number | undefined {
  if (args.command === 'help') {
    io.out(usage);
    return 0;
  }
  if (args.command === 'version') {
    io.out(VERSION_LINE);
    return 0;
  }
  return undefined;
}

/**
 * The admin socket a command talks to: --socket PATH; else admin.socket of the --config FILE
 * (read leniently: a file with other errors still names its socket); else the default.
 */
export function socketPath(p: ParsedFlags): string {
  const explicit = str(p, '--socket');
  if (explicit) return explicit;
  const file = str(p, '--config');
  if (file) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new UsageError(`cannot read ${file} (to find admin.socket): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    try {
      const doc = parseYaml(text) as { admin?: { socket?: unknown } } | null;
      const s = doc?.admin?.socket;
      if (typeof s === 'string' && s) return s;
    } catch {
      // unparsable: the default socket
    }
  }
  return DEFAULTS.adminSocket;
}

/**
 * The options of a host tool (doctor, realserver-setup): what `parse` returns, or the exit status
 * after --help (0) or after a usage error, which is printed with the whole usage (2).
 */
export function optionsOrExit<T>(parse: () => T | 'help', usage: string, io: CliIO): { options: T } | { exit: number } {
  let o: T | 'help';
  try {
    o = parse();
  } catch (e) {
    io.err(`${(e as Error).message}\n\n${usage}`);
    return { exit: 2 };
  }
  if (o === 'help') {
    io.out(usage);
    return { exit: 0 };
  }
  return { options: o };
}

/** Prints an error the lbd way and returns its exit status (2 for usage errors). */
export function reportError(e: unknown, io: CliIO, usage?: string): number {
  if (e instanceof UsageError) {
    io.err(`lbd: ${e.message}\n${usage ? `\n${usage}` : ''}`);
    return 2;
  }
  if (e instanceof LbdError) {
    io.err(`lbd: ${e.message}\n`);
    return 1;
  }
  throw e;
}

/** The one-line hint after a runtime change: it lives in memory until written back. */
export function saveHint(file: string, pending: number): string {
  return `lbd: ${pending} runtime change${pending === 1 ? '' : 's'} not in ${file}: \`lbd reload\` would undo ${pending === 1 ? 'it' : 'them'}; keep ${pending === 1 ? 'it' : 'them'} with: lbd save > ${file}\n`;
}
