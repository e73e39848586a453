/**
 * The `lbd` command line: a dispatcher over one file per command.
 *
 * ADDING A COMMAND (one line): create src/cli/NAME.ts exporting `export const command: Command`
 * (see ./command.ts: name, summary, usage, run(argv, io) → exit status; use parseFlags,
 * reportError, SOCKET_FLAGS/socketPath and adminRequest for daemon commands), then add 'NAME'
 * to COMMAND_FILES below. `lbd --help` lists it from its summary and `lbd NAME --help` prints
 * its usage. The host tools are commands like any other: 'doctor' and 'realserver-setup'
 * (src/cli/doctor.ts, src/cli/realserver-setup.ts) need no special case here.
 */
import { didYouMean } from '../config/suggest';
import { LbdError } from '../errors';
import { VERSION } from '../version';
import { CliIO, Command, processIO, reportError, UsageError, VERSION_LINE } from './command';

export { UsageError } from './command';

/** Command files in src/cli/, in `lbd --help` order. Each exports `command: Command`. */
export const COMMAND_FILES = ['run', 'check', 'schema', 'list', 'server', 'service', 'reload', 'save', 'stop', 'import-ipvsadm', 'doctor', 'realserver-setup'];

/** Loads the commands (lazily, so `lbd list` does not load the data plane). */
export function loadCommand(name: string): Command | undefined {
  if (!COMMAND_FILES.includes(name)) return undefined;
  // A computed require on purpose: each command's module loads only when it runs.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require(`./${name}`) as { command: Command }).command;
}

export function usage(): string {
  const cmds = COMMAND_FILES.map((f) => loadCommand(f)!).filter(Boolean);
  const width = Math.max(...cmds.map((c) => c.name.length));
  return `lbd ${VERSION} — userspace L4 Direct Routing load balancer

Usage:
  lbd [run] [--config FILE] [--log-level LEVEL] [--fresh | --take-over]
                                                run the daemon in the foreground (logs: JSON on stdout;
                                                the config: FILE, else /etc/lbd/lb.yaml)
  lbd COMMAND [OPTIONS]                         talk to a running daemon, check or convert configs
  lbd COMMAND --help                            the options of one command
  lbd --help | --version

Commands:
${cmds.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Commands that talk to the daemon use its admin socket: --socket PATH, else admin.socket of
--config FILE, else /run/lbd/lbd.sock. Exit status: 0 ok, 1 failed, 2 usage error; the daemon
exits 78 (EX_CONFIG) when its config is invalid; lbd check exits 1 then (like nginx -t).
SIGTERM or SIGINT (or lbd stop) stops the daemon and exits 0, leaving the state file and the
nftables guard for the next lbd; lbd stop --clean removes them. SIGHUP reloads its config file.
lbd --config FILE --take-over replaces a running lbd without a gap (an upgrade).
`;
}

export async function main(argv: string[], io: CliIO = processIO): Promise<number> {
  const first = argv[0];
  // A bare `lbd` runs the daemon on the default config, as `lbd run` does.
  if (first === '-h' || first === '--help' || first === 'help') {
    const sub = first === 'help' && argv[1] ? loadCommand(argv[1]) : undefined;
    io.out(sub ? sub.usage : usage());
    return 0;
  }
  if (first === '-V' || first === '--version' || first === 'version') {
    io.out(VERSION_LINE);
    return 0;
  }
  let cmd: Command | undefined;
  let rest: string[];
  if (first === undefined || first.startsWith('-')) {
    cmd = loadCommand('run');
    rest = argv;
  } else {
    cmd = loadCommand(first);
    rest = argv.slice(1);
    if (!cmd) {
      const guess = didYouMean(first, COMMAND_FILES);
      io.err(`lbd: unknown command "${first}"${guess ? `; did you mean "${guess}"?` : ''} (${COMMAND_FILES.join(', ')})\n\n${usage()}`);
      return 2;
    }
  }
  try {
    return await cmd!.run(rest, io);
  } catch (e) {
    if (e instanceof UsageError) return reportError(e, io, cmd!.usage);
    if (e instanceof LbdError) return reportError(e, io);
    throw e;
  }
}
