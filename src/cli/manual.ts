/**
 * The COMMANDS section of lbd(8), generated from the usage texts of the commands (the same
 * `lbd COMMAND --help` the CLI prints), so that the manual cannot drift from the CLI; the rest
 * of the page is docs/man/lbd.8.scd.in. scripts/man.mjs puts the two together and
 * scripts/build-man.sh renders it with scdoc.
 */
import { commandSpecs, type CommandSpec } from './usage-spec';

/** Text for scdoc outside a literal block: its formatting characters escaped. */
export function scdocText(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\*/g, '\\*').replace(/_/g, '\\_');
}

/** One subsection per command: its summary, its options in short, then its whole usage text. */
export function commandsSection(specs: CommandSpec[] = commandSpecs()): string {
  return specs
    .map((s) => {
      const opts = [...s.options.values()].map((o) => `*${scdocText(o.short ? `${o.short}, ${o.long}` : o.long)}*${o.value ? ` _${scdocText(o.value)}_` : ''}`);
      const acts = s.actions.length ? `Actions: ${s.actions.map((a) => `*${scdocText(a)}*`).join(', ')}.\n\n` : '';
      const usage = s.usage.replace(/\s+$/, '');
      return `## lbd ${s.name}\n\n${scdocText(s.summary)}.\n\n${acts}Options: ${opts.join(', ')}.\n\n\`\`\`\n${usage}\n\`\`\``;
    })
    .join('\n\n');
}

/** lbd(8) in scdoc: the template with @COMMANDS@ replaced. */
export function lbdManual(template: string): string {
  if (!/^@COMMANDS@$/m.test(template)) throw new Error('lbd.8.scd.in: no @COMMANDS@ line');
  return template.replace(/^@COMMANDS@$/m, () => commandsSection());
}
