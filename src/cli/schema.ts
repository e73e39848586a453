/** `lbd schema`: the JSON Schema of lb.yaml, generated from the config's field table. */
import { configSchemaText } from '../config/schema';
import { bool, Command, parseFlags, UsageError } from './command';

const USAGE = `Usage: lbd schema

Prints the JSON Schema (draft-07) of lb.yaml on stdout, generated from the table of keys the
config loader reads: every key with its type, default, range or choices and description.
Editors use it for completion, hover text and checks as you type, e.g. with the first line
  # yaml-language-server: $schema=/usr/share/lbd/lb.yaml.schema.json
(the installed copy). Rules that relate several keys are checked by \`lbd check\` only.
The repository's copy is this output: node bin/lbd schema > schema/lb.yaml.schema.json
`;

export const command: Command = {
  name: 'schema',
  summary: 'print the JSON Schema of lb.yaml (for editors)',
  usage: USAGE,
  async run(argv, io) {
    const p = parseFlags(argv, { '--help': { short: '-h' } }, 'lbd schema');
    if (bool(p, '--help')) {
      io.out(USAGE);
      return 0;
    }
    if (p.positionals.length) throw new UsageError(`lbd schema: unexpected argument "${p.positionals[0]}" (redirect the output: lbd schema > FILE)`);
    io.out(configSchemaText());
    return 0;
  },
};
