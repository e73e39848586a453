/**
 * `npm run demo`: the classic LVS-DR setup, reproduced and balanced by lbd.
 * Builds the lab (client, balancer, two Apache real servers), starts lbd in the balancer with
 * examples/lb.yaml, curls the VIP ten times from the client, shows a few metrics, and tears
 * everything down, also on Ctrl-C.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from '../src/host/programs';
import { createLab, Lab } from './lab';

const ROOT = path.resolve(__dirname, '../..');
const say = (s: string) => process.stdout.write(`${s}\n`);

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    say('demo: run as root (it builds network namespaces): sudo npm run demo');
    return 1;
  }
  say('demo: building the lab: client 10.0.10.50, balancer 10.0.10.30, real servers 10.0.10.40 and 10.0.10.111 (Apache)…');
  const lab: Lab = createLab({ shape: 'one-nic' });
  let lbd: ChildProcess | null = null;
  const cleanup = () => {
    if (lbd && lbd.exitCode === null) lab.kill(lbd.pid!, { graceMs: 2000 });
    lab.teardown();
  };
  process.once('SIGINT', () => {
    say('\ndemo: interrupted, tearing down');
    cleanup();
    process.exit(130);
  });
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

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`demo: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
