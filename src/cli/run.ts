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

export const RUN_USAGE = `Usage: lbd [run] --config FILE [--log-level LEVEL]

Runs the daemon in the foreground (logs: JSON on stdout). It listens on the admin socket
(admin.socket, default /run/lbd/lbd.sock) for lbd list/server/service/reload/save.

Options:
  -c, --config FILE      the lb.yaml to use
  -l, --log-level LEVEL  trace debug info warn error fatal silent (overrides log.level)

Signals: SIGHUP reloads FILE (like lbd reload); SIGTERM or SIGINT stops capturing, undoes
every change lbd made to the host, removes the admin socket and exits 0. A link going down
and up is ridden out; if the capture or egress interface is deleted, lbd undoes its changes
the same way and exits 1.
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
    return runDaemon(config, args.logLevel ?? config.log.level);
  },
};

export async function runDaemon(config: Config, level: LogLevel): Promise<number> {
  const log = pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
  let daemon: Daemon | undefined;
  let admin: AdminServer | undefined;
  let control: Control | undefined;
  // Signals are ours from the first moment: a SIGTERM while start() is still resolving MACs
  // must undo what start() already changed on the host, not kill the process half-way.
  let stopSignal: string | null = null;
  let stopCode = 0;
  let onStop: (signal: string, code?: number) => void = (signal, code = 0) => {
    stopSignal = signal;
    stopCode = code;
  };
  let onHup: () => void = () => log.warn({ signal: 'SIGHUP' }, 'still starting: reload ignored');
  const sigterm = () => onStop('SIGTERM');
  const sigint = () => onStop('SIGINT');
  const sighup = () => onHup();
  process.on('SIGTERM', sigterm);
  process.on('SIGINT', sigint);
  process.on('SIGHUP', sighup);
  // A bug must not leave the nftables guard or the socket behind: undo, then exit 1.
  process.on('uncaughtException', (e) => {
    log.fatal({ err: e.stack ?? String(e) }, 'uncaught exception: undoing host changes and exiting');
    Promise.all([admin?.close().catch(() => {}), daemon?.stop().catch(() => {})]).finally(() => process.exit(1));
    setTimeout(() => process.exit(1), 900).unref();
  });
  try {
    // The daemon cannot go on (an interface gone, already logged): stop as on SIGTERM, exit 1.
    daemon = new Daemon({ config, log, onFatal: () => onStop('fatal', 1) });
    control = new Control(daemon, { log });
    admin = new AdminServer(control, config.admin.socket, log);
    await admin.listen();
    await daemon.start();
    log.info({ socket: config.admin.socket }, 'admin socket listening');
  } catch (e) {
    log.error({ code: (e as LbdError).code, err: (e as Error).message }, 'lbd could not start');
    await admin?.close().catch(() => {});
    await daemon?.stop().catch(() => {});
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
    onStop = (signal: string, code = 0) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'stopping');
      onHup = () => {};
      // Whatever happens, exit within a second of the signal.
      setTimeout(() => resolve(code), 700).unref();
      Promise.all([a.close().catch(() => {}), d.stop()]).then(
        () => resolve(code),
        (e) => {
          log.error({ err: (e as Error).message }, 'error while stopping');
          resolve(1);
        },
      );
    };
    if (stopSignal) onStop(stopSignal, stopCode);
  });
}
