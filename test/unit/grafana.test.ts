/**
 * contrib/grafana/lbd-dashboard.json without Grafana or Prometheus (test/e2e/prometheus.test.ts
 * runs its queries on a real Prometheus): every datasource reference resolves to something the
 * dashboard declares, nothing it declares goes unused (an unused `__inputs` entry is a needless
 * question at import), and every metric its queries name is one lbd registers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Histogram, Summary } from 'prom-client';
import { ArpAgent } from '../../src/control/arp-agent';
import type { Forwarder } from '../../src/dataplane/forwarder';
import { HealthManager, type HealthManagerOptions } from '../../src/health/manager';
import { EventLoopDelay } from '../../src/metrics/event-loop';
import { createRegistry } from '../../src/metrics/metrics';

// Compiled to dist/test/unit/: the sources are three levels up.
const DASHBOARD = path.resolve(__dirname, '../../../contrib/grafana/lbd-dashboard.json');
const text = fs.readFileSync(DASHBOARD, 'utf8');
const d = JSON.parse(text);

/** Every panel, rows' nested panels included. */
function panels(): any[] {
  const out: any[] = [];
  const walk = (ps: any[] | undefined) => ps?.forEach((p) => (out.push(p), walk(p.panels)));
  walk(d.panels);
  return out;
}

/** Every PromQL expression: panel targets and query variables. */
function exprs(): { where: string; expr: string }[] {
  const out: { where: string; expr: string }[] = [];
  for (const p of panels()) for (const t of p.targets ?? []) if (t.expr) out.push({ where: `panel "${p.title}" ${t.refId ?? ''}`, expr: t.expr });
  for (const v of d.templating?.list ?? []) {
    if (v.type === 'query') out.push({ where: `variable ${v.name}`, expr: typeof v.query === 'string' ? v.query : v.query.query });
  }
  return out;
}

/** Every `datasource` a panel, target, variable or annotation names, with where. */
function datasourceRefs(): { where: string; ref: unknown }[] {
  const out: { where: string; ref: unknown }[] = [];
  for (const p of panels()) {
    if (p.datasource !== undefined) out.push({ where: `panel "${p.title}"`, ref: p.datasource });
    for (const t of p.targets ?? []) if (t.datasource !== undefined) out.push({ where: `panel "${p.title}" target ${t.refId}`, ref: t.datasource });
  }
  for (const v of d.templating?.list ?? []) if (v.datasource !== undefined) out.push({ where: `variable ${v.name}`, ref: v.datasource });
  for (const a of d.annotations?.list ?? []) if (a.datasource !== undefined) out.push({ where: `annotation ${a.name}`, ref: a.datasource });
  return out;
}

/** `${name}` or `$name` → name; anything else (a hard-wired uid or name) → undefined. */
function variableOf(s: unknown): string | undefined {
  return typeof s === 'string' ? (/^\$\{(\w+)\}$/.exec(s) ?? /^\$(\w+)$/.exec(s))?.[1] : undefined;
}

test('every __inputs entry is used, and every datasource reference resolves to an input or a datasource variable', () => {
  const inputs: any[] = d.__inputs ?? [];
  // An input nothing references is a question at import whose answer goes nowhere.
  for (const i of inputs) {
    const uses = text.split(`\${${i.name}}`).length - 1;
    assert.ok(uses > 0, `__inputs ${i.name} is referenced somewhere in the dashboard`);
  }
  const declared = new Map<string, string>(); // name → the plugin it selects
  for (const i of inputs) if (i.type === 'datasource') declared.set(i.name, i.pluginId);
  for (const v of d.templating?.list ?? []) if (v.type === 'datasource') declared.set(v.name, v.query);
  const requiredSources = (d.__requires ?? []).filter((r: any) => r.type === 'datasource').map((r: any) => r.id);
  for (const id of requiredSources) assert.ok([...declared.values()].includes(id), `__requires datasource ${id} is one the dashboard lets the user pick`);

  const refs = datasourceRefs();
  assert.ok(refs.length > 20, `${refs.length} datasource references`);
  for (const { where, ref } of refs) {
    const uid = typeof ref === 'object' && ref !== null ? (ref as { uid?: unknown }).uid : ref;
    const name = variableOf(uid);
    assert.ok(name !== undefined, `${where}: the datasource is a variable or an input, not the hard-wired ${JSON.stringify(uid)}`);
    assert.ok(declared.has(name), `${where}: \${${name}} is a declared input or datasource variable (${[...declared.keys()].join(', ')})`);
    const type = typeof ref === 'object' && ref !== null ? (ref as { type?: string }).type : undefined;
    if (type !== undefined) assert.equal(type, declared.get(name), `${where}: the datasource type is the one ${name} selects`);
  }
  // Every panel with queries names its datasource (none falls back to whatever the default is).
  for (const p of panels()) if (p.targets?.length) assert.ok(p.datasource !== undefined, `panel "${p.title}" names its datasource`);
});

test('importing asks no question: the Prometheus source is picked by the datasource variable', () => {
  assert.deepEqual(d.__inputs ?? [], [], 'no __inputs');
  const ds = (d.templating?.list ?? []).filter((v: any) => v.type === 'datasource');
  assert.equal(ds.length, 1, 'one datasource variable');
  assert.equal(ds[0].query, 'prometheus');
  assert.notEqual(ds[0].hide, 2, 'the variable is shown, so the user can pick the source');
  assert.doesNotMatch(text, /DS_PROMETHEUS/);
});

/** The metric names lbd registers (every optional source present), with a histogram's or summary's series suffixes. */
function exported(): Set<string> {
  const fw = {} as Forwarder; // read at scrape time only: never here
  const eventLoop = new EventLoopDelay();
  try {
    const registry = createRegistry({
      forwarder: fw,
      dataplanePath: 'native',
      version: '0.0.0',
      health: new HealthManager({ forwarder: fw } as HealthManagerOptions),
      arp: new ArpAgent(fw, {} as never, {} as never, [], 0, {} as never),
      eventLoop,
      nativeStats: () => null,
      pollErrors: () => new Map(),
      hostRestores: () => new Map(),
      announce: { vips: () => [], announced: () => new Set(), lapses: () => 0 },
      adoption: { flows: 0, templates: 0, rejected: {}, restarts: 0 },
    });
    const names = new Set<string>();
    for (const m of registry.getMetricsAsArray()) {
      const name = (m as unknown as { name: string }).name;
      names.add(name);
      if (m instanceof Histogram || m instanceof Summary) for (const sfx of ['_bucket', '_sum', '_count']) names.add(name + sfx);
    }
    return names;
  } finally {
    eventLoop.stop();
  }
}

test('every metric the queries name is one lbd exports', () => {
  const names = exported();
  assert.ok(names.has('lbd_service_connections_total') && names.has('lbd_health_check_duration_seconds_bucket'), [...names].join(' '));
  const all = exprs();
  assert.ok(all.length >= 20, `${all.length} queries`);
  const used = new Set<string>();
  for (const { where, expr } of all) {
    const metrics = [...expr.matchAll(/\b((?:lbd|process|nodejs)_[a-zA-Z0-9_]+)/g)].map((m) => m[1]);
    assert.ok(metrics.length > 0, `${where}: names a metric (${expr})`);
    for (const m of metrics) {
      used.add(m);
      assert.ok(names.has(m), `${where}: ${m} is a metric lbd exports (${expr})`);
    }
  }
  assert.ok([...used].filter((m) => m.startsWith('lbd_')).length >= 20, `${used.size} metrics used`);
});
