import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseConfig } from '../../src/config/load';
import { applyChange } from '../../src/control/admin/apply';
import { adminRequest, NoDaemonError } from '../../src/control/admin/client';
import { Control } from '../../src/control/admin/control';
import { ChangeResult, ConnEntry, ListResult, SaveResult } from '../../src/control/admin/protocol';
import { AdminServer } from '../../src/control/admin/server';
import { macToString } from '../../src/dataplane/packet';
import { ACK, MAC, SYN, frame } from '../helpers/frames';
import { BASE_CONFIG, testDaemon, TestDaemon } from '../helpers/daemon';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lbd-admin-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;

/** A test daemon with its config in a file and the admin socket listening. */
async function withAdmin(yaml: string, fn: (t: TestDaemon, sock: string, file: string, control: Control) => Promise<void>): Promise<void> {
  const file = path.join(tmp, `lb-${++n}.yaml`);
  fs.writeFileSync(file, yaml);
  const t = await testDaemon(yaml);
  t.daemon.running = { ...t.daemon.running, file };
  const sock = path.join(tmp, `run-${n}`, 'lbd.sock');
  const control = new Control(t.daemon);
  const admin = new AdminServer(control, sock);
  await admin.listen();
  try {
    await fn(t, sock, file, control);
  } finally {
    await admin.close();
    await t.daemon.stop();
  }
}

const cfg = (yaml: string) => parseConfig(yaml, 'lb.yaml');

test('the socket is 0660 in a 0750 directory it created, and is removed on close', async () => {
  let sockPath = '';
  await withAdmin(BASE_CONFIG(), async (_t, sock) => {
    sockPath = sock;
    assert.equal(fs.statSync(sock).mode & 0o777, 0o660);
    assert.equal(fs.statSync(path.dirname(sock)).mode & 0o777, 0o750);
    assert.ok(fs.statSync(sock).isSocket());
    const r = await adminRequest<{ version: string; pid: number }>(sock, 'ping');
    assert.equal(r.pid, process.pid);
  });
  assert.equal(fs.existsSync(sockPath), false, 'removed on close');
});

test('a stale socket from a dead daemon is replaced; a live one is refused', async () => {
  const sock = path.join(tmp, 'stale.sock');
  // A socket file nobody listens on (its server closed without unlinking).
  const dead = net.createServer();
  await new Promise<void>((r) => dead.listen(sock, () => r()));
  const copy = path.join(tmp, 'stale-copy');
  fs.linkSync(sock, copy);
  await new Promise<void>((r) => dead.close(() => r()));
  fs.renameSync(copy, sock);
  assert.ok(fs.statSync(sock).isSocket());
  await withAdmin(BASE_CONFIG().replace('veth-test', 'veth-test'), async (t) => {
    const control = new Control(t.daemon);
    const a = new AdminServer(control, sock);
    await a.listen(); // the stale file is replaced
    const b = new AdminServer(new Control(t.daemon), sock);
    await assert.rejects(b.listen(), /another lbd is already listening on .*stale\.sock/);
    await a.close();
  });
  // A regular file is not taken over.
  const file = path.join(tmp, 'not-a-socket');
  fs.writeFileSync(file, 'x');
  await withAdmin(BASE_CONFIG(), async (t) => {
    await assert.rejects(new AdminServer(new Control(t.daemon), file).listen(), /exists and is not a socket/);
  });
});

test('no daemon: the clear message', async () => {
  const sock = path.join(tmp, 'nobody.sock');
  await assert.rejects(adminRequest(sock, 'list'), (e: unknown) => {
    assert.ok(e instanceof NoDaemonError);
    assert.equal((e as Error).message, `no daemon is listening on ${sock} (is lbd running? start it with: lbd --config FILE)`);
    return true;
  });
});

test('line-delimited JSON: several requests on one connection, errors as {ok:false}', async () => {
  await withAdmin(BASE_CONFIG(), async (_t, sock) => {
    const answers = await new Promise<any[]>((resolve, reject) => {
      const s = net.createConnection(sock);
      let buf = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => {
        buf += d;
        const lines = buf.split('\n').filter(Boolean);
        if (lines.length === 3) {
          s.destroy();
          resolve(lines.map((l) => JSON.parse(l)));
        }
      });
      s.on('error', reject);
      s.write('{"cmd":"ping"}\nnot json\n{"cmd":"frobnicate"}\n');
    });
    assert.equal(answers[0].ok, true);
    assert.deepEqual(answers[1], { ok: false, error: { code: 'E_USAGE', message: 'a request is one JSON object per line' } });
    assert.equal(answers[2].ok, false);
    assert.match(answers[2].error.message, /unknown admin request "frobnicate"/);
  });
});

test('list and connections count the flows the data plane saw', async () => {
  await withAdmin(BASE_CONFIG(), async (t, sock) => {
    // rr: 50001 → .40, 50002 → .111, 50003 → .40; the first two become ESTABLISHED.
    for (let i = 1; i <= 3; i++) t.send(frame({ flags: SYN, sport: 50000 + i }));
    t.send(frame({ flags: ACK, sport: 50001 }));
    t.send(frame({ flags: ACK, sport: 50002 }));
    const r = await adminRequest<ListResult>(sock, 'list');
    assert.equal(r.connections, 3);
    const [web] = r.services;
    assert.equal(web.name, 'web');
    assert.equal(web.key, '10.0.10.100:80/tcp');
    assert.equal(web.scheduler, 'rr');
    assert.deepEqual(
      web.reals.map((x) => [x.address, x.weight, x.active, x.inactive, x.stats.conns, x.health, x.mac]),
      [
        ['10.0.10.40', 1, 1, 1, 2, 'unchecked', MAC.rs40],
        ['10.0.10.111', 1, 1, 0, 1, 'unchecked', MAC.rs111],
      ],
    );
    assert.equal(web.stats.conns, 3);
    assert.equal(web.stats.inpkts, 5);
    const c = await adminRequest<ConnEntry[]>(sock, 'connections');
    assert.equal(c.length, 3);
    const e = c.find((x) => x.client === '10.0.10.50:50001')!;
    assert.equal(e.state, 'ESTABLISHED');
    assert.equal(e.virtual, '10.0.10.100:80');
    assert.equal(e.destination, '10.0.10.40:80');
    assert.equal(e.protocol, 'tcp');
    assert.ok(e.expires > 800 && e.expires <= 900, String(e.expires));
  });
});

test('rates: per second over the last sample interval', async () => {
  await withAdmin(BASE_CONFIG(), async (t, sock, _file, control) => {
    control.sampleRates(1000);
    for (let i = 1; i <= 4; i++) t.send(frame({ flags: SYN, sport: 51000 + i }));
    control.sampleRates(3000);
    const r = await adminRequest<ListResult>(sock, 'list');
    assert.deepEqual(r.services[0].rate, { cps: 2, inpps: 2, outpps: 0, inbps: r.services[0].rate.inbps, outbps: 0 });
    assert.ok(r.services[0].rate.inbps > 0);
    assert.equal(r.services[0].reals[0].rate.cps, 1);
  });
});

test('runtime changes: add, edit, drain, remove; errors name the services and servers', async () => {
  await withAdmin(BASE_CONFIG(), async (t, sock) => {
    const change = (args: object) => adminRequest<ChangeResult>(sock, 'change', args);
    let r = await change({ op: 'server-add', service: 'web', address: '10.0.10.112', weight: 3, mac: '02:00:00:00:01:12' });
    assert.deepEqual(r.changes, ['add real server 10.0.10.112:80 to 10.0.10.100:80/tcp (weight 3)']);
    assert.equal(r.runtime_changes.length, 1);
    r = await change({ op: 'server-edit', service: '10.0.10.100:80', address: '10.0.10.112', weight: 5 });
    assert.deepEqual(r.changes, ['update real server 10.0.10.112 of 10.0.10.100:80/tcp: weight']);
    r = await change({ op: 'server-drain', service: '10.0.10.100:80/tcp', address: '10.0.10.40' });
    assert.deepEqual(r.changes, ['update real server 10.0.10.40 of 10.0.10.100:80/tcp: weight']);
    assert.equal(t.daemon.running.services[0].real_servers[0].weight, 0);
    r = await change({ op: 'server-remove', service: 'web', address: '10.0.10.111:80' });
    assert.deepEqual(r.changes, ['remove real server 10.0.10.111 from 10.0.10.100:80/tcp (drain)']);
    assert.equal(r.runtime_changes.length, 4);
    // New flows go to .112 only (.40 drained, .111 removed).
    for (let i = 0; i < 3; i++) assert.equal(macToString(t.send(frame({ flags: SYN, sport: 52000 + i }))[0]), '02:00:00:00:01:12');

    await assert.rejects(
      change({ op: 'server-add', service: 'wbe', address: '10.0.10.113' }),
      /unknown service "wbe"; did you mean "web"\? \(services: web \(10\.0\.10\.100:80\/tcp\)\)/,
    );
    await assert.rejects(
      change({ op: 'server-edit', service: 'web', address: '10.0.10.41', weight: 1 }),
      /10\.0\.10\.41 is not a real server of web .*did you mean 10\.0\.10\.40\?/,
    );
    await assert.rejects(change({ op: 'server-add', service: 'web', address: '10.0.10.40' }), /already a real server of web/);
    await assert.rejects(change({ op: 'server-add', service: 'web', address: '10.0.10.113', weight: 70000 }), /invalid weight 70000/);
    await assert.rejects(change({ op: 'server-add', service: 'web', address: '10.0.10.100' }), /must not be the VIP/);
    await assert.rejects(change({ op: 'server-add', service: 'web', address: '10.0.10.113:8080' }), /Direct Routing cannot change the destination port/);
    const save = await adminRequest<SaveResult>(sock, 'save');
    assert.deepEqual(cfg(save.yaml).services[0].real_servers, [
      { address: '10.0.10.40', port: 80, weight: 0, mac: MAC.rs40 },
      { address: '10.0.10.112', port: 80, weight: 5, mac: '02:00:00:00:01:12' },
    ]);
    assert.equal(
      save.ipvsadm,
      ['-A -t 10.0.10.100:80 -s rr', '-a -t 10.0.10.100:80 -r 10.0.10.40:80 -g -w 0', '-a -t 10.0.10.100:80 -r 10.0.10.112:80 -g -w 5', ''].join('\n'),
    );
  });
});

test('thresholds at runtime: server add/edit -x/-y, list shows them and the overload, save keeps them', async () => {
  await withAdmin(BASE_CONFIG(), async (t, sock) => {
    const change = (args: object) => adminRequest<ChangeResult>(sock, 'change', args);
    const real40 = async () => (await adminRequest<ListResult>(sock, 'list')).services[0].reals.find((x) => x.address === '10.0.10.40')!;
    let r = await change({ op: 'server-edit', service: 'web', address: '10.0.10.40', u_threshold: 2 });
    assert.deepEqual(r.changes, ['update real server 10.0.10.40 of 10.0.10.100:80/tcp: u_threshold']);
    for (let i = 0; i < 4; i++) t.send(frame({ flags: SYN, sport: 53000 + i })); // rr: two each
    let rs = await real40();
    assert.deepEqual([rs.u_threshold, rs.l_threshold, rs.inactive, rs.overloaded], [2, 0, 2, true]);
    assert.equal(macToString(t.send(frame({ flags: SYN, sport: 53010 }))[0]), MAC.rs111, 'an overloaded server gets no new flow');
    // Lowering the upper threshold keeps the overload (it takes effect at the next connection).
    await change({ op: 'server-edit', service: 'web', address: '10.0.10.40', u_threshold: 1 });
    assert.equal((await real40()).overloaded, true);
    // Removing it lifts the overload at once; -x 0 also removes a lower threshold.
    await change({ op: 'server-edit', service: 'web', address: '10.0.10.40', u_threshold: 100, l_threshold: 50 });
    r = await change({ op: 'server-edit', service: 'web', address: '10.0.10.40', u_threshold: 0 });
    assert.deepEqual(r.changes, ['update real server 10.0.10.40 of 10.0.10.100:80/tcp: l_threshold, u_threshold']);
    rs = await real40();
    assert.deepEqual([rs.u_threshold, rs.l_threshold, rs.overloaded], [0, 0, false]);
    r = await change({ op: 'server-add', service: 'web', address: '10.0.10.112', mac: '02:00:00:00:01:12', u_threshold: '100', l_threshold: 80 });
    assert.deepEqual(r.changes, ['add real server 10.0.10.112:80 to 10.0.10.100:80/tcp (weight 1)']);
    const save = await adminRequest<SaveResult>(sock, 'save');
    assert.deepEqual(cfg(save.yaml).services[0].real_servers[2], {
      address: '10.0.10.112',
      port: 80,
      weight: 1,
      mac: '02:00:00:00:01:12',
      u_threshold: 100,
      l_threshold: 80,
    });
    assert.match(save.ipvsadm, /^-a -t 10\.0\.10\.100:80 -r 10\.0\.10\.112:80 -g -w 1 -x 100 -y 80$/m);
    await assert.rejects(
      change({ op: 'server-edit', service: 'web', address: '10.0.10.112', u_threshold: 50 }),
      /l_threshold 80 is above the new u_threshold 50: give --l-threshold too/,
    );
    await assert.rejects(
      change({ op: 'server-edit', service: 'web', address: '10.0.10.112', u_threshold: 50, l_threshold: 60 }),
      /l_threshold \(60\) must not exceed u_threshold \(50\)/,
    );
    await assert.rejects(change({ op: 'server-edit', service: 'web', address: '10.0.10.112', l_threshold: 'x' }), /invalid l_threshold "x"/);
    assert.equal((await adminRequest<SaveResult>(sock, 'save')).yaml, save.yaml, 'a refused change changes nothing');
  });
});

test('service add/edit/remove; the last real server and the identity are refused', async () => {
  await withAdmin(BASE_CONFIG(), async (t, sock) => {
    const change = (args: object) => adminRequest<ChangeResult>(sock, 'change', args);
    let r = await change({
      op: 'service-add',
      name: 'dns',
      vip: '10.0.10.101',
      port: 53,
      protocol: 'udp',
      scheduler: 'sh',
      servers: ['10.0.10.40', '10.0.10.111=2'],
    });
    assert.deepEqual(r.changes, ['add service dns 10.0.10.101:53/udp']);
    assert.deepEqual(
      t.daemon.running.services[1].real_servers.map((x) => x.weight),
      [1, 2],
    );
    assert.ok(t.daemon.findService('10.0.10.101:53/udp'));
    r = await change({ op: 'service-edit', service: 'dns', scheduler: 'wrr', persistence: '5m' });
    assert.deepEqual(r.changes, ['update service dns 10.0.10.101:53/udp: scheduler, persistence']);
    assert.equal(t.daemon.findService('10.0.10.101:53/udp')!.scheduler.name, 'wrr');
    await assert.rejects(change({ op: 'service-edit', service: 'dns', port: 54 }), /identify a service and cannot be edited/);
    await assert.rejects(change({ op: 'service-edit', service: 'dns', scheduler: 'wl' }), /unknown scheduler "wl"; did you mean "wlc"\?/);
    await assert.rejects(change({ op: 'service-add', name: 'dup', vip: '10.0.10.100', port: 80, servers: ['10.0.10.40'] }), /already the service web/);
    await assert.rejects(change({ op: 'service-add', name: 'x', vip: '10.0.10.102', port: 80, servers: [] }), /at least one real server/);
    r = await change({ op: 'service-remove', service: '10.0.10.101:53/udp' });
    assert.deepEqual(r.changes, ['remove service dns 10.0.10.101:53/udp (drain)']);
    await assert.rejects(change({ op: 'service-remove', service: 'web' }), /the only service/);
    await change({ op: 'server-remove', service: 'web', address: '10.0.10.40' });
    await assert.rejects(
      change({ op: 'server-remove', service: 'web', address: '10.0.10.111' }),
      /only real server of web .*lbd server drain web 10\.0\.10\.111/,
    );
  });
});

test('reload: applies the file; a bad file changes nothing and answers with lbd check errors; runtime changes are reported as undone', async () => {
  await withAdmin(BASE_CONFIG(), async (t, sock, file) => {
    await adminRequest(sock, 'change', { op: 'server-edit', service: 'web', address: '10.0.10.111', weight: 7 });
    fs.writeFileSync(file, BASE_CONFIG({ weights: [2, 1] }));
    const r = await adminRequest<ChangeResult>(sock, 'reload');
    assert.deepEqual(r.changes, [
      'update real server 10.0.10.40 of 10.0.10.100:80/tcp: weight',
      'update real server 10.0.10.111 of 10.0.10.100:80/tcp: weight',
    ]);
    assert.deepEqual(r.discarded, ['update real server 10.0.10.111 of 10.0.10.100:80/tcp: weight']);
    assert.deepEqual(
      t.daemon.running.services[0].real_servers.map((x) => x.weight),
      [2, 1],
    );
    fs.writeFileSync(file, BASE_CONFIG({ scheduler: 'wl' }));
    await assert.rejects(adminRequest(sock, 'reload'), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'E_CONFIG');
      assert.match(
        e.message,
        new RegExp(`^${file.replace(/[.]/g, '\\.')}:\\d+:\\d+ services\\[0\\]\\.scheduler: unknown scheduler "wl"; did you mean "wlc"\\?`),
      );
      assert.match(e.message, /: 1 error; not reloaded, the running config stays$/);
      return true;
    });
    assert.equal(t.daemon.running.services[0].scheduler, 'rr');
    fs.writeFileSync(file, BASE_CONFIG().replace('capture: veth-test', 'capture: veth-x'));
    await assert.rejects(adminRequest(sock, 'reload'), /restart lbd for: interfaces\.capture/);
  });
});

test("on_remove: drain keeps the removed server's flows, drop cuts them", async () => {
  const yaml = BASE_CONFIG();
  for (const policy of ['drain', 'drop'] as const) {
    await withAdmin(yaml + `on_remove: ${policy}\n`, async (t, sock) => {
      t.send(frame({ flags: SYN, sport: 53001 })); // → .40
      t.send(frame({ flags: ACK, sport: 53001 }));
      const r = await adminRequest<ChangeResult>(sock, 'change', { op: 'server-remove', service: 'web', address: '10.0.10.40' });
      const out = t.send(frame({ flags: ACK, sport: 53001 }));
      if (policy === 'drain') {
        assert.match(r.changes[0], /\(drain\)$/);
        assert.equal(macToString(out[0]), MAC.rs40, 'the flow goes on');
        assert.equal(t.daemon.forwarder.conns.size, 1);
      } else {
        assert.match(r.changes[0], /\(drop: its flows are cut\)$/);
        assert.equal(out.length, 0, 'the flow is cut');
        assert.equal(t.daemon.forwarder.conns.size, 0);
        assert.equal(t.daemon.forwarder.dests.views[0].references, 0);
      }
    });
  }
  // Per service, overriding the global default.
  const c = cfg(BASE_CONFIG().replace('    scheduler: rr', '    scheduler: rr\n    on_remove: drop') + 'on_remove: drain\n');
  assert.equal(c.services[0].on_remove, 'drop');
  assert.equal(c.on_remove, 'drain');
});

test('applyChange is pure and validates like a file', () => {
  const running = cfg(BASE_CONFIG());
  const before = JSON.stringify(running);
  const next = applyChange(running, { op: 'server-add', service: 'web', address: '10.0.10.112' });
  assert.equal(JSON.stringify(running), before);
  assert.equal(next.services[0].real_servers.length, 3);
  assert.throws(
    () => applyChange(running, { op: 'service-add', name: 'bad name', vip: '10.0.10.102', port: 80, servers: ['10.0.10.40'] }),
    /invalid config: services\[1\]\.name: invalid service name/,
  );
});

test('scheduler flags at runtime: service add/edit --sched-flags, list shows them, save --ipvsadm writes -b', async () => {
  await withAdmin(BASE_CONFIG().replace('    scheduler: rr', '    scheduler: mh\n    mh_port: true\n    on_miss: hash'), async (t, sock) => {
    const change = (args: object) => adminRequest<ChangeResult>(sock, 'change', args);
    const view = async (name: string) => (await adminRequest<ListResult>(sock, 'list')).services.find((s) => s.name === name)!;
    // From the file: the running scheduler's flags, mh's table size and on_miss.
    let web = await view('web');
    assert.deepEqual([web.scheduler, web.scheduler_flags, web.mh_table_size, web.on_miss], ['mh', ['mh-port'], 65537, 'hash']);
    let r = await change({
      op: 'service-add',
      name: 'dns',
      vip: '10.0.10.101',
      port: 53,
      protocol: 'udp',
      scheduler: 'sh',
      sched_flags: 'sh-fallback,flag-2',
      servers: ['10.0.10.40'],
    });
    assert.deepEqual(r.changes, ['add service dns 10.0.10.101:53/udp']);
    assert.deepEqual(t.daemon.running.services[1].sh_fallback, true);
    assert.deepEqual(t.daemon.running.services[1].sh_port, true);
    const dns = await view('dns');
    assert.deepEqual([dns.scheduler_flags, dns.mh_table_size, dns.on_miss], [['sh-fallback', 'sh-port'], undefined, 'drop']);
    // Edit: the flags given replace the service's; "none" clears them.
    r = await change({ op: 'service-edit', service: 'web', sched_flags: 'mh-fallback' });
    assert.equal(r.changes.length, 1);
    web = await view('web');
    assert.deepEqual(web.scheduler_flags, ['mh-fallback']);
    let saved = await adminRequest<SaveResult>(sock, 'save');
    assert.match(saved.ipvsadm, /^-A -t 10\.0\.10\.100:80 -s mh -b mh-fallback$/m);
    assert.match(saved.ipvsadm, /^-A -u 10\.0\.10\.101:53 -s sh -b sh-fallback,sh-port$/m);
    assert.deepEqual(saved.ipvsadm_omitted, [
      "service web (10.0.10.100:80/tcp): on_miss: hash is not in the rules: IPVS's equivalent is the sysctl net.ipv4.vs.sloppy_tcp=1 (for every service)",
    ]);
    await change({ op: 'service-edit', service: 'dns', sched_flags: 'none' });
    assert.deepEqual((await view('dns')).scheduler_flags, []);
    // A new scheduler drops the old one's flags: sh → mh leaves no sh_* key behind.
    await change({ op: 'service-edit', service: 'dns', sched_flags: 'sh-port' });
    await change({ op: 'service-edit', service: 'dns', scheduler: 'mh', sched_flags: 'mh-port' });
    assert.equal(t.daemon.running.services[1].sh_port, undefined);
    assert.deepEqual((await view('dns')).scheduler_flags, ['mh-port']);
    await change({ op: 'service-edit', service: 'dns', scheduler: 'wrr' });
    assert.deepEqual((await view('dns')).scheduler_flags, []);
    saved = await adminRequest<SaveResult>(sock, 'save');
    assert.match(saved.ipvsadm, /^-A -u 10\.0\.10\.101:53 -s wrr$/m);
    // Refused with E_USAGE, naming what the scheduler takes.
    await assert.rejects(
      change({ op: 'service-edit', service: 'web', sched_flags: 'sh-port' }),
      (e: Error & { code?: string }) =>
        e.code === 'E_USAGE' &&
        e.message ===
          'invalid --sched-flags "sh-port": scheduler flag "sh-port" is for scheduler sh, not mh (mh takes mh-fallback, mh-port (or their numbers flag-1, flag-2))',
    );
    await assert.rejects(
      change({ op: 'service-edit', service: 'dns', sched_flags: 'flag-1' }),
      /"flag-1" means nothing for scheduler wrr \(wrr takes none: only sh and mh take scheduler flags\)/,
    );
    await assert.rejects(change({ op: 'service-edit', service: 'web', sched_flags: 'flag-3' }), /"flag-3" means nothing for scheduler mh/);
    await assert.rejects(
      change({ op: 'service-edit', service: 'web', sched_flags: 'mh-fallbck' }),
      /unknown scheduler flag "mh-fallbck"; did you mean "mh-fallback"\?/,
    );
    await assert.rejects(
      change({ op: 'service-add', name: 'x', vip: '10.0.10.102', port: 80, sched_flags: 'mh-port', servers: ['10.0.10.40'] }),
      /"mh-port" is for scheduler mh, not wlc/,
    );
    // Nothing changed by the refused requests.
    assert.deepEqual((await view('web')).scheduler_flags, ['mh-fallback']);
    assert.equal(t.daemon.running.services.length, 2);
    // on_miss: hash holds web to a consistent scheduler; --on-miss drop lets it leave mh.
    await assert.rejects(change({ op: 'service-edit', service: 'web', scheduler: 'wlc' }), /on_miss: hash needs a consistent scheduler \(mh or sh\)/);
    await change({ op: 'service-edit', service: 'web', scheduler: 'wlc', on_miss: 'drop' });
    web = await view('web');
    assert.deepEqual([web.scheduler, web.on_miss], ['wlc', 'drop']);
    assert.equal(t.daemon.forwarder.services.all[0].onMissHash, false, 'the data plane drops misses again');
    await change({ op: 'service-edit', service: 'dns', scheduler: 'sh', on_miss: 'hash' });
    assert.equal((await view('dns')).on_miss, 'hash');
    await assert.rejects(change({ op: 'service-edit', service: 'dns', on_miss: 'maybe' }), /invalid on_miss "maybe" \(drop, hash\)/);
  });
});

test('reload hooks (the service manager: RELOADING=1, READY=1): around every reload of the file, refused ones too; not around runtime changes', async () => {
  const t = await testDaemon(BASE_CONFIG());
  const calls: string[] = [];
  let next = BASE_CONFIG({ weights: [2, 1] });
  const control = new Control(t.daemon, {
    load: (file) => parseConfig(next, file),
    reloadHooks: { begin: () => calls.push('begin'), end: () => calls.push('end') },
  });
  try {
    await control.reload();
    assert.deepEqual(calls, ['begin', 'end']);
    next = BASE_CONFIG({ scheduler: 'wl' });
    await assert.rejects(control.reload(), /unknown scheduler "wl"/);
    assert.deepEqual(calls, ['begin', 'end', 'begin', 'end'], 'a refused reload ends too: lbd runs on, ready');
    await control.change({ op: 'server-edit', service: 'web', address: '10.0.10.111', weight: 3 });
    assert.equal(calls.length, 4, 'a runtime change is no reload');
  } finally {
    await t.daemon.stop();
  }
});
