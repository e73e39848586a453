/**
 * The JSON Schema of lb.yaml (src/config/schema.ts, committed as schema/lb.yaml.schema.json)
 * against the loader it is generated from: the committed file is the generator's output, the
 * schema is valid draft-07 in ajv's strict mode, it accepts what the loader accepts and refuses
 * what the loader refuses for a field's own reason, and its keys are the field table's keys.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv, { type ErrorObject } from 'ajv';
import { parse as parseYaml, stringify } from 'yaml';
import { main } from '../../src/cli/main';
import type { CliIO } from '../../src/cli/command';
import { CONFIG, type Section } from '../../src/config/fields';
import { parseConfig } from '../../src/config/load';
import { configSchema, configSchemaText, type JsonSchema } from '../../src/config/schema';
import { ConfigError } from '../../src/errors';

// Compiled to dist/test/unit/: the sources are three levels up.
const ROOT = path.resolve(__dirname, '../../..');
const SCHEMA_FILE = path.join(ROOT, 'schema/lb.yaml.schema.json');
const REGENERATE = 'node bin/lbd schema > schema/lb.yaml.schema.json';

const validate = new Ajv({ strict: true, allErrors: true }).compile(configSchema());

/** The loader's verdict: undefined when it accepts `text`, else the paths of its issues. */
function loaderIssues(text: string): string[] | undefined {
  try {
    parseConfig(text, 'lb.yaml');
    return undefined;
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.issues.map((i) => i.path);
  }
}

/** The schema's verdict on a YAML text: undefined when valid, else the paths it reports (as the loader writes them). */
function schemaIssues(text: string): string[] | undefined {
  if (validate(parseYaml(text))) return undefined;
  return (validate.errors ?? []).map(loaderPath);
}

/** `/services/0/port` → `services[0].port`; an unknown key's error names the key itself. */
function loaderPath(e: ErrorObject): string {
  const parts = e.instancePath.split('/').slice(1);
  if (e.keyword === 'additionalProperties') parts.push(String(e.params.additionalProperty));
  if (e.keyword === 'required') parts.push(String(e.params.missingProperty));
  return parts
    .map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`))
    .join('')
    .replace(/^\./, '');
}

const describeErrors = () => JSON.stringify(validate.errors?.map((e) => `${e.instancePath} ${e.message}`));

/** A config the loader accepts that writes every key of the table, each shorthand and each nullable section. */
const EVERY_KEY = `
interfaces: { capture: eth0, egress: eth1 }
metrics: { listen: 0.0.0.0:9469 }
log: { level: debug }
dataplane: ts
busy_poll: 200us
connection_table: { size: 4096, syn_flood_defense: on, defense_threshold: 90, defense_syn_recv_timeout: 3s }
timeouts: { tcp: 15m, tcpfin: 2m, udp: 300 }
admin: { socket: /run/lbd/test.sock, group: 1000 }
on_remove: drop
expire_nodest_conn: true
conn_reuse_mode: 1
state_file: /run/lbd/lbd_eth0.state
local_access: true
announce: { interface: lbdv-eth0, table: 100, hold_on_restart: 5s, withdraw_delay: 1.5, hang_timeout: 500ms }
services:
  - name: web
    vip: 10.0.10.100
    port: 80
    protocol: tcp
    scheduler: mh
    mh_table_size: 4093
    mh_fallback: true
    mh_port: true
    on_miss: hash
    persistence: 1m30s
    persistence_netmask: 255.255.255.0
    health_check:
      { type: http, interval: 2s, timeout: 1s, rise: 3, fall: 2, path: /health, host: www.example.com, expect_status: 200, expect_body: "ok|OK", port: 8080 }
    on_down: drop
    inhibit_on_failure: true
    quorum: 2
    sorry_server: 10.0.10.200
    initial_state: down
    on_remove: drain
    conn_reuse_mode: 0
    real_servers:
      - 10.0.10.40
      - "10.0.10.41:80"
      - address: 10.0.10.42
        port: 80
        weight: 0
        mac: 02-AA-00-00-00-01
        u_threshold: 100
        l_threshold: 50
        health_check: { expect_status: "200-299, 301", path: /x, host: h.example, expect_body: ok }
  - name: 8053
    vip: 10.0.10.101
    port: 53
    protocol: udp
    scheduler: sh
    sh_fallback: true
    sh_port: true
    sorry_server: { address: 10.0.10.201, mac: 02:00:00:00:00:02 }
    real_servers: [10.0.10.50]
  - name: vip-checked
    vip: 10.0.10.102
    port: 443
    health_check: { type: vip }
    real_servers: [{ address: 10.0.10.60, health_check: { type: tcp, interval: 3s, timeout: 2s, rise: 1, fall: 3, port: 8443 } }]
`;

/** The same with the nullable sections written empty and the other spellings of a few values. */
const EMPTY_SECTIONS = `
interfaces: { capture: "12" }
metrics:
log:
connection_table:
timeouts:
admin: { group: lbd }
announce:
services:
  - { name: a, vip: 192.0.2.1, port: 1, real_servers: ["192.0.2.2:0001"], persistence: "30" }
`;

// --- the committed file --------------------------------------------------------------------------

test(`schema/lb.yaml.schema.json is exactly what \`lbd schema\` prints (regenerate: ${REGENERATE})`, () => {
  const committed = fs.readFileSync(SCHEMA_FILE, 'utf8');
  assert.ok(committed === configSchemaText(), `schema/lb.yaml.schema.json is stale: regenerate it with \`npx tsc -p . && ${REGENERATE}\``);
  assert.deepEqual(JSON.parse(committed), configSchema());
});

test('lbd schema prints it; --help; a stray argument is a usage error', async () => {
  const io = (): CliIO & { stdout: string; stderr: string } => {
    const o = { stdout: '', stderr: '', out: (t: string) => void (o.stdout += t), err: (t: string) => void (o.stderr += t), stdin: async () => '' };
    return o;
  };
  let o = io();
  assert.equal(await main(['schema'], o), 0);
  assert.equal(o.stdout, configSchemaText());
  assert.equal(o.stderr, '');
  o = io();
  assert.equal(await main(['--help'], o), 0);
  assert.match(o.stdout, /^ {2}schema +print the JSON Schema of lb\.yaml/m);
  o = io();
  assert.equal(await main(['schema', '--help'], o), 0);
  assert.match(o.stdout, /^Usage: lbd schema\n/);
  o = io();
  assert.equal(await main(['schema', 'out.json'], o), 2);
  assert.match(o.stderr, /unexpected argument "out.json"/);
});

test('the schema is draft-07 that ajv compiles in strict mode, with the annotations editors show', () => {
  const s = configSchema();
  assert.equal(s.$schema, 'http://json-schema.org/draft-07/schema#');
  assert.equal(typeof s.$id, 'string');
  assert.equal(typeof s.title, 'string');
  assert.match(String(s.description), /left to `lbd check`/); // says what it does not check
  assert.doesNotThrow(() => new Ajv({ strict: true }).compile(s));
  // examples/lb.yaml points editors at it.
  assert.equal(fs.readFileSync(path.join(ROOT, 'examples/lb.yaml'), 'utf8').split('\n')[0], '# yaml-language-server: $schema=../schema/lb.yaml.schema.json');
});

// --- the loader's verdict and the schema's ----------------------------------------------------

test('every example and fixture: what the loader accepts, the schema accepts; what it refuses for a field, the schema refuses', () => {
  const files = [
    ...fs.readdirSync(path.join(ROOT, 'examples')).map((f) => `examples/${f}`),
    ...fs.readdirSync(path.join(ROOT, 'test/fixtures/configs')).map((f) => `test/fixtures/configs/${f}`),
  ].filter((f) => /\.ya?ml$/.test(f));
  assert.ok(files.includes('examples/lb.yaml') && files.includes('test/fixtures/configs/minimal.yaml'), files.join(' '));
  // Fixtures the loader refuses only for a rule across fields, which the schema does not express.
  const crossField = new Set<string>();
  let accepted = 0;
  let refused = 0;
  for (const f of files) {
    const text = fs.readFileSync(path.join(ROOT, f), 'utf8');
    let doc: unknown;
    try {
      doc = parseYaml(text);
    } catch {
      assert.ok(loaderIssues(text), `${f}: broken YAML, refused by the loader`);
      continue; // no JSON to validate
    }
    const issues = loaderIssues(text);
    const valid = validate(doc);
    if (issues === undefined) {
      accepted++;
      assert.ok(valid, `${f}: the loader accepts it, the schema does not: ${describeErrors()}`);
    } else if (!crossField.has(f)) {
      refused++;
      assert.ok(!valid, `${f}: the loader refuses it (${issues.join(', ')}), the schema does not`);
      const reported = new Set(validate.errors!.map(loaderPath));
      const unseen = issues.filter((p) => !reported.has(p));
      assert.deepEqual(unseen, [], `${f}: the schema reports every field the loader does (it reports ${[...reported].join(', ')})`);
    }
  }
  assert.ok(accepted >= 2 && refused >= 2, `${accepted} accepted, ${refused} refused`);
});

test('configs that write every key, shorthand and empty section: accepted by the loader and the schema', () => {
  for (const text of [EVERY_KEY, EMPTY_SECTIONS]) {
    assert.equal(loaderIssues(text), undefined, text);
    assert.equal(schemaIssues(text), undefined, `${describeErrors()}\n${text}`);
  }
  // Between them they write every key the loader knows (so the test above covers every kind of field).
  const written = new Set<string>();
  const walk = (v: unknown, at: string) => {
    if (Array.isArray(v)) v.forEach((x) => walk(x, `${at}[]`));
    else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        written.add(at ? `${at}.${k}` : k);
        walk(x, at ? `${at}.${k}` : k);
      }
    }
  };
  walk(parseYaml(EVERY_KEY), '');
  assert.deepEqual(
    tableKeys().filter((k) => !written.has(k)),
    [],
  );
});

/** The value at a loader path (`services[0].real_servers[1]`). */
function at(doc: unknown, p: string): unknown {
  return p.split(/\.|(?=\[)/).reduce<any>((v, part) => v?.[/^\[(\d+)\]$/.exec(part)?.[1] ?? part], doc);
}

/** A valid config to mutate: the minimal fixture's shape with a health check. */
const BASE = {
  interfaces: { capture: 'eth0' },
  timeouts: { tcp: '15m' },
  services: [
    {
      name: 'web',
      vip: '10.0.10.100',
      port: 80,
      scheduler: 'wlc',
      health_check: { type: 'http', interval: '2s', expect_status: '200-299' },
      real_servers: [{ address: '10.0.10.40', weight: 2, mac: '02:00:00:00:00:01' }, '10.0.10.41'],
    },
  ],
  admin: { socket: '/run/lbd/lbd.sock' },
};

test('mutated configs (wrong type, unknown key, out of range, bad choice, bad syntax): refused by both, at the same field', () => {
  assert.equal(loaderIssues(stringify(BASE)), undefined);
  assert.equal(schemaIssues(stringify(BASE)), undefined, describeErrors());
  const svc = (c: any) => c.services[0];
  const mutations: [string, (c: any) => void][] = [
    ['wrong type: port as text', (c) => (svc(c).port = 'eighty')],
    ['wrong type: a bool as a string', (c) => (c.local_access = 'yes')],
    ['wrong type: a section as a list', (c) => (c.timeouts = ['900s'])],
    ['wrong type: services as a mapping', (c) => (c.services = svc(c))],
    ['unknown key at the top', (c) => (c.service = [])],
    ['unknown key in a service', (c) => (svc(c).shceduler = 'rr')],
    ['unknown key in a real server', (c) => (svc(c).real_servers[0].wieght = 1)],
    ['unknown key in a health check', (c) => (svc(c).health_check.intervall = 2)],
    ['out of range: port 0', (c) => (svc(c).port = 0)],
    ['out of range: weight 65536', (c) => (svc(c).real_servers[0].weight = 65536)],
    ['out of range: connection_table.size', (c) => (c.connection_table = { size: 16 })],
    ['out of range: conn_reuse_mode 3', (c) => (c.conn_reuse_mode = 3)],
    ['not an integer: weight 1.5', (c) => (svc(c).real_servers[0].weight = 1.5)],
    ['bad choice: scheduler', (c) => (svc(c).scheduler = 'wl')],
    ['bad choice: log level', (c) => (c.log = { level: 'loud' })],
    ['bad choice: health-check type', (c) => (svc(c).health_check.type = 'icmp')],
    ['bad duration', (c) => (c.timeouts.tcp = '15 minutes')],
    ['zero positive duration', (c) => (c.timeouts.tcp = '0s')],
    ['negative duration', (c) => (c.timeouts.tcp = -1)],
    ['busy_poll above its maximum', (c) => (c.busy_poll = 0.5)],
    ['bad IPv4', (c) => (svc(c).vip = '10.0.10.300')],
    ['bad real-server shorthand', (c) => (svc(c).real_servers[1] = '10.0.10.41:http')],
    ['bad MAC', (c) => (svc(c).real_servers[0].mac = '02:00:00:00:01')],
    ['multicast MAC', (c) => (svc(c).real_servers[0].mac = '01:00:5e:00:00:01')],
    ['bad netmask', (c) => (svc(c).persistence_netmask = '255.0.255.0')],
    ['bad listen', (c) => (c.metrics = { listen: '127.0.0.1' })],
    ['relative socket path', (c) => (c.admin.socket = 'lbd.sock')],
    ['bad service name', (c) => (svc(c).name = 'my web')],
    ['bad status set', (c) => (svc(c).health_check.expect_status = '2xx')],
    ['http path without /', (c) => (svc(c).health_check.path = 'health')],
    ['missing required key', (c) => delete svc(c).vip],
    ['missing services', (c) => delete c.services],
    ['empty services', (c) => (c.services = [])],
  ];
  for (const [what, mutate] of mutations) {
    const c = structuredClone(BASE);
    mutate(c);
    const text = stringify(c);
    const loader = loaderIssues(text);
    const schema = schemaIssues(text);
    assert.ok(loader, `${what}: the loader refuses it\n${text}`);
    assert.ok(schema, `${what}: the schema refuses it\n${text}`);
    for (const p of loader) {
      // A shorthand string stands for several keys: the loader names the key, the schema the string.
      const parent = p.replace(/\.\w+$/, '');
      const shorthand = parent !== p && typeof at(c, parent) === 'string' && schema.includes(parent);
      assert.ok(schema.includes(p) || shorthand, `${what}: the schema reports ${p} as the loader does (it reports ${schema.join(', ')})`);
    }
  }
});

// --- the keys -----------------------------------------------------------------------------------

/** Every key path the loader accepts, from the field table: `services[].real_servers[].health_check.type`. */
function tableKeys(section: Section = CONFIG, at = ''): string[] {
  return section.fields.flatMap((f) => {
    const p = at ? `${at}.${f.key}` : f.key;
    if (f.type === 'section') return [p, ...tableKeys(f.section!, p)];
    if (f.type === 'list') return [p, ...tableKeys(f.section!, `${p}[]`)];
    return [p];
  });
}

/** Every key path the schema has properties for (through oneOf alternatives and array items). */
function schemaKeys(node: JsonSchema, at = ''): string[] {
  const out: string[] = [];
  for (const alt of (node.oneOf as JsonSchema[] | undefined) ?? []) out.push(...schemaKeys(alt, at));
  if (node.items) out.push(...schemaKeys(node.items as JsonSchema, `${at}[]`));
  for (const [k, v] of Object.entries((node.properties as Record<string, JsonSchema> | undefined) ?? {})) {
    const p = at ? `${at}.${k}` : k;
    out.push(p, ...schemaKeys(v, p));
  }
  return out;
}

/** The mapping alternative of a section's schema (or of a list's items). */
function mappingOf(n: JsonSchema): JsonSchema | undefined {
  if (n.items) return mappingOf(n.items as JsonSchema);
  return n.properties ? n : ((n.oneOf as JsonSchema[] | undefined) ?? []).find((a) => a.properties);
}

/** The schema node of a key path (`services.real_servers.mac`: through list items). */
function schemaNode(s: JsonSchema, p: string): JsonSchema | undefined {
  let node: JsonSchema | undefined = s;
  for (const key of p.split('.')) node = node && (mappingOf(node)?.properties as Record<string, JsonSchema> | undefined)?.[key];
  return node;
}

test("the schema's keys are the loader's: the same key paths in every section, none more, none fewer", () => {
  const table = tableKeys();
  const schema = schemaKeys(configSchema());
  assert.equal(new Set(schema).size, schema.length, 'no key path twice');
  assert.deepEqual([...schema].sort(), [...table].sort());
  assert.ok(table.length > 70, `${table.length} key paths`);
  // Sections and lists are objects and arrays that refuse unknown keys, as the loader does.
  const walk = (node: JsonSchema, at: string) => {
    if (node.type === 'object') assert.equal(node.additionalProperties, false, `${at || 'the top level'}: unknown keys are refused`);
    for (const alt of (node.oneOf as JsonSchema[] | undefined) ?? []) walk(alt, at);
    if (node.items) walk(node.items as JsonSchema, `${at}[]`);
    for (const [k, v] of Object.entries((node.properties as Record<string, JsonSchema> | undefined) ?? {})) walk(v, at ? `${at}.${k}` : k);
  };
  walk(configSchema(), '');
});

test("every key's description, default, choices, range and required-ness come from the field table", () => {
  const s = configSchema();
  const check = (section: Section, at: string, partial: boolean) => {
    const owner = at ? schemaNode(s, at) : s;
    const mapping = owner && mappingOf(owner);
    assert.ok(mapping, `${at}: a mapping`);
    const required = section.fields.filter((f) => f.required !== undefined && !partial).map((f) => f.key);
    assert.deepEqual((mapping.required as string[] | undefined) ?? [], required, `${at || 'the top level'}: required keys`);
    for (const f of section.fields) {
      const p = at ? `${at}.${f.key}` : f.key;
      const node = schemaNode(s, p);
      assert.ok(node, p);
      assert.ok(String(node.description).startsWith(f.description), `${p}: the table's description`);
      const def = f.default ?? f.implied;
      if (def !== undefined && !(typeof def === 'string' && def.startsWith('/run/'))) assert.deepEqual(node.default, def, `${p}: default`);
      if (f.choices) assert.deepEqual(node.enum, [...f.choices], `${p}: choices`);
      if (f.type === 'int') assert.deepEqual([node.minimum, node.maximum], [f.min, f.max], `${p}: range`);
      if (f.type === 'duration' && f.max !== undefined) assert.equal(((node.oneOf as JsonSchema[])[0] as JsonSchema).maximum, f.max, `${p}: maximum`);
      if (f.type === 'section') check(f.section!, p, f.inherit !== undefined);
      if (f.type === 'list') check(f.section!, p, false);
    }
  };
  check(CONFIG, '', false);
});
