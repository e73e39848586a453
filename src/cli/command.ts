/**
 * What every `lbd` subcommand shares: the Command shape the dispatcher (main.ts) loads, the
 * option parser, the admin-socket lookup and the error → exit-status convention
 * (0 ok, 1 failed, 2 usage error).
 */
import * as fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { didYouMean } from '../config/suggest';
import { DEFAULTS } from '../config/types';
import { LbdError } from '../errors';

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

/** The options every admin command takes. */
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
