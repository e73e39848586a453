import pino from 'pino';
import { loadConfig, formatConfig } from '../config/load';
import type { LogLevel } from '../config/types';
import { Daemon } from '../control/daemon';
import { ConfigError, LbdError } from '../errors';
import { VERSION } from '../version';

const USAGE = `lbd ${VERSION} — userspace L4 Direct Routing load balancer

Usage:
  lbd [run] --config FILE [--log-level LEVEL]   run the daemon in the foreground (logs: JSON on stdout)
  lbd check --config FILE                       validate FILE, print the normalized config; exit 1 on errors
  lbd --help | --version

Options:
  -c, --config FILE      the lb.yaml to use
  -l, --log-level LEVEL  trace debug info warn error fatal silent (overrides log.level)

SIGTERM or SIGINT stops capturing, undoes every change lbd made to the host and exits 0.
`;

const LOG_LEVELS: LogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

export interface ParsedArgs {
  command: 'run' | 'check' | 'help' | 'version';
  config?: string;
  logLevel?: LogLevel;
}

export class UsageError extends LbdError {
  constructor(message: string) {
    super('E_USAGE', message);
  }
}

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
      case '-l':
      case '--log-level': {
        const v = value();
        if (!LOG_LEVELS.includes(v as LogLevel)) throw new UsageError(`--log-level: unknown level "${v}" (${LOG_LEVELS.join(', ')})`);
        out.logLevel = v as LogLevel;
        break;
      }
      default:
        throw new UsageError(`unknown option "${a}"`);
    }
  }
  if (!out.config) throw new UsageError('--config FILE is required');
  return out;
}

export async function main(argv: string[]): Promise<number> {
  let args: ParsedArgs;
  try {
    args = parseArgs(argv);
  } catch (e) {
    process.stderr.write(`lbd: ${(e as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (args.command === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (args.command === 'version') {
    process.stdout.write(`lbd ${VERSION}\n`);
    return 0;
  }
  let config;
  try {
    config = loadConfig(args.config!);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`${e.message}\n`);
      if (args.command === 'check') process.stderr.write(`${args.config}: ${e.issues.length} error${e.issues.length === 1 ? '' : 's'}\n`);
      return 1;
    }
    throw e;
  }
  if (args.command === 'check') {
    process.stdout.write(formatConfig(config));
    process.stderr.write(`${args.config}: configuration is valid\n`);
    return 0;
  }
  return run(config, args.logLevel ?? config.log.level);
}

async function run(config: ReturnType<typeof loadConfig>, level: LogLevel): Promise<number> {
  const log = pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
  let daemon: Daemon;
  try {
    daemon = new Daemon({ config, log });
    await daemon.start();
  } catch (e) {
    log.error({ code: (e as LbdError).code, err: (e as Error).message }, 'lbd could not start');
    // @ts-expect-error daemon may be unassigned when the constructor threw
    await daemon?.stop().catch(() => {});
    return 1;
  }
  return new Promise<number>((resolve) => {
    const shutdown = (signal: string) => {
      log.info({ signal }, 'stopping');
      // Whatever happens, exit within a second of the signal.
      setTimeout(() => resolve(0), 900).unref();
      daemon.stop().then(
        () => resolve(0),
        (e) => {
          log.error({ err: (e as Error).message }, 'error while stopping');
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
}
