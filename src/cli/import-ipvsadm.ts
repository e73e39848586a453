/** `lbd import-ipvsadm < rules`: ipvsadm-save output → lb.yaml (migration from IPVS). */
import * as fs from 'node:fs';
import { importIpvsadm, ImportError } from '../control/ipvsadm';
import { bool, Command, parseFlags, str, UsageError } from './command';

const USAGE = `Usage: lbd import-ipvsadm [--interface IF] [--egress IF] [FILE]   (rules on stdin without FILE)

Turns IPVS rules — the output of \`ipvsadm-save -n\` or \`ipvsadm -S -n\`, or lines of ipvsadm
commands — into an lb.yaml on stdout. Understands -A/-E/-D, -a/-e/-d, -C, -t/-u, -s, -p [N],
-M, -b, -r, -w, -x/-y, -g and their long forms. lbd does Direct Routing only: NAT (-m) and
tunnel (-i) servers, fwmark (-f), IPv6 and SCTP services are refused with the reason.

Scheduler flags (-b) become the service's keys: sh-fallback, sh-port with -s sh and
mh-fallback, mh-port with -s mh (flag-1, flag-2 are their numbers) → sh_fallback, sh_port,
mh_fallback, mh_port. A flag that means nothing for the scheduler (flag-3, or any flag-N of
a scheduler other than sh and mh) is ignored with a warning; another scheduler's flag or an
unknown name is refused, as ipvsadm does. One-packet scheduling (-o) and --pe are ignored
with a warning.

  --interface IF   interfaces.capture: where VIP traffic arrives (otherwise a placeholder
                   "eth0" to fill in)
  --egress IF      interfaces.egress, when frames leave on another interface

Example:  ipvsadm-save -n | lbd import-ipvsadm --interface eth0 > /etc/lbd/lb.yaml
          lbd check --config /etc/lbd/lb.yaml
`;

export const command: Command = {
  name: 'import-ipvsadm',
  summary: 'turn ipvsadm-save -n output into an lb.yaml (migration from IPVS)',
  usage: USAGE,
  async run(argv, io) {
    const p = parseFlags(argv, { '--interface': { short: '-i', value: true }, '--egress': { value: true }, '--help': { short: '-h' } }, 'lbd import-ipvsadm');
    if (bool(p, '--help')) {
      io.out(USAGE);
      return 0;
    }
    if (p.positionals.length > 1) throw new UsageError('lbd import-ipvsadm: one FILE at most (or the rules on stdin)');
    const file = p.positionals[0];
    let text: string;
    if (file && file !== '-') {
      try {
        text = fs.readFileSync(file, 'utf8');
      } catch (e) {
        throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
    } else {
      if (process.stdin.isTTY) io.err('lbd: reading ipvsadm rules from stdin (end with Ctrl-D; e.g. ipvsadm-save -n | lbd import-ipvsadm)\n');
      text = await io.stdin();
    }
    for (const [flag, v] of [
      ['--interface', str(p, '--interface')],
      ['--egress', str(p, '--egress')],
    ] as const) {
      if (v !== undefined && (v.length > 15 || /[\s/]/.test(v))) throw new UsageError(`${flag}: "${v}" is not an interface name`);
    }
    try {
      const r = importIpvsadm(text, { interface: str(p, '--interface'), egress: str(p, '--egress'), source: file && file !== '-' ? file : 'stdin' });
      io.out(r.yaml);
      for (const w of r.warnings) io.err(`lbd: warning: ${w}\n`);
      return 0;
    } catch (e) {
      if (e instanceof ImportError) {
        io.err(`${e.message}\nlbd: nothing imported (${e.problems.length} problem${e.problems.length === 1 ? '' : 's'})\n`);
        return 1;
      }
      throw e;
    }
  },
};
