/**
 * What the usage texts of the `lbd` commands say, as data: every option (long and short, whether
 * it takes a value, and the value's choices), the actions of a command with actions (`lbd server
 * add|edit|…`) and the positional arguments of each. The bash completion
 * (contrib/bash-completion/lbd, ./completion.ts) and lbd(8) (./manual.ts) are generated from it,
 * so neither can drift from `lbd COMMAND --help`.
 *
 * Read from a usage text: its synopsis (from "Usage:" to the first blank line) and its option
 * lines (an indented line that starts with `-x, --long` or `--long`). A value is the word after
 * one space: an upper-case metavariable (FILE, N, MAC|auto) or choices (lo|redirect).
 */
import { COMMAND_FILES, loadCommand } from './main';
import type { Command } from './command';

export interface OptionSpec {
  long: string;
  short?: string;
  /** The value's metavariable (FILE, LEVEL, N) or choices text (tcp|udp); undefined: a switch. */
  value?: string;
  /** Literal values the usage names (`--method lo|redirect`, `--mac MAC|auto`: auto). */
  choices: string[];
}

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  /** The synopsis lines, "Usage: " removed. */
  synopsis: string[];
  /** By long name, in the order the usage names them; --help is always there. */
  options: Map<string, OptionSpec>;
  /** `lbd server add|edit|…`: the action words; [] for a command without actions. */
  actions: string[];
  /** The positional metavariables (SERVICE, ADDRESS, FILE), by action ('' without actions). */
  positionals: Map<string, string[]>;
}

const LONG = /--[a-z][a-z0-9-]*/;
const META = /^(?:[A-Z][A-Z_]*(?:\[=[A-Z]+\])?(?:\|[a-z][a-z0-9-]*)*|[a-z0-9][a-z0-9-]*(?:\|[a-z0-9][a-z0-9-]*)+)$/;

/** The synopsis of a usage text: "Usage: …" and its continuation lines, up to the first blank line. */
function synopsisOf(usage: string): string[] {
  const lines: string[] = [];
  for (const line of usage.split('\n')) {
    if (!line.trim()) break;
    lines.push(line.replace(/^Usage:\s*/, '').trim());
  }
  return lines;
}

function addOption(options: Map<string, OptionSpec>, long: string, short?: string, value?: string): void {
  const o = options.get(long) ?? { long, choices: [] };
  if (short) o.short = short;
  if (value && !o.value) o.value = value;
  if (value) for (const c of value.split('|').filter((x) => /^[a-z0-9]/.test(x))) if (!o.choices.includes(c)) o.choices.push(c);
  options.set(long, o);
}

/** The value after an option at `rest` (the text right after it): one space, then a metavariable or choices. */
function valueAt(rest: string): string | undefined {
  const m = /^(?:=| )(\S+)/.exec(rest);
  if (!m) return undefined;
  let v = m[1];
  // the closing brackets of the synopsis around it: "[--config FILE])"
  const count = (c: string) => v.split(c).length - 1;
  while (/[\])]$/.test(v) && count(']') + count(')') > count('[') + count('(')) v = v.slice(0, -1);
  return META.test(v) ? v : undefined;
}

export function commandSpec(cmd: Command): CommandSpec {
  const synopsis = synopsisOf(cmd.usage);
  const options = new Map<string, OptionSpec>();
  // option lines: "  -c, --config FILE   text" or "      --fresh   text" or "  --stats   text"
  const optionLines: { long: string; short?: string; value?: string }[] = [];
  for (const line of cmd.usage.split('\n')) {
    const m = /^\s+(?:(-[A-Za-z]),\s+)?(--[a-z][a-z0-9-]*)(.*)$/.exec(line);
    if (m) optionLines.push({ short: m[1], long: m[2], value: valueAt(m[3]) });
  }
  // the synopsis: every --long (with its value) and every -x N
  for (const line of synopsis) {
    for (const m of line.matchAll(new RegExp(`(?<=^|[\\s\\[|(])(${LONG.source}|-[A-Za-z])(?=$|[\\s\\]|=)])`, 'g'))) {
      const rest = line.slice(m.index + m[0].length);
      if (m[1].startsWith('--')) addOption(options, m[1], undefined, valueAt(rest));
      else {
        const long = optionLines.find((o) => o.short === m[1])?.long;
        if (long) addOption(options, long, m[1], valueAt(rest));
      }
    }
  }
  for (const o of optionLines) addOption(options, o.long, o.short, o.value);
  addOption(options, '--help', '-h');

  // actions and positionals: "lbd server add    SERVICE ADDRESS [--weight N] …"
  const actions: string[] = [];
  const positionals = new Map<string, string[]>();
  for (const line of synopsis) {
    for (const form of line.split(/\(or:\s*/)) {
      const m = new RegExp(`\\blbd (?:\\[${cmd.name}\\]|${cmd.name})\\b(.*)$`).exec(form);
      if (!m) continue;
      const words = m[1].trim().split(/\s+/).filter(Boolean);
      let action = '';
      if (words[0] && /^[a-z][a-z-]*$/.test(words[0])) {
        action = words.shift()!;
        if (!actions.includes(action)) actions.push(action);
      }
      const pos = positionals.get(action) ?? [];
      words.forEach((w, i) => {
        const meta = /^\[?([A-Z][A-Z_]*)(?:\[=[A-Z]+\])?\]?\)?$/.exec(w)?.[1];
        const prev = (words[i - 1] ?? '').replace(/^[[(|]+/, '');
        if (meta && !/^-/.test(prev) && !pos.includes(meta)) pos.push(meta);
      });
      positionals.set(action, pos);
    }
  }
  return { name: cmd.name, summary: cmd.summary, usage: cmd.usage, synopsis, options, actions, positionals };
}

/** Every command of the CLI, in `lbd --help` order. */
export function commandSpecs(): CommandSpec[] {
  return COMMAND_FILES.map((f) => commandSpec(loadCommand(f)!));
}
