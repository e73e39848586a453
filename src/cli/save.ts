/** `lbd save`: the running config as YAML, or as `ipvsadm -S -n` rules. */
import { adminRequest } from '../control/admin/client';
import type { SaveResult } from '../control/admin/protocol';
import { bool, Command, parseFlags, SOCKET_FLAGS, socketPath, UsageError } from './command';

const USAGE = `Usage: lbd save [--ipvsadm] [--socket PATH | --config FILE]

Prints the running config — the file plus every runtime change (lbd server/service …) — as
YAML in the normalized form of \`lbd check\`, ready to write back: lbd save > /etc/lbd/lb.yaml.
The runtime changes not in the file yet are listed on stderr.

  --ipvsadm   print it as \`ipvsadm -S -n\` rules instead (-A -t VIP:PORT -s SCHED [-p N],
              -a -t VIP:PORT -r RS:PORT -g -w W), e.g. to compare with or fall back to IPVS
`;

export const command: Command = {
  name: 'save',
  summary: 'print the running config as YAML (--ipvsadm: as ipvsadm -S -n rules)',
  usage: USAGE,
  async run(argv, io) {
    const p = parseFlags(argv, { '--ipvsadm': {}, ...SOCKET_FLAGS }, 'lbd save');
    if (bool(p, '--help')) {
      io.out(USAGE);
      return 0;
    }
    if (p.positionals.length) throw new UsageError(`lbd save: unexpected argument "${p.positionals[0]}" (redirect the output: lbd save > FILE)`);
    const r = await adminRequest<SaveResult>(socketPath(p), 'save');
    io.out(bool(p, '--ipvsadm') ? r.ipvsadm : r.yaml);
    const omitted = bool(p, '--ipvsadm') ? (r.ipvsadm_omitted ?? []) : [];
    if (omitted.length) {
      io.err(
        `lbd: ${omitted.length} setting${omitted.length === 1 ? '' : 's'} of the running config ${omitted.length === 1 ? 'is' : 'are'} not expressible as ipvsadm rules:\n`,
      );
      for (const o of omitted) io.err(`  ${o}\n`);
    }
    if (r.runtime_changes.length) {
      io.err(`lbd: the running config has ${r.runtime_changes.length} runtime change${r.runtime_changes.length === 1 ? '' : 's'} not in ${r.file}:\n`);
      for (const c of r.runtime_changes) io.err(`  ${c}\n`);
      if (!bool(p, '--ipvsadm')) io.err(`lbd: write them back with: lbd save > ${r.file}\n`);
    }
    return 0;
  },
};
