/** `lbd reload`: the daemon re-reads its config file and applies the differences (like SIGHUP). */
import { adminRequest } from '../control/admin/client';
import type { ChangeResult } from '../control/admin/protocol';
import { bool, Command, parseFlags, SOCKET_FLAGS, socketPath, UsageError } from './command';

const USAGE = `Usage: lbd reload [--socket PATH | --config FILE]

The daemon re-reads its config file (the one it was started with), validates it and applies
only the differences: the connection table and every established flow survive; removed real
servers drain (or are cut with on_remove: drop). Prints one line per change.

A file with errors changes nothing: the errors are printed exactly like \`lbd check\` and the
exit status is 1. So is a change that needs a restart (interfaces, connection_table.size,
dataplane, admin.socket, admin.group). Runtime changes (lbd server/service …) not written back
to the file are undone by a reload, and listed. SIGHUP does the same and logs the outcome.
`;

export const command: Command = {
  name: 'reload',
  summary: 're-read the config file and apply only the differences (like SIGHUP)',
  usage: USAGE,
  async run(argv, io) {
    const p = parseFlags(argv, SOCKET_FLAGS, 'lbd reload');
    if (bool(p, '--help')) {
      io.out(USAGE);
      return 0;
    }
    if (p.positionals.length) throw new UsageError(`lbd reload: unexpected argument "${p.positionals[0]}" (the daemon reloads the file it was started with)`);
    const r = await adminRequest<ChangeResult>(socketPath(p), 'reload', undefined, 60000);
    if (r.changes.length === 0) io.out(`${r.file}: reloaded, no changes\n`);
    else {
      io.out(`${r.file}: reloaded, ${r.changes.length} change${r.changes.length === 1 ? '' : 's'}\n`);
      for (const c of r.changes) io.out(`  ${c}\n`);
    }
    if (r.discarded?.length) {
      io.err(`lbd: undid ${r.discarded.length} runtime change${r.discarded.length === 1 ? '' : 's'} that ${r.file} does not have:\n`);
      for (const c of r.discarded) io.err(`  ${c}\n`);
    }
    return 0;
  },
};
