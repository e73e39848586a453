/**
 * The key reference of lb.yaml(5), generated from the field table (./fields.ts): every section
 * and key, depth first, with its type, default, range or choices and description — the same
 * table the loader validates against, so the manual cannot drift from it. The rest of the page
 * is docs/man/lb.yaml.5.scd.in; scripts/man.mjs puts the two together.
 */
import { scdocText } from '../cli/manual';
import { CONFIG, type Field, type FieldType, type Section } from './fields';
import { documented } from './schema';
import { RESTART_KEY_PATHS } from '../control/reconcile';

/** What each type of value is, in the words of the reader that reads it (./readers.ts). */
const TYPE_TEXT: Record<FieldType, string> = {
  section: 'a mapping',
  list: 'a list',
  int: 'an integer',
  bool: 'true or false',
  enum: 'one of',
  duration: 'a duration: seconds, or 200us, 500ms, 2s, 1m, 1h, 1m30s',
  ipv4: 'an IPv4 address',
  netmask: 'an IPv4 netmask',
  mac: 'a MAC address',
  listen: 'an IPv4 host:port',
  ifname: 'an interface name',
  socket: 'an absolute unix socket path',
  group: 'a group name or a numeric gid',
  path: 'an absolute file path',
  'service-name': 'a name of letters, digits, "_", "." and "-"',
  'http-path': 'an HTTP path starting with /',
  'http-host': 'a Host header value',
  'status-set': 'HTTP status codes: a code, a range or a comma list',
  regex: 'a regular expression',
};

export interface KeyEntry {
  /** The dotted path, list items as `[]`: services[].real_servers[].weight. */
  path: string;
  field: Field;
}

/** Every key of the table, depth first (health_check once per place it is used). */
export function keyPaths(section: Section = CONFIG, prefix = ''): KeyEntry[] {
  const out: KeyEntry[] = [];
  for (const field of section.fields) {
    const p = prefix ? `${prefix}.${field.key}` : field.key;
    out.push({ path: p, field });
    if (field.section) out.push(...keyPaths(field.section, field.type === 'list' ? `${p}[]` : p));
  }
  return out;
}

const show = (v: string | number | boolean) => (typeof v === 'string' && v === '' ? '""' : String(v));

/** The facts of a key, one sentence each: type and range or choices, default or required. */
export function keyFacts(f: Field): string[] {
  const facts: string[] = [];
  let type = TYPE_TEXT[f.type];
  if (f.type === 'enum') type += `: ${(f.choices ?? []).join(', ')}`;
  if (f.type === 'list' && f.items) type += ` of ${f.items}`;
  if (f.type === 'int' && f.min !== undefined && f.max !== undefined) type += `, ${f.min} to ${f.max}`;
  if (f.type === 'duration' && f.positive) type += ', more than 0';
  if (f.type === 'duration' && f.max !== undefined) type += `, at most ${f.maxText ?? `${f.max}s`}`;
  facts.push(`Type: ${type}.`);
  if (f.required !== undefined) facts.push(`Required: ${f.required}.`);
  else if (f.default !== undefined) facts.push(`Default: ${show(documented(f.default) as string | number | boolean)}.`);
  else if (f.implied !== undefined) facts.push(`Default: ${show(f.implied)} (left out of the normalized config when not written).`);
  else if (f.derived !== undefined) facts.push(`Default: ${f.derived}.`);
  else if (f.type !== 'section' && f.type !== 'list') facts.push('Default: none.');
  if (f.onlyWhen) facts.push(`Only with ${f.onlyWhen.key}: ${f.onlyWhen.equals}.`);
  if (f.inherit) facts.push(`Overrides the ${f.inherit}'s ${f.key}: only the keys written; required keys may be inherited.`);
  return facts;
}

/** The KEYS section's body in scdoc: one term per key path, its facts and its description. */
export function keyReference(): string {
  return keyPaths()
    .map(({ path, field }) => {
      const desc = field.description;
      const facts = [...keyFacts(field), ...(RESTART_KEY_PATHS.includes(path) ? ['A change needs a restart (a reload refuses it).'] : [])];
      return `*${scdocText(path)}*\n\t${scdocText(facts.join(' '))}\n\n\t${scdocText(desc.endsWith('.') ? desc : `${desc}.`)}`;
    })
    .join('\n\n');
}

/** lb.yaml(5) in scdoc: the template with @KEYS@ replaced. */
export function lbYamlManual(template: string): string {
  if (!/^@KEYS@$/m.test(template)) throw new Error('lb.yaml.5.scd.in: no @KEYS@ line');
  return template.replace(/^@KEYS@$/m, () => keyReference());
}
