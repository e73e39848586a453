/**
 * node dist/lab/cli.js up [--shape one-nic|two-nic|routed] [--prefix P] [--client-tx-offload-off]
 *                         [--balancer-tx-offload-off] [--no-balancer-gro] [--routed-vip]
 *                         [--no-apache] [--no-udp-echo] [--udp-port N]
 *     Builds a lab, prints it as JSON on stdout, keeps it until SIGINT/SIGTERM, then tears it down.
 * node dist/lab/cli.js down PREFIX
 *     Removes the leftovers of a lab (see cleanup.ts).
 * node dist/lab/cli.js list
 *     Prefixes that still have namespaces.
 */
import { createLab, type LabOptions, type LabShape } from './lab';
import { cleanupPrefix, listLeftovers } from './cleanup';

const USAGE = `usage:
  cli.js up [--shape one-nic|two-nic|routed] [--prefix P] [--client-tx-offload-off] [--balancer-tx-offload-off]
            [--no-balancer-gro] [--routed-vip (two-nic)] [--no-apache] [--no-udp-echo] [--udp-port N] [--big-file-mb N] [--random-macs]
  cli.js down PREFIX
  cli.js list`;

function parseUp(args: string[]): LabOptions {
  const o: LabOptions = {};
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const val = (): string => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case '--shape': {
        const v = val();
        if (v !== 'one-nic' && v !== 'two-nic' && v !== 'routed') throw new Error(`--shape: one-nic, two-nic or routed, not ${v}`);
        o.shape = v as LabShape;
        break;
      }
      case '--prefix':
        o.prefix = val();
        break;
      case '--client-tx-offload': // the default now; kept for old scripts
        o.clientTxOffload = true;
        break;
      case '--client-tx-offload-off':
        o.clientTxOffload = false;
        break;
      case '--no-balancer-gro':
        o.balancerGro = false;
        break;
      case '--routed-vip':
        o.routedVip = true;
        break;
      case '--balancer-tx-offload-off':
        o.balancerTxOffload = false;
        break;
      case '--no-apache':
        o.apache = false;
        break;
      case '--no-udp-echo':
        o.udpEcho = false;
        break;
      case '--udp-port':
        o.udpPort = Number(val());
        break;
      case '--big-file-mb':
        o.bigFileMB = Number(val());
        break;
      case '--random-macs':
        o.randomMacs = true;
        break;
      default:
        throw new Error(`unknown option ${a}\n${USAGE}`);
    }
  }
  return o;
}

function main(argv: string[]): number {
  const [cmd, ...rest] = argv;
  if (cmd === 'up') {
    const lab = createLab({ ...parseUp(rest), log: (m) => process.stderr.write(`[lab] ${m}\n`) });
    process.stdout.write(JSON.stringify(lab.describe(), null, 2) + '\n');
    process.stderr.write(`[lab] ${lab.prefix} is up; Ctrl-C to tear it down (or: node dist/lab/cli.js down ${lab.prefix})\n`);
    const keep = setInterval(() => undefined, 1 << 30);
    const stop = (sig: NodeJS.Signals): void => {
      clearInterval(keep);
      // the lab's own handler has already torn it down; this only makes the exit clean
      try {
        lab.teardown();
      } catch (e) {
        process.stderr.write(`[lab] ${(e as Error).message}\n`);
        process.exit(1);
      }
      process.stderr.write(`[lab] ${lab.prefix} torn down (${sig})\n`);
      process.exit(0);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    process.on('SIGHUP', stop);
    return -1; // keep running
  }
  if (cmd === 'down') {
    if (rest.length !== 1) throw new Error(USAGE);
    const r = cleanupPrefix(rest[0]);
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    return r.problems.length ? 1 : 0;
  }
  if (cmd === 'list') {
    for (const l of listLeftovers()) process.stdout.write(`${l.prefix}\t${l.namespaces.join(' ')}\n`);
    return 0;
  }
  process.stderr.write(`${USAGE}\n`);
  return 2;
}

try {
  const rc = main(process.argv.slice(2));
  if (rc >= 0) process.exitCode = rc;
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exitCode = 1;
}
