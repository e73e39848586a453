/** `lbd check --config FILE`: validate and print the normalized config. */
import { formatConfig, loadConfig } from '../config/load';
import { ConfigError } from '../errors';
import { answerHelpOrVersion, Command, parseArgs } from './command';

export const CHECK_USAGE = `Usage: lbd check --config FILE   (or: lbd check FILE)

Validates FILE and prints the normalized config (every default filled in) on stdout;
every problem is reported as FILE:LINE:COL path: message. Exit 1 on errors.
`;

export const command: Command = {
  name: 'check',
  summary: 'validate a config file and print it normalized; exit 1 on errors',
  usage: CHECK_USAGE,
  async run(argv, io) {
    const args = parseArgs(['check', ...argv]);
    const answered = answerHelpOrVersion(args, CHECK_USAGE, io);
    if (answered !== undefined) return answered;
    try {
      const config = loadConfig(args.config!);
      io.out(formatConfig(config));
      io.err(`${args.config}: configuration is valid\n`);
      return 0;
    } catch (e) {
      if (e instanceof ConfigError) {
        io.err(`${e.message}\n`);
        io.err(`${args.config}: ${e.issues.length} error${e.issues.length === 1 ? '' : 's'}\n`);
        return 1;
      }
      throw e;
    }
  },
};
