/**
 * `npm run demo`: the classic LVS-DR setup, reproduced and balanced by lbd.
 * Builds the lab (client, balancer, two Apache real servers), starts lbd in the balancer with
 * examples/lb.yaml, curls the VIP ten times from the client, shows a few metrics, and tears
 * everything down, also on Ctrl-C.
 *
 * `npm run demo -- --scale-out`: two balancers behind a router that learns the VIP from both by
 * BGP (BIRD 2 with BFD, contrib/bird/*.conf) and spreads flows over them by ECMP; downloads start,
 * one balancer's lbd is SIGKILLed, the router withdraws it and the downloads continue through the
 * other (lab/bgp.ts, test/e2e/bgp.test.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from '../src/host/programs';
import { bigFileSha256, createLab, Lab } from './lab';

const ROOT = path.resolve(__dirname, '../..');
const say = (s: string) => process.stdout.write(`${s}\n`);

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    say('demo: run as root (it builds network namespaces): sudo npm run demo');
    return 1;
  }
  if (process.argv.includes('--scale-out')) return scaleOut();
  say('demo: building the lab: client 10.0.10.50, balancer 10.0.10.30, real servers 10.0.10.40 and 10.0.10.111 (Apache)…');
  const lab: Lab = createLab({ shape: 'one-nic' });
  let lbd: ChildProcess | null = null;
  const cleanup = () => {
    if (lbd && lbd.exitCode === null) lab.kill(lbd.pid!, { graceMs: 2000 });
    lab.teardown();
  };
  tearDownOnInterrupt(cleanup);
  try {
    say(`demo: lab ${lab.prefix} is up; VIP ${lab.addr.vip} lives on the real servers' lo (arp_ignore=1, arp_announce=2)`);
    say('demo: starting lbd --config examples/lb.yaml in the balancer namespace');
    // Its state file in the lab's directory, not the host's /run/lbd (where an lbd of the host
    // may keep its own): the teardown removes it with the lab.
    const config = path.join(lab.dir, 'lb.yaml');
    fs.writeFileSync(
      config,
      `${fs.readFileSync(path.join(ROOT, 'examples/lb.yaml'), 'utf8').replace(/\n*$/, '\n')}state_file: ${path.join(lab.dir, 'lbd.state')}\n`,
    );
    lbd = lab.spawn(lab.ns.balancer, ['node', path.join(ROOT, 'bin/lbd'), '--config', config], {
      stdio: ['ignore', 'pipe', 'inherit'],
      ref: true,
    });
    let started = false;
    lbd.stdout!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) {
        if (!line.trim()) continue;
        try {
          const j = JSON.parse(line);
          if (j.msg === 'lbd started') started = true;
          say(`  lbd: ${j.msg}${j.real ? ` ${j.real}` : ''}${j.mac ? ` ${j.mac}` : ''}`);
        } catch {
          say(`  lbd: ${line}`);
        }
      }
    });
    for (let i = 0; i < 150 && !started; i++) {
      if (lbd.exitCode !== null) throw new Error(`lbd exited with ${lbd.exitCode}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!started) throw new Error('lbd did not start within 15 s');
    say(`\ndemo: ten curls from the client to http://${lab.addr.vip}/ (scheduler rr):`);
    for (let i = 1; i <= 10; i++) {
      const r = lab.tryExec(lab.ns.client, ['curl', '-sS', '--max-time', '3', `http://${lab.addr.vip}/`]);
      say(`  ${String(i).padStart(2)}: ${r.status === 0 ? r.stdout.trim() : `FAILED ${r.stderr.trim()}`}`);
    }
    const metrics = lab.exec(lab.ns.balancer, ['curl', '-s', 'http://127.0.0.1:9469/metrics']);
    say('\ndemo: a few lines of /metrics (http://127.0.0.1:9469/metrics in the balancer):');
    for (const line of metrics.split('\n')) {
      if (/^lbd_(real_server_connections_total|service_connections_total|forwarded_packets_total|dataplane_info|conn_table_entries)/.test(line))
        say(`  ${line}`);
    }
    say('\ndemo: the real servers answered the client directly: lbd only rewrote destination MACs.');
    return 0;
  } finally {
    say('demo: stopping lbd and tearing the lab down');
    cleanup();
  }
}

// ───────────────────────────── --scale-out ─────────────────────────────

const HELD_DOWNLOAD_JS = path.join(__dirname, 'held-download.js');
const SCALE_FILE_MB = 4;
const SCALE_DOWNLOADS = 16;

/** Ctrl-C tears the lab down before the demo exits (130, as a shell reports SIGINT). */
function tearDownOnInterrupt(cleanup: () => void): void {
  process.once('SIGINT', () => {
    say('\ndemo: interrupted, tearing down');
    cleanup();
    process.exit(130);
  });
}

/** Starts lbd in a namespace with `config`; resolves once it logged "lbd started" (15 s bound). */
async function startLbdIn(lab: Lab, ns: string, name: string, config: string): Promise<ChildProcess> {
  const lbd = lab.spawn(ns, ['node', path.join(ROOT, 'bin/lbd'), '--config', config], { stdio: ['ignore', 'pipe', 'inherit'], ref: true });
  let started = false;
  let buf = '';
  lbd.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        const j = JSON.parse(line);
        if (j.msg === 'lbd started') started = true;
        if (j.level >= 40 || j.msg === 'lbd started' || /announc/i.test(String(j.msg))) say(`  lbd@${name}: ${j.msg}`);
      } catch {
        say(`  lbd@${name}: ${line}`);
      }
    }
  });
  for (let i = 0; i < 150 && !started; i++) {
    if (lbd.exitCode !== null) throw new Error(`lbd in ${name} exited with ${lbd.exitCode}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!started) throw new Error(`lbd in ${name} did not start within 15 s`);
  return lbd;
}

async function waitFor(what: string, pred: () => boolean, boundMs: number): Promise<number> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > boundMs) throw new Error(`${what}: not within ${boundMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return Date.now() - t0;
}

async function scaleOut(): Promise<number> {
  say('demo: building the BGP lab: client 192.168.13.50 ─ router 192.168.13.1|10.0.10.1 ─ balancers 10.0.10.30, 10.0.10.31 and');
  say('      real servers 10.0.10.40, 10.0.10.111 (Apache); BIRD 2 in the router (AS 65000) and in each balancer (AS 65001), BGP + BFD 300 ms × 3');
  const lab: Lab = createLab({ shape: 'routed', extraBalancers: [31], bgp: true, bigFileMB: SCALE_FILE_MB, udpEcho: false });
  const bgp = lab.bgp!;
  const lbds: (ChildProcess | null)[] = [];
  const downloads: ChildProcess[] = [];
  const cleanup = () => {
    for (const p of [...downloads, ...lbds]) if (p && p.exitCode === null && p.signalCode === null) lab.kill(p.pid!, { graceMs: 4000 });
    lab.teardown();
  };
  tearDownOnInterrupt(cleanup);
  try {
    say(`demo: lab ${lab.prefix} is up; BIRD configs rendered from contrib/bird/ into ${lab.dir}/bird-*.conf; sessions: ${JSON.stringify(bgp.sessions())}`);
    say('demo: the router forwards with net.ipv4.fib_multipath_hash_policy=1 (flows hashed by address AND port)');
    lab.exec(lab.ns.client, ['sysctl', '-qw', 'net.ipv4.tcp_rmem=4096 131072 262144']);
    const ns = [lab.ns.balancer, lab.ns.extraBalancers![0]];
    const names = ['lb30', 'lb31'];
    say('demo: starting lbd on both balancers, the same config: scheduler mh, on_miss: hash, announce (VIP/32 in table 4242 on lbdvip0)');
    for (let i = 0; i < 2; i++) {
      const config = path.join(lab.dir, `${names[i]}.yaml`);
      fs.writeFileSync(
        config,
        [
          'interfaces:',
          '  capture: eth0',
          'announce:',
          '  interface: lbdvip0',
          '  table: 4242',
          '  withdraw_delay: 2s',
          '  hang_timeout: 1s',
          'services:',
          '  - name: web',
          `    vip: ${lab.addr.vip}`,
          '    port: 80',
          '    protocol: tcp',
          '    scheduler: mh',
          '    mh_port: true',
          '    on_miss: hash',
          '    real_servers:',
          ...lab.addr.rs.map((a) => `      - ${a}`),
          'admin:',
          `  socket: ${path.join(lab.dir, `${names[i]}.sock`)}`,
          `state_file: ${path.join(lab.dir, `${names[i]}.state`)}`,
          '',
        ].join('\n'),
      );
      lbds.push(await startLbdIn(lab, ns[i], names[i], config));
    }
    const both = [lab.addr.balancer, lab.addr.extraBalancers![0]].join(' ');
    const ms = await waitFor('both next hops on the router', () => bgp.nextHops().join(' ') === both, 15000);
    say(`\ndemo: ${ms} ms later the router has one route with a next hop per balancer (ip route show ${lab.addr.vip}, in the router):`);
    for (const l of bgp.routeText().split('\n')) say(`  ${l}`);

    say(`\ndemo: ${SCALE_DOWNLOADS} downloads of /big.bin (${SCALE_FILE_MB} MiB) from the client, each held open after its first bytes…`);
    const outs: string[] = [];
    const started: Promise<void>[] = [];
    const done: Promise<void>[] = [];
    for (let i = 0; i < SCALE_DOWNLOADS; i++) {
      const p = lab.spawn(lab.ns.client, ['node', HELD_DOWNLOAD_JS, '--host', lab.addr.vip, '--path', '/big.bin', '--max-ms', '30000', '--sha256'], {
        stdio: ['pipe', 'pipe', 'ignore'],
        ref: true,
      });
      downloads.push(p);
      outs.push('');
      started.push(
        new Promise<void>((resolve) => {
          p.stdout!.on('data', (d: Buffer) => {
            outs[i] += d.toString();
            if (outs[i].includes('started ')) resolve();
          });
          p.once('exit', () => resolve());
        }),
      );
      // 'close', not 'exit': the last line may still be in the pipe when the process has exited.
      done.push(new Promise<void>((resolve) => p.once('close', () => resolve())));
      p.stdin!.on('error', () => {});
    }
    await Promise.all(started);
    const per = ns.map((n) => {
      const m = lab.exec(n, ['curl', '-s', '--max-time', '5', 'http://127.0.0.1:9469/metrics']);
      return /^lbd_service_connections_total\{[^}]*service="web"[^}]*\} (\S+)$/m.exec(m)?.[1] ?? '?';
    });
    say(`demo: the router spread them: ${per[0]} through lb30, ${per[1]} through lb31 (lbd_service_connections_total of each)`);

    say(`\ndemo: SIGKILL to lb30's lbd (its BIRD keeps running); lbd's TAP lbdvip0 dies with it, and its route in table 4242…`);
    const t0 = Date.now();
    lbds[0]!.kill('SIGKILL');
    await waitFor("lb30's next hop withdrawn", () => bgp.nextHops().join(' ') === lab.addr.extraBalancers![0], 10000);
    say(`demo: ${Date.now() - t0} ms after the kill the router's route has one next hop left (BGP session still up: ${bgp.sessions().lb30}):`);
    for (const l of bgp.routeText().split('\n')) say(`  ${l}`);

    say("\ndemo: releasing the downloads: lb30's flows now reach lb31, which schedules each by the Maglev hash to the same real server");
    for (const p of downloads) if (p.exitCode === null && p.signalCode === null) p.stdin!.end('go\n');
    await Promise.all(done);
    const want = `done 200 ${SCALE_FILE_MB * 1024 * 1024} ${bigFileSha256(SCALE_FILE_MB)}`;
    const ok = outs.filter((o) => o.trim().split('\n').pop() === want).length;
    say(`demo: ${ok} of ${SCALE_DOWNLOADS} downloads complete and byte-identical (sha256 of the body = the real servers' big.bin)`);
    const m31 = lab.exec(ns[1], ['curl', '-s', '--max-time', '5', 'http://127.0.0.1:9469/metrics']);
    const picked = /^lbd_service_on_miss_scheduled_total\{[^}]*service="web"[^}]*\} (\S+)$/m.exec(m31)?.[1] ?? '?';
    say(`demo: lb31 took ${picked} flows over that it had never seen (lbd_service_on_miss_scheduled_total)`);
    return ok === SCALE_DOWNLOADS ? 0 : 1;
  } finally {
    say('demo: stopping lbd and BIRD, tearing the lab down');
    cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`demo: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
