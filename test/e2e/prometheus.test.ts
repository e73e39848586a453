/**
 * Prometheus for real: the Debian prometheus server runs in the lab's balancer namespace,
 * scrapes lbd every second, and its HTTP API must return lbd's series with the values the
 * traffic produced. The Grafana dashboard in contrib/ is checked against the same lbd: every
 * metric it references is exported, and every query it runs is valid PromQL on that server.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { createLab, Lab } from '../../lab/lab';
import { programPath, type ChildProcess } from '../../src/host/programs';
import { curl, lbdConfig, LbdProcess, startLbd } from '../helpers/lbd-process';

const PROM_ADDR = '127.0.0.1:19090'; // inside the balancer namespace: its own loopback
const DASHBOARD = path.resolve(__dirname, '../../../contrib/grafana/lbd-dashboard.json');

let lab: Lab;
let lbd: LbdProcess | undefined;
let prom: ChildProcess | undefined;

before(() => {
  lab = createLab({ shape: 'one-nic' });
});
after(async () => {
  if (prom) lab.kill(prom); // by PID (its process group), waits until it is gone
  await lbd?.stop();
  lab?.teardown();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** GET on Prometheus's HTTP API from inside the balancer namespace. */
function api(pathAndQuery: string): any {
  const out = lab.exec(lab.ns.balancer, ['curl', '-sS', '--max-time', '5', `http://${PROM_ADDR}${pathAndQuery}`]);
  return JSON.parse(out);
}
function query(expr: string): Sample[] {
  const r = api(`/api/v1/query?query=${encodeURIComponent(expr)}`);
  assert.equal(r.status, 'success', `${expr}: ${JSON.stringify(r)}`);
  return r.data.result as Sample[];
}
/** Polls a query until pred holds (bounded: timeoutMs). */
async function until(expr: string, pred: (s: Sample[]) => boolean, timeoutMs = 20000): Promise<Sample[]> {
  const deadline = Date.now() + timeoutMs;
  let last: Sample[] = [];
  while (Date.now() < deadline) {
    try {
      last = query(expr);
      if (pred(last)) return last;
    } catch {
      /* not up yet */
    }
    await sleep(500);
  }
  assert.fail(`${expr}: condition not met within ${timeoutMs} ms; last result ${JSON.stringify(last)}`);
}

/** The metric names a PromQL expression references (lbd_*, process_*, nodejs_*). */
export function metricNames(expr: string): string[] {
  return [...new Set([...expr.matchAll(/\b((?:lbd|process|nodejs)_[a-zA-Z0-9_]+)/g)].map((m) => m[1]))];
}

/** Every PromQL expression in the dashboard: panel targets and query variables. */
function dashboardExprs(d: any): string[] {
  const out: string[] = [];
  const walk = (panels: any[]) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) if (t.expr) out.push(t.expr);
      walk(p.panels);
    }
  };
  walk(d.panels);
  for (const v of d.templating?.list ?? []) if (v.type === 'query') out.push(typeof v.query === 'string' ? v.query : v.query.query);
  return out;
}

test("a real Prometheus scrapes lbd: its API returns lbd's series with the values the traffic made", async () => {
  programPath('prometheus'); // scripts/setup.sh installs it; missing, this names its Debian package
  const cfg = `${lbdConfig(lab, { scheduler: 'rr' })}\nadmin:\n  socket: ${path.join(lab.dir, 'lbd.sock')}\n`;
  lbd = await startLbd(lab, cfg);
  const promDir = path.join(lab.dir, 'prometheus');
  const promConfig = path.join(lab.dir, 'prometheus.yml');
  writeFileSync(
    promConfig,
    [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 900ms',
      '  evaluation_interval: 1s',
      'scrape_configs:',
      '  - job_name: lbd',
      '    static_configs:',
      "      - targets: ['127.0.0.1:9469']",
      '',
    ].join('\n'),
  );
  const check = lab.tryExec(lab.ns.balancer, ['promtool', 'check', 'config', promConfig]);
  assert.equal(check.status, 0, check.stdout + check.stderr);
  prom = lab.spawn(
    lab.ns.balancer,
    ['prometheus', `--config.file=${promConfig}`, `--storage.tsdb.path=${promDir}`, `--web.listen-address=${PROM_ADDR}`, '--log.level=warn'],
    { name: 'prometheus' },
  );

  // Prometheus is up and its lbd target is healthy.
  await until('up{job="lbd"}', (r) => r.length === 1 && r[0].value[1] === '1');

  for (let i = 0; i < 10; i++) assert.match(curl(lab, `http://${lab.addr.vip}/`), /^server(40|111)$/);

  const svc = await until('lbd_service_connections_total', (r) => r.some((s) => s.value[1] === '10'));
  assert.equal(svc.length, 1, JSON.stringify(svc));
  assert.equal(svc[0].metric.service, 'web');
  assert.equal(svc[0].metric.vip, `${lab.addr.vip}:80/tcp`);
  assert.equal(svc[0].metric.job, 'lbd');

  const perReal = query('lbd_real_server_connections_total{service="web"}');
  assert.deepEqual(perReal.map((s) => [s.metric.real, s.value[1]]).sort(), lab.addr.rs.map((a) => [`${a}:80`, '5']).sort());
  // One expression, so both sides come from the same scrape.
  assert.equal(
    query('sum(lbd_real_server_packets_total) - sum(lbd_forwarded_packets_total)')[0].value[1],
    '0',
    'per-server packets add up to the forwarded total',
  );
  assert.ok(Number(query('lbd_service_packets_total{service="web"}')[0].value[1]) >= 10 * 5, 'at least 5 client segments per curl');
  const paths = query('lbd_dataplane_info').map((s) => s.metric.path);
  assert.equal(paths.length, 1);
  assert.equal(lbd.metric('lbd_dataplane_info', { path: paths[0] }), 1, `the path Prometheus has (${paths[0]}) is lbd's`);
  const drops = query('lbd_dropped_packets_total');
  assert.ok(drops.length > 1 && drops.every((s) => s.metric.reason), 'one series per drop reason');
  assert.equal(query('lbd_dropped_packets_total{reason="no_connection"}')[0].value[1], '0');
  assert.equal(Number(query('lbd_conn_table_capacity')[0].value[1]) > 0, true);
  // Rates work over the scraped history (what dashboards show).
  await until('sum(rate(lbd_service_connections_total[1m]))', (r) => r.length === 1 && Number(r[0].value[1]) > 0);
  // Prometheus itself found no problem with the exposition.
  const targets = api('/api/v1/targets');
  const t = targets.data.activeTargets.find((x: any) => x.labels.job === 'lbd');
  assert.equal(t.health, 'up', JSON.stringify(t));
  assert.equal(t.lastError, '');
});

test('the Grafana dashboard: valid JSON, every metric it references is exported by lbd, every query parses on Prometheus', async () => {
  programPath('prometheus'); // scripts/setup.sh installs it; missing, this names its Debian package
  assert.ok(lbd && prom, 'runs after the scrape test (same lbd and Prometheus)');
  const d = JSON.parse(readFileSync(DASHBOARD, 'utf8'));
  assert.equal(typeof d.title, 'string');
  assert.equal(typeof d.uid, 'string');
  const ids = new Set<number>();
  const panels: any[] = [];
  const walk = (ps: any[]) => ps?.forEach((p) => (panels.push(p), walk(p.panels)));
  walk(d.panels);
  for (const p of panels) {
    assert.ok(!ids.has(p.id), `panel id ${p.id} is unique`);
    ids.add(p.id);
    assert.ok(p.gridPos && p.gridPos.w > 0 && p.gridPos.x + p.gridPos.w <= 24, `${p.title}: gridPos within 24 columns`);
    if (p.type !== 'row') assert.ok(p.targets?.length, `${p.title}: has queries`);
  }

  // What lbd exports: the # TYPE lines of its /metrics (histograms add _bucket/_sum/_count).
  const exposition = lbd!.metrics();
  const exported = new Set<string>();
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    exported.add(m[1]);
    if (m[2] === 'histogram' || m[2] === 'summary') for (const sfx of ['_bucket', '_sum', '_count']) exported.add(m[1] + sfx);
  }
  const exprs = dashboardExprs(d);
  assert.ok(exprs.length >= 20, `${exprs.length} queries`);
  const referenced = new Set(exprs.flatMap(metricNames));
  const missing = [...referenced].filter((n) => !exported.has(n));
  assert.deepEqual(missing, [], `metrics the dashboard uses that lbd does not export`);
  // The panels cover what operators look at.
  for (const n of [
    'lbd_real_server_connections_total',
    'lbd_real_server_active_connections',
    'lbd_real_server_inactive_connections',
    'lbd_real_server_packets_total',
    'lbd_real_server_bytes_total',
    'lbd_dropped_packets_total',
    'lbd_conn_table_entries',
    'lbd_conn_table_capacity',
    'lbd_real_server_up',
  ]) {
    assert.ok(referenced.has(n), `the dashboard shows ${n}`);
  }

  // Every query is valid PromQL once Grafana's variables are substituted.
  for (const expr of exprs) {
    if (expr.startsWith('label_values(')) {
      const m = /^label_values\((.*), *(\w+)\)$/.exec(expr);
      assert.ok(m, expr);
      const sel = m![1].replace(/\$job/g, '.+');
      const r = api(`/api/v1/series?match[]=${encodeURIComponent(sel)}`);
      assert.equal(r.status, 'success', `${expr}: ${JSON.stringify(r)}`);
      assert.ok(
        r.data.some((s: any) => s[m![2]]),
        `${expr}: has values`,
      );
      continue;
    }
    const concrete = expr
      .replace(/\$__rate_interval/g, '5s')
      .replace(/\$job/g, '.+')
      .replace(/\$service/g, '.+');
    query(concrete);
  }
  // And the headline panels have data with the lab's traffic.
  const cps = query('sum by (service, real) (rate(lbd_real_server_connections_total{job=~".+",service=~".+"}[1m]))');
  assert.equal(cps.length, 2);
});
