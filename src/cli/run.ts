/**
 * `lbd [run] --config FILE`: the daemon in the foreground, with its admin socket; SIGHUP
 * reloads the config file, SIGTERM/SIGINT stop it.
 */
import pino from 'pino';
import { loadConfig } from '../config/load';
import type { Config, LogLevel } from '../config/types';
import { Control } from '../control/admin/control';
import { AdminGroupError, AdminServer, prepareSocketDirectory } from '../control/admin/server';
import { Daemon } from '../control/daemon';
import { ConfigError, LbdError } from '../errors';
import { journalDestination, stdoutIsJournal } from '../journal';
import { answerHelpOrVersion, Command, EXIT_CONFIG, parseArgs } from './command';
import { HOST_LEASE_S } from '../host/leased-table';
import { type Owner, selfOwner, waitGone } from '../host/owner';
import { adminRequest, NoDaemonError } from '../control/admin/client';
import { STATE_LAYOUT_VERSION } from '../dataplane/contract';
import { stateFilePath } from '../host/instance';
import type { HandoverResult } from '../control/admin/protocol';
import type { Logger } from 'pino';
import { ServiceNotifier } from '../host/sd-notify';
import { ANNOUNCE_FD_NAME } from '../host/announce';
import { checkCapabilities } from '../host/capabilities';
import { CapabilityError } from '../errors';
import { requireBinding } from '../dataplane/binding';

export const RUN_USAGE = `Usage: lbd [run] [--config FILE] [--log-level LEVEL] [--fresh | --take-over]

Runs the daemon in the foreground (logs: JSON on stdout). It listens on the admin socket
(admin.socket, default /run/lbd/lbd.sock) for lbd list/server/service/reload/save/stop.

The connection table lives in a memory-mapped state file (state_file, default
/run/lbd/lbd_<capture>.state). At start lbd adopts the table the previous lbd left there,
whether it stopped, crashed or was killed, so established connections go on; a file it cannot
trust is set aside (<state file>.rejected) and lbd starts empty.

Options:
  -c, --config FILE      the lb.yaml to use (default /etc/lbd/lb.yaml)
  -l, --log-level LEVEL  trace debug info warn error fatal silent (overrides log.level)
      --fresh            start with an empty connection table (the state file is replaced)
      --take-over        take over without a gap (an upgrade) from the lbd on this config's
                         admin.socket, which must run with the same state_file and capture
                         interface: this one opens its capture, then the running one stops
                         forwarding, hands over its table and guard, and exits 0

Signals: SIGHUP reloads FILE (like lbd reload); SIGUSR2 hands over to an lbd --take-over that
asked for it (ignored otherwise); SIGTERM or SIGINT stops capturing, removes the
admin socket and exits 0, leaving the state file and the nftables guard for the next lbd (the
guard's lease lapses by itself ${HOST_LEASE_S} s later). \`lbd stop --clean\` removes every change lbd
made to the host. A link going down and up is ridden out; if the capture or egress interface
is deleted, lbd stops the same way and exits 1.

Exit status: 0 stopped on request; 1 a runtime or host failure (an interface missing or gone, a
port in use, a crash); 2 a usage error; 78 (EX_CONFIG) the config is invalid or missing, or the
service is set up so that lbd cannot run (a capability it lacks, an admin.group it may not
give), which a restart would not mend (systemd: RestartPreventExitStatus=78).
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
        return EXIT_CONFIG;
      }
      throw e;
    }
    return runDaemon(config, args.logLevel ?? config.log.level, { fresh: args.fresh === true, takeOver: args.takeOver === true });
  },
};

type StopMode = Parameters<Daemon['stop']>[0];

/** How long the new lbd waits for the old one's process to end before it listens on the admin socket. */
const HANDOVER_GONE_MS = 3000;

/**
 * lbd --take-over: asks the lbd on the admin socket to hand over. Its owner (PID and start), or
 * undefined when none answers: then this lbd starts as any other would.
 */
async function askHandover(config: Config, log: Logger): Promise<Owner | undefined> {
  let r: HandoverResult;
  try {
    r = await adminRequest<HandoverResult>(config.admin.socket, 'handover', undefined, 3000);
  } catch (e) {
    // Nobody listens: start as usual. Anything else (it refused, it is busy) is the answer.
    if (!(e instanceof NoDaemonError)) throw new LbdError('E_HANDOVER', `the running lbd does not hand over: ${(e as Error).message}`);
    log.warn({ socket: config.admin.socket }, '--take-over: no lbd runs on the admin socket: starting as usual');
    return undefined;
  }
  // Refused before anything happens to the running lbd: a hand-over that would lose the table.
  const stateFile = stateFilePath(config);
  const differs = [
    r.stateFile !== stateFile ? `state_file ${r.stateFile} there, ${stateFile} here` : '',
    r.capture !== config.interfaces.capture ? `capture interface ${r.capture} there, ${config.interfaces.capture} here` : '',
    r.layoutVersion !== STATE_LAYOUT_VERSION
      ? `table layout ${r.layoutVersion} there, ${STATE_LAYOUT_VERSION} here (stop it and start this one: the table cannot be carried over)`
      : '',
  ].filter(Boolean);
  if (differs.length) throw new LbdError('E_HANDOVER', `the running lbd (pid ${r.pid}) cannot hand over to this one: ${differs.join('; ')}`);
  log.info({ from: r.pid, socket: config.admin.socket }, 'taking over from the running lbd');
  return { pid: r.pid, start: r.start };
}

/** How long a running lbd, asked to hand over, waits for the new lbd's SIGUSR2. */
const HANDOVER_ARMED_MS = 10_000;

export async function runDaemon(config: Config, level: LogLevel, opts: { fresh?: boolean; takeOver?: boolean } = {}): Promise<number> {
  const options = { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime };
  // Under systemd, each line carries its syslog priority for the journal (journal.ts).
  const log = stdoutIsJournal() ? pino(options, journalDestination()) : pino(options);
  // Under systemd (Type=notify): READY, RELOADING, STOPPING and the watchdog (sd-notify.ts).
  const notifier = ServiceNotifier.fromProcess((socket, message, fds) => requireBinding().sdNotify(socket, message, fds), log);
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
  // SIGUSR2 hands over to an lbd --take-over, which asked first on the admin socket (a stray
  // SIGUSR2 must not stop a balancer).
  let handoverUntil = 0;
  // A hand-over is offered only once this lbd has started (never half-way through its own start).
  let started = false;
  process.on('SIGUSR2', () => {
    if (performance.now() < handoverUntil) onStop('SIGUSR2', 0, 'handover');
    else log.warn({ signal: 'SIGUSR2' }, 'SIGUSR2 ignored: no lbd --take-over asked to take over');
  });
  // A bug stops lbd as a crash would, but tidily: the state file and the guard's lease stay for
  // the restart (systemd's Restart=on-failure) to adopt; the socket goes. Then exit 1.
  process.on('uncaughtException', (e) => {
    log.fatal({ err: e.stack ?? String(e) }, 'uncaught exception: stopping, the state file kept for the next lbd');
    Promise.all([admin?.close().catch(() => {}), daemon?.stop().catch(() => {})]).finally(() => process.exit(1));
    setTimeout(() => process.exit(1), 900).unref();
  });
  try {
    // Before anything changes on the host: without CAP_NET_RAW or CAP_NET_ADMIN, say which.
    checkCapabilities();
    // The socket's directory (by default also the state file's, which the Daemon opens next) made
    // for the socket's group, not as root's alone.
    prepareSocketDirectory(config.admin.socket, config.admin.group);
    const handoverFrom = opts.takeOver ? await askHandover(config, log) : undefined;
    // The daemon cannot go on (an interface gone, already logged): stop as on SIGTERM, exit 1.
    daemon = new Daemon({
      config,
      log,
      fresh: opts.fresh,
      handoverFrom,
      onFatal: () => onStop('fatal', 1, 'interface-gone'),
      keepAlive: (nowMs) => notifier.keepAlive(nowMs),
      keepForRestart: (name, fd) => notifier.store(name, fd),
    });
    const d0 = daemon;
    control = new Control(daemon, {
      log,
      stop: (clean) => onStop('lbd stop', 0, clean ? 'clean' : 'keep'),
      handover: () => {
        if (!started) throw new LbdError('E_ADMIN', 'still starting: cannot hand over yet');
        handoverUntil = performance.now() + HANDOVER_ARMED_MS;
        return {
          pid: process.pid,
          start: selfOwner().start,
          armedMs: HANDOVER_ARMED_MS,
          stateFile: d0.stateFile?.path ?? null,
          capture: config.interfaces.capture,
          layoutVersion: STATE_LAYOUT_VERSION,
        };
      },
      // Only once started: READY=1 before the start's own would tell systemd lbd forwards already.
      reloadHooks: {
        begin: () => {
          if (started) notifier.reloading();
        },
        end: () => {
          if (started) notifier.ready(forwardingStatus(d0));
        },
      },
    });
    admin = new AdminServer(control, config.admin.socket, log, undefined, { group: config.admin.group });
    if (handoverFrom) {
      // The old lbd still has the socket until it is gone; forwarding comes first.
      await daemon.start();
      await waitGone(handoverFrom, HANDOVER_GONE_MS);
      await admin.listen();
      log.info({ from: handoverFrom.pid }, 'took over from the previous lbd');
    } else {
      await admin.listen();
      await daemon.start();
    }
    log.info({ socket: config.admin.socket }, 'admin socket listening');
    started = true;
    releaseKept(notifier);
  } catch (e) {
    log.error({ code: (e as LbdError).code, err: (e as Error).message }, 'lbd could not start');
    notifier.status(`could not start: ${(e as Error).message}`);
    releaseKept(notifier);
    await admin?.close().catch(() => {});
    await daemon?.stop('failed-start').catch(() => {});
    // What a restart cannot mend (the unit's capabilities, admin.group) is a configuration error.
    return e instanceof CapabilityError || e instanceof AdminGroupError ? EXIT_CONFIG : 1;
  }
  const d = daemon;
  const a = admin;
  const c = control;
  notifier.ready(forwardingStatus(d));
  onHup = () => {
    log.info({ signal: 'SIGHUP', file: d.running.file }, 'reloading');
    // Control.reload logs the outcome (changes, or the errors and that nothing changed).
    c.reload('SIGHUP').catch(() => {});
  };
  return new Promise<number>((resolve) => {
    let stopping = false;
    onStop = (signal: string, code = 0, mode: StopMode = 'keep') => {
      if (stopping) {
        // A second signal: no more waiting for the routers (announce.withdraw_delay).
        d.hurry();
        return;
      }
      stopping = true;
      log.info({ signal, clean: mode === 'clean' }, 'stopping');
      const delayMs = d.withdrawDelayMs(mode ?? 'keep');
      notifier.stopping(delayMs > 0 ? `stopping: VIPs withdrawn, leaving in ${delayMs / 1000} s (announce.withdraw_delay)` : 'stopping');
      onHup = () => {};
      // Whatever happens, exit within a second of the signal, or of the withdraw delay (announce).
      setTimeout(() => resolve(code), 700 + delayMs).unref();
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

/** The STATUS= line `systemctl status lbd` shows while lbd forwards. */
function forwardingStatus(d: Daemon): string {
  const services = d.running.services.length;
  const reals = d.running.services.reduce((n, s) => n + s.real_servers.length, 0);
  return `forwarding: ${services} service${services === 1 ? '' : 's'}, ${reals} real server${reals === 1 ? '' : 's'} on ${d.running.interfaces.capture} (${d.dataplanePath} data plane)`;
}

/**
 * The announce interface the previous lbd left in the service manager's keeping: this lbd has
 * attached to it (or failed to start, and the routes must go), so the store lets go of it.
 */
function releaseKept(notifier: ServiceNotifier): void {
  if (notifier.passedNames.has(ANNOUNCE_FD_NAME)) notifier.release(ANNOUNCE_FD_NAME);
}
