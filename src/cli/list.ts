/** `lbd list`: the running services and real servers, like `ipvsadm -L -n`. */
import { adminRequest } from '../control/admin/client';
import type { ConnEntry, ListResult } from '../control/admin/protocol';
import { resolveServiceView } from '../control/admin/service-ref';
import { bool, Command, parseFlags, socketPath, UsageError } from './command';
import { formatConnections, formatList } from './format';

const USAGE = `Usage: lbd list [SERVICE] [--stats | --rate | --thresholds | --persistent-conn | -c] [--json]
                [--exact] [--nosort]
                [--socket PATH | --config FILE]

The running services and real servers in \`ipvsadm -L -n\` layout, plus lbd's Health
column and each service's name. SERVICE (a name or VIP:PORT[/PROTO]) shows one service.
A service line shows its scheduler's flags in parentheses as ipvsadm does, e.g.
"TCP  10.0.10.100:80 mh (mh-fallback,mh-port) (web)", and "on_miss hash" when segments of
flows it has no entry for are scheduled by the hash (--json: scheduler_flags, on_miss and,
for mh, mh_table_size).

Options:
  --stats              Conns InPkts OutPkts InBytes OutBytes (totals since start; Out* are 0:
                       in Direct Routing the replies never pass through lbd)
  --rate               CPS InPPS OutPPS InBPS OutBPS over the last 2-second interval
  --thresholds         Uthreshold Lthreshold ActiveConn InActConn, and whether each real
                       server is overloaded now (reached u_threshold, not yet below l_threshold)
  --persistent-conn    Weight PersistConn ActiveConn InActConn: PersistConn counts the client
                       networks held on the server by persistence templates
  -c, --connections    the connection table: pro expire state source virtual destination
  --json               the daemon's answer as JSON (for scripts)
  -x, --exact          exact numbers in --stats/--rate (no K/M/G)
  --nosort             config order instead of ipvsadm's sort by protocol, address, port
  -n, --numeric        accepted for ipvsadm habits (lbd always prints numbers)
  --socket PATH        the daemon's admin socket (default: admin.socket of --config, else
                       /run/lbd/lbd.sock)
  --config FILE        read admin.socket from FILE
`;

export const command: Command = {
  name: 'list',
  summary: 'list services and real servers like ipvsadm -L -n (--stats, --rate, --thresholds, --persistent-conn, -c, --json)',
  usage: USAGE,
  async run(argv, io) {
    const p = parseFlags(
      argv,
      {
        '--stats': {},
        '--rate': {},
        '--thresholds': {},
        '--persistent-conn': {},
        '--connections': { short: '-c' },
        '--json': {},
        '--exact': { short: '-x' },
        '--nosort': {},
        '--numeric': { short: '-n' },
        '--socket': { value: true },
        '--config': { value: true },
        '--help': { short: '-h' },
      },
      'lbd list',
    );
    if (bool(p, '--help')) {
      io.out(USAGE);
      return 0;
    }
    const modes = ['--stats', '--rate', '--thresholds', '--persistent-conn', '--connections'].filter((m) => bool(p, m));
    if (modes.length > 1) throw new UsageError(`lbd list: ${modes.join(' and ')} cannot be combined`);
    if (p.positionals.length > 1) throw new UsageError(`lbd list: one SERVICE at most (got ${p.positionals.join(' ')})`);
    const sock = socketPath(p);
    const only = p.positionals[0];
    if (bool(p, '--connections')) {
      let entries = await adminRequest<ConnEntry[]>(sock, 'connections');
      if (only) {
        const r = await adminRequest<ListResult>(sock, 'list');
        const s = resolveServiceView(r.services, only);
        entries = entries.filter((e) => e.virtual === `${s.vip}:${s.port}` && e.protocol === s.protocol);
      }
      io.out(bool(p, '--json') ? JSON.stringify(entries, null, 2) + '\n' : formatConnections(entries));
      return 0;
    }
    const r = await adminRequest<ListResult>(sock, 'list');
    if (only) r.services = [resolveServiceView(r.services, only)];
    if (bool(p, '--json')) {
      io.out(JSON.stringify(r, null, 2) + '\n');
      return 0;
    }
    const mode = bool(p, '--stats')
      ? 'stats'
      : bool(p, '--rate')
        ? 'rate'
        : bool(p, '--thresholds')
          ? 'thresholds'
          : bool(p, '--persistent-conn')
            ? 'persistent'
            : 'plain';
    io.out(formatList(r, { mode, exact: bool(p, '--exact'), nosort: bool(p, '--nosort') }));
    return 0;
  },
};
