import { loadConfig } from '../config/load';
import { ConfigError } from '../errors';
import { formatReport, runDoctor, type HostView } from '../doctor/checks';
import { SystemHost } from '../doctor/system';
import { bool, optionsOrExit, parseFlags, processIO, str, UsageError, type CliIO, type Command } from './command';

export const DOCTOR_USAGE = `Usage: lbd doctor --config FILE [--json] [--no-probes]

Checks this host (run it in lbd's network namespace, with lbd's privileges) before and while
lbd runs: interfaces, privileges, ip_forward and the nftables guard, rp_filter, offloads,
the native binding and libpcap, the state file (room for it, what the next start would adopt,
one set aside), who answers ARP for each VIP, each real server's MAC and whether it accepts
traffic for the VIP (a SYN to VIP:port sent to its MAC). Every finding comes with the fix.

  -c, --config FILE  the lb.yaml to check against
      --json         machine-readable report
      --no-probes    no ARP or SYN probes on the wire (host checks only)

Exit status: 0 when nothing would break traffic (warnings allowed), 1 when a check failed
(or the config is invalid), 2 on a usage error.
`;

export interface DoctorArgs {
  config: string;
  json: boolean;
  noProbes: boolean;
}

export function parseDoctorArgs(argv: string[]): DoctorArgs | 'help' {
  const p = parseFlags(argv, { '--config': { short: '-c', value: true }, '--json': {}, '--no-probes': {}, '--help': { short: '-h' } }, 'lbd doctor');
  if (bool(p, '--help')) return 'help';
  if (p.positionals.length) throw new UsageError(`lbd doctor: unexpected argument "${p.positionals[0]}"`);
  const config = str(p, '--config');
  if (!config) throw new UsageError('lbd doctor: --config FILE is required');
  return { config, json: bool(p, '--json'), noProbes: bool(p, '--no-probes') };
}

export async function doctorMain(argv: string[], io: CliIO = processIO, host: HostView = new SystemHost()): Promise<number> {
  const parsed = optionsOrExit(() => parseDoctorArgs(argv), DOCTOR_USAGE, io);
  if ('exit' in parsed) return parsed.exit;
  const args = parsed.options;
  let config;
  try {
    config = loadConfig(args.config);
  } catch (e) {
    if (e instanceof ConfigError) {
      io.err(`${e.message}\nlbd doctor: fix the config first (lbd check --config ${args.config})\n`);
      return 1;
    }
    throw e;
  }
  const report = await runDoctor(config, host, { noProbes: args.noProbes });
  io.out(args.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
  return report.ok ? 0 : 1;
}

export const command: Command = {
  name: 'doctor',
  summary: 'check this host for what would break DR traffic, each finding with its fix',
  usage: DOCTOR_USAGE,
  run: (argv, io) => doctorMain(argv, io),
};
