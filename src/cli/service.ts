/** `lbd service add|edit|remove`: virtual services of a running daemon, like ipvsadm -A/-E/-D. */
import { adminRequest } from '../control/admin/client';
import type { ChangeResult, Change } from '../control/admin/protocol';
import { bool, Command, list, parseFlags, SOCKET_FLAGS, socketPath, str, UsageError } from './command';
import { printChanges } from './server';

const USAGE = `Usage: lbd service add    NAME --vip VIP --port PORT --server ADDRESS[=WEIGHT] [--server …]
                                [--protocol tcp|udp] [--scheduler S] [--sched-flags FLAGS]
                                [--persistence SECONDS] [--netmask MASK] [--on-remove drain|drop]
                                [--on-miss drop|hash]
       lbd service edit   SERVICE [--scheduler S] [--sched-flags FLAGS] [--persistence SECONDS]
                                [--netmask MASK] [--on-remove drain|drop] [--on-miss drop|hash]
                                [--name NEW]
       lbd service remove SERVICE
       (each with [--socket PATH | --config FILE])

Changes the virtual services of a running daemon, like ipvsadm -A / -E / -D. SERVICE is a
name or VIP:PORT[/PROTO]. A service needs at least one real server: give --server once per
server (weight 1 unless ADDRESS=WEIGHT). The VIP, port and protocol identify a service and
cannot be edited: add a new one and remove the old one (its flows drain).

Options:
  --vip VIP              the virtual IPv4 address
  --port PORT            the virtual port
  --protocol P           tcp (default) or udp
  --scheduler S          rr wrr lc wlc sed nq sh fo ovf mh (default wlc); a new scheduler
                         drops the old one's flags and options
  -b, --sched-flags FLAGS
                         like ipvsadm -b, comma-separated: sh-fallback,sh-port for sh and
                         mh-fallback,mh-port for mh (flag-1, flag-2 are their numbers); the
                         service's flags become these; none clears them
  --persistence SECONDS  like ipvsadm -p; 0 = off (default 0); 300, 5m, …
  --netmask MASK         like ipvsadm -M: clients grouped for persistence
  --on-remove ACTION     drain (default) or drop: what removing a real server does to its flows
  --on-miss ACTION       drop (default) or hash (mh, sh): a TCP segment of a connection this
                         balancer has no entry for is scheduled by the hash (IPVS sloppy_tcp)

Changes live in memory until written back: lbd save > FILE.
`;

export const command: Command = {
  name: 'service',
  summary: 'add, edit or remove a virtual service of a running daemon (ipvsadm -A/-E/-D)',
  usage: USAGE,
  async run(argv, io) {
    const p = parseFlags(
      argv,
      {
        '--vip': { value: true },
        '--port': { value: true },
        '--protocol': { value: true },
        '--scheduler': { short: '-s', value: true },
        '--sched-flags': { short: '-b', value: true },
        '--persistence': { short: '-p', value: true },
        '--netmask': { short: '-M', value: true },
        '--on-remove': { value: true },
        '--on-miss': { value: true },
        '--server': { short: '-r', value: true, repeat: true },
        '--name': { value: true },
        ...SOCKET_FLAGS,
      },
      'lbd service',
    );
    if (bool(p, '--help')) {
      io.out(USAGE);
      return 0;
    }
    const [action, target, ...extra] = p.positionals;
    const actions = ['add', 'edit', 'remove'];
    if (!action) throw new UsageError('lbd service: which action? (add, edit, remove)');
    if (!actions.includes(action)) throw new UsageError(`lbd service: unknown action "${action}" (${actions.join(', ')})`);
    if (!target) throw new UsageError(`lbd service ${action}: give the service ${action === 'add' ? 'NAME' : '(name or VIP:PORT)'}`);
    if (extra.length) throw new UsageError(`lbd service ${action}: unexpected argument "${extra[0]}"`);
    const portText = str(p, '--port');
    let port: number | undefined;
    if (portText !== undefined) {
      if (!/^\d+$/.test(portText)) throw new UsageError(`--port: expected 1-65535, got "${portText}"`);
      port = Number(portText);
    }
    let change: Change;
    if (action === 'add') {
      const vip = str(p, '--vip');
      if (!vip || port === undefined) throw new UsageError('lbd service add: --vip VIP and --port PORT are required');
      if (str(p, '--name') !== undefined) throw new UsageError('lbd service add: the name is the first argument (--name belongs to edit)');
      change = {
        op: 'service-add',
        name: target,
        vip,
        port,
        protocol: str(p, '--protocol'),
        scheduler: str(p, '--scheduler'),
        sched_flags: str(p, '--sched-flags'),
        persistence: str(p, '--persistence'),
        netmask: str(p, '--netmask'),
        on_remove: str(p, '--on-remove'),
        on_miss: str(p, '--on-miss'),
        servers: list(p, '--server'),
      };
    } else if (action === 'edit') {
      if (list(p, '--server').length) throw new UsageError('lbd service edit: real servers change with lbd server add/edit/remove');
      change = {
        op: 'service-edit',
        service: target,
        name: str(p, '--name'),
        scheduler: str(p, '--scheduler'),
        sched_flags: str(p, '--sched-flags'),
        persistence: str(p, '--persistence'),
        netmask: str(p, '--netmask'),
        on_remove: str(p, '--on-remove'),
        on_miss: str(p, '--on-miss'),
        vip: str(p, '--vip'),
        port,
        protocol: str(p, '--protocol'),
      };
    } else {
      const given = [
        '--vip',
        '--port',
        '--protocol',
        '--scheduler',
        '--sched-flags',
        '--persistence',
        '--netmask',
        '--on-remove',
        '--on-miss',
        '--server',
        '--name',
      ].filter((f) => p.flags.has(f));
      if (given.length) throw new UsageError(`lbd service remove: ${given.join(', ')} not expected`);
      change = { op: 'service-remove', service: target };
    }
    const r = await adminRequest<ChangeResult>(socketPath(p), 'change', change);
    printChanges(r, io);
    return 0;
  },
};
