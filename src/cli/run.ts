/**
 * `lbd [run] --config FILE`: the daemon in the foreground, with its admin socket; SIGHUP
 * reloads the config file, SIGTERM/SIGINT stop it.
 */
import pino from 'pino';
import { loadConfig } from '../config/load';
import type { Config, LogLevel } from '../config/types';
import { Control } from '../control/admin/control';
import { AdminServer } from '../control/admin/server';
import { Daemon } from '../control/daemon';
import { ConfigError, LbdError } from '../errors';
import { answerHelpOrVersion, Command, parseArgs } from './command';
import { HOST_LEASE_S } from '../host/leased-table';

export const RUN_USAGE = `Usage: lbd [run] --config FILE [--log-level LEVEL] [--fresh]

Runs the daemon in the foreground (logs: JSON on stdout). It listens on the admin socket
(admin.socket, default /run/lbd/lbd.sock) for lbd list/server/service/reload/save/stop.

The connection table lives in a memory-mapped state file (state_file, default
/run/lbd/lbd_<capture>.state). At start lbd adopts the table the previous lbd left there,
whether it stopped, crashed or was killed, so established connections go on; a file it cannot
trust is set aside (<state file>.rejected) and lbd starts empty.

Options:
  -c, --config FILE      the lb.yaml to use
  -l, --log-level LEVEL  trace debug info warn error fatal silent (overrides log.level)
      --fresh            start with an empty connection table (the state file is replaced)

Signals: SIGHUP reloads FILE (like lbd reload); SIGTERM or SIGINT stops capturing, removes the
admin socket and exits 0, leaving the state file and the nftables guard for the next lbd (the
guard's lease lapses by itself ${HOST_LEASE_S} s later). \`lbd stop --clean\` removes every change lbd
made to the host. A link going down and up is ridden out; if the capture or egress interface
is deleted, lbd stops the same way and exits 1.
`;

export const command: Command = {
  name: 'run',
  summary: 'run the daemon in the foreground (the default: lbd --config FILE)',
  usage: RUN_USAGE,
  async run(argv, io) {
    const args = parseArgs(['run', ...argv]);
    const answered = answerHelpOrVersion(args, RUN_USAGE, io);
    if (answered !== undefined) return answered;
    let config: Config;
    try {
      config = loadConfig(args.config!);
    } catch (e) {
      if (e instanceof ConfigError) {
        io.err(`${e.message}\n`);
        return 1;
      }
      throw e;
    }
    return runDaemon(config, args.logLevel ?? config.log.level, { fresh: args.fresh === true });
  },
};

type StopMode = Parameters<Daemon['stop']>[0];

export async function runDaemon(config: Config, level: LogLevel, opts: { fresh?: boolean } = {}): Promise<number> {
  const log = pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
  let daemon: Daemon | undefined;
  let admin: AdminServer | undefined;
  let control: Control | undefined;
  // Signals are ours from the first moment: a SIGTERM while start() is still resolving MACs
  // must undo what start() already changed on the host, not kill the process half-way.
  let stopSignal: string | null = null;
  let stopCode = 0;
  let stopMode: StopMode = 'keep';
  let onStop: (signal: string, code?: number, mode?: StopMode) => void = (signal, code = 0, mode = 'keep') => {
    stopSignal = signal;
    stopCode = code;
    stopMode = mode;
  };
  let onHup: () => void = () => log.warn({ signal: 'SIGHUP' }, 'still starting: reload ignored');
  const sigterm = () => onStop('SIGTERM');
  const sigint = () => onStop('SIGINT');
  const sighup = () => onHup();
  process.on('SIGTERM', sigterm);
  process.on('SIGINT', sigint);
  process.on('SIGHUP', sighup);
  // A bug stops lbd as a crash would, but tidily: the state file and the guard's lease stay for
  // the restart (systemd's Restart=on-failure) to adopt; the socket goes. Then exit 1.
  process.on('uncaughtException', (e) => {
    log.fatal({ err: e.stack ?? String(e) }, 'uncaught exception: stopping, the state file kept for the next lbd');
    Promise.all([admin?.close().catch(() => {}), daemon?.stop().catch(() => {})]).finally(() => process.exit(1));
    setTimeout(() => process.exit(1), 900).unref();
  });
  try {
    // The daemon cannot go on (an interface gone, already logged): stop as on SIGTERM, exit 1.
    daemon = new Daemon({ config, log, fresh: opts.fresh, onFatal: () => onStop('fatal', 1, 'interface-gone') });
    control = new Control(daemon, { log, stop: (clean) => onStop('lbd stop', 0, clean ? 'clean' : 'keep') });
    admin = new AdminServer(control, config.admin.socket, log);
    await admin.listen();
    await daemon.start();
    log.info({ socket: config.admin.socket }, 'admin socket listening');
  } catch (e) {
    log.error({ code: (e as LbdError).code, err: (e as Error).message }, 'lbd could not start');
    await admin?.close().catch(() => {});
    await daemon?.stop('failed-start').catch(() => {});
    return 1;
  }
  const d = daemon;
  const a = admin;
  const c = control;
  onHup = () => {
    log.info({ signal: 'SIGHUP', file: d.running.file }, 'reloading');
    // Control.reload logs the outcome (changes, or the errors and that nothing changed).
    c.reload('SIGHUP').catch(() => {});
  };
  return new Promise<number>((resolve) => {
    let stopping = false;
    onStop = (signal: string, code = 0, mode: StopMode = 'keep') => {
      if (stopping) return;
      stopping = true;
      log.info({ signal, clean: mode === 'clean' }, 'stopping');
      onHup = () => {};
      // Whatever happens, exit within a second of the signal.
      setTimeout(() => resolve(code), 700).unref();
      Promise.all([a.close().catch(() => {}), d.stop(mode)]).then(
        () => resolve(code),
        (e) => {
          log.error({ err: (e as Error).message }, 'error while stopping');
          resolve(1);
        },
      );
    };
    if (stopSignal) onStop(stopSignal, stopCode, stopMode);
  });
}
