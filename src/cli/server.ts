/** `lbd server add|edit|remove|drain`: real servers of a running daemon, like ipvsadm -a/-e/-d. */
import { adminRequest } from '../control/admin/client';
import type { ChangeResult, Change, ListResult } from '../control/admin/protocol';
import { resolveServiceView } from '../control/admin/service-ref';
import { LbdError } from '../errors';
import { bool, CliIO, Command, parseFlags, saveHint, SOCKET_FLAGS, socketPath, str, UsageError } from './command';

const USAGE = `Usage: lbd server add    SERVICE ADDRESS [--weight N] [--mac MAC] [-x N] [-y N]
       lbd server edit   SERVICE ADDRESS [--weight N] [--mac MAC|auto] [-x N] [-y N]
       lbd server remove SERVICE ADDRESS
       lbd server drain  SERVICE ADDRESS [--wait [--timeout SECONDS]]
       (each with [--socket PATH | --config FILE])

Changes the real servers of a running daemon, like ipvsadm -a / -e / -d. SERVICE is a
service name or VIP:PORT[/PROTO]; ADDRESS is the real server's IPv4 address (ADDRESS:PORT is
accepted when PORT is the service port: Direct Routing cannot change it).

  add      a new real server (weight 1 unless --weight; MAC by ARP unless --mac)
  edit     change its weight, MAC (--mac auto: resolve it by ARP again) and/or thresholds
  remove   take it out; its flows drain (or are cut with on_remove: drop, see docs)
  drain    weight 0: no new connections, existing ones continue. With --wait, reports its
           active connections every second until none is left (exit 0), or until
           --timeout SECONDS pass (exit 1)

Connection thresholds (add and edit), as ipvsadm -x/-y:
  -x, --u-threshold N  at N connections (active + inactive) the server is overloaded and
                       takes no new ones; 0 = no limit (and removes -y too)
  -y, --l-threshold N  it takes new connections again below N (0 = below 3/4 of -x);
                       at most the upper threshold

Changes apply at once and live in memory: \`lbd save\` prints the running config to write
back to the file, and \`lbd reload\` (or SIGHUP) returns to the file.
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const command: Command = {
  name: 'server',
  summary: 'add, edit, remove or drain a real server of a running daemon (ipvsadm -a/-e/-d)',
  usage: USAGE,
  async run(argv, io) {
    const p = parseFlags(
      argv,
      {
        '--weight': { short: '-w', value: true },
        '--mac': { value: true },
        '--u-threshold': { short: '-x', value: true },
        '--l-threshold': { short: '-y', value: true },
        '--wait': {},
        '--timeout': { value: true },
        ...SOCKET_FLAGS,
      },
      'lbd server',
    );
    if (bool(p, '--help')) {
      io.out(USAGE);
      return 0;
    }
    const [action, service, address, ...extra] = p.positionals;
    const actions = ['add', 'edit', 'remove', 'drain'];
    if (!action) throw new UsageError('lbd server: which action? (add, edit, remove, drain)');
    if (!actions.includes(action)) {
      const alias: Record<string, string> = { delete: 'remove', del: 'remove', rm: 'remove', set: 'edit' };
      if (!alias[action]) throw new UsageError(`lbd server: unknown action "${action}" (${actions.join(', ')})`);
      return command.run([alias[action], ...argv.filter((a) => a !== action)], io);
    }
    if (!service || !address) throw new UsageError(`lbd server ${action}: give SERVICE and ADDRESS (e.g. lbd server ${action} web 10.0.10.40)`);
    if (extra.length) throw new UsageError(`lbd server ${action}: unexpected argument "${extra[0]}"`);
    const weightText = str(p, '--weight');
    const mac = str(p, '--mac');
    const upperText = str(p, '--u-threshold');
    const lowerText = str(p, '--l-threshold');
    if ((action === 'remove' || action === 'drain') && [weightText, mac, upperText, lowerText].some((v) => v !== undefined)) {
      throw new UsageError(`lbd server ${action}: --weight, --mac and the thresholds belong to add and edit`);
    }
    const threshold = (text: string | undefined, flag: string): number | undefined => {
      if (text === undefined) return undefined;
      if (!/^\d+$/.test(text)) throw new UsageError(`${flag}: expected a number of connections (0 = no limit), got "${text}"`);
      return Number(text);
    };
    const u_threshold = threshold(upperText, '--u-threshold');
    const l_threshold = threshold(lowerText, '--l-threshold');
    if (action !== 'drain' && (bool(p, '--wait') || str(p, '--timeout') !== undefined))
      throw new UsageError('lbd server: --wait and --timeout belong to drain');
    if (str(p, '--timeout') !== undefined && !bool(p, '--wait')) throw new UsageError('lbd server drain: --timeout needs --wait');
    let weight: number | undefined;
    if (weightText !== undefined) {
      if (!/^\d+$/.test(weightText)) throw new UsageError(`--weight: expected an integer 0-65535, got "${weightText}"`);
      weight = Number(weightText);
    }
    let timeout = Infinity;
    const t = str(p, '--timeout');
    if (t !== undefined) {
      timeout = Number(t);
      if (!(timeout > 0)) throw new UsageError(`--timeout: expected a number of seconds, got "${t}"`);
    }
    const sock = socketPath(p);
    const change = { op: `server-${action}`, service, address, weight, mac, u_threshold, l_threshold } as Change;
    const r = await adminRequest<ChangeResult>(sock, 'change', change);
    printChanges(r, io);
    if (action === 'drain' && bool(p, '--wait')) return waitDrained(sock, service, address, timeout, io);
    return 0;
  },
};

export function printChanges(r: ChangeResult, io: CliIO): void {
  if (r.changes.length === 0) io.out('no change: the running config is already so\n');
  for (const c of r.changes) io.out(`${c}\n`);
  if (r.runtime_changes.length) io.err(saveHint(r.file, r.runtime_changes.length));
}

/** Reports the server's connections every second until no active one is left. */
async function waitDrained(sock: string, service: string, address: string, timeoutS: number, io: CliIO): Promise<number> {
  const addr = address.split(':')[0];
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    const list = await adminRequest<ListResult>(sock, 'list');
    const s = resolveServiceView(list.services, service);
    const rs = s.reals.find((r) => r.address === addr);
    if (!rs) {
      io.out(`${addr}: gone from ${s.name}: drained\n`);
      return 0;
    }
    io.out(`${rs.address}:${rs.port} (${s.name}): ${rs.active} active, ${rs.inactive} inactive connection${rs.active + rs.inactive === 1 ? '' : 's'}\n`);
    if (rs.active === 0) {
      io.out(`${rs.address}:${rs.port} drained: no active connection left\n`);
      return 0;
    }
    if (Date.now() + 1000 > deadline) {
      throw new LbdError(
        'E_TIMEOUT',
        `${rs.address}:${rs.port} still has ${rs.active} active connection${rs.active === 1 ? '' : 's'} after ${timeoutS} s (it stays at weight 0)`,
      );
    }
    await sleep(1000);
  }
}
