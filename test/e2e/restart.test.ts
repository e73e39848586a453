import { cpSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { bigFileSha256, createLab, Lab } from '../../lab/lab';
import { heldDownload, HeldDownload, LBD_BIN, lbdConfig, LbdProcess, parseWrk, startLbd, udpEchoService } from '../helpers/lbd-process';

// The fault: "a 48 MiB download through the VIP, and in the middle of it lbd is restarted with the
// same config, once by SIGTERM and once by SIGKILL: both downloads die: the new lbd has an empty
// connection table, so every ACK of every established connection is dropped as no_connection."
// lbd now keeps its table in a memory-mapped state file that the next lbd adopts; these tests
// restart it under a download (both paths, both signals), under wrk, from a build in another
// directory, and over a state file it must not trust.
//
// Measured in the lab (2 cores, loaded): from the signal to the new lbd's first forwarded frame
// ~0.6-0.9 s (node's start dominates; npm run bench -- --restart-only measures it).
//
// The downloads are held downloads (lab/held-download.ts): each reads its first bytes and stops,
// so the flow is ESTABLISHED in the middle of the file when lbd restarts, however fast the
// machine (curl --limit-rate is not that: curl 7.88 at times lets a download through at full
// speed, and it had ended before the restart). Released after the restart, the rest of the file
// (all but what the client's receive buffer held) flows with every ACK through the new lbd, in
// ~0.3 s; a download that gets no byte further ends at DOWNLOAD_BOUND_MS after its release.

const MIB = 1024 * 1024;
const FILE_MB = 16;
/** A held download gives up this long after its release (and, before it, this long after its start). */
const DOWNLOAD_BOUND_MS = 20_000;
/** the same for the download meant to stall (the --fresh control): ~0.3 s would have done it */
const FRESH_BOUND_MS = 5_000;
/** at most this many seconds of load across the restarts and hand-overs (the UDP stream's own limit is 60) */
const LOAD_BOUND_S = 60;

let lab: Lab;
let expectedSha: string;
before(() => {
  lab = createLab({ shape: 'one-nic', bigFileMB: FILE_MB });
  // A receive buffer of 256 KiB at most on the client (Linux's default maximum is 6 or 32 MiB):
  // once released, the download's window stays small, and every ACK until the end must reach the
  // server through lbd.
  lab.exec(lab.ns.client, ['sysctl', '-qw', 'net.ipv4.tcp_rmem=4096 131072 262144']);
  expectedSha = bigFileSha256(FILE_MB);
});
after(() => lab?.teardown());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const UDP_ECHO = path.resolve(LBD_BIN, '../../dist/lab/udp-echo.js');

/** A config with its own state file, the same for every lbd a test starts. */
function config(dataplane: string, stateFile: string): string {
  return `${lbdConfig(lab, { top: `dataplane: ${dataplane}` })}\nstate_file: ${stateFile}\n`;
}

/** A held download of /big.bin through the VIP, with the sha256 of what it read. */
const download = (): HeldDownload => heldDownload(lab, lab.addr.vip, '/big.bin', 80, { sha256: true, maxMs: DOWNLOAD_BOUND_MS });
/** What a held download of the whole file prints last. */
const whole = () => `done 200 ${FILE_MB * MIB} ${expectedSha}`;

const logText = (lbd: LbdProcess) =>
  lbd
    .logs()
    .map((l) => JSON.stringify(l))
    .join('\n');

/** Ends lbd with `signal` and waits until it is gone. */
async function end(lbd: LbdProcess, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
  if (signal === 'SIGTERM') {
    const r = await lbd.stop();
    assert.equal(r.code, 0, `lbd exits 0 on SIGTERM:\n${logText(lbd)}`);
    return;
  }
  const gone = new Promise<void>((resolve) => lbd.proc.once('exit', () => resolve()));
  lbd.proc.kill('SIGKILL');
  await gone;
}

/** Udp RcvbufErrors of a namespace (/proc/net/snmp, read from inside it): datagrams its sockets had no room for. */
function udpRcvbufErrors(l: Lab, ns: string): string {
  const snmp = l.tryExec(ns, ['node', '-e', "process.stdout.write(require('fs').readFileSync('/proc/net/snmp', 'utf8'))"]).stdout;
  const [names, values] = snmp.split('\n').filter((line) => line.startsWith('Udp: '));
  const i = names?.split(' ').indexOf('RcvbufErrors') ?? -1;
  return i >= 0 ? (values?.split(' ')[i] ?? '?') : '?';
}

/** The lab's UDP receive-buffer drops so far: the real servers' and the client's, summed. */
function udpRcvbufErrorsTotal(): number {
  return [...lab.ns.rs, lab.ns.client].reduce((sum, ns) => {
    const n = Number(udpRcvbufErrors(lab, ns));
    if (!Number.isFinite(n)) throw new Error(`no Udp RcvbufErrors in ${ns}'s /proc/net/snmp`);
    return sum + n;
  }, 0);
}

/** The adoption line of lbd's start. */
function adoptionLine(lbd: LbdProcess): any {
  const line = lbd.logs().find((l) => typeof l.msg === 'string' && l.msg.startsWith('adopted the connection table'));
  assert.ok(line, `an adoption line:\n${logText(lbd)}`);
  return line;
}

for (const dataplane of ['native', 'ts'] as const) {
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    test(`${dataplane}: a ${FILE_MB} MiB download under way survives ${signal} and a restart of lbd byte-identical (the fault: the download died, the new lbd dropped its ACKs as no_connection)`, async () => {
      const stateFile = path.join(lab.dir, `restart-${dataplane}-${signal}.state`);
      const yaml = config(dataplane, stateFile);
      const first = await startLbd(lab, yaml);
      let second: LbdProcess | undefined;
      const dl = download();
      try {
        assert.equal(await dl.started, 200, 'the download is under way');
        await end(first, signal);
        second = await startLbd(lab, yaml);
        dl.release();
        const last = await dl.done;
        assert.equal(last, whole(), `the download completes byte-identical (it stalled: the fault):\nfirst:\n${logText(first)}\nsecond:\n${logText(second)}`);
        const line = adoptionLine(second);
        assert.ok(line.flows >= 1, `the download's flow adopted: ${JSON.stringify(line)}`);
        assert.equal(line.previousStopped, signal === 'SIGTERM', 'the header says whether the previous lbd stopped');
        assert.ok(second.metric('lbd_state_adopted_entries', { kind: 'connection' }) >= 1);
        assert.equal(second.metric('lbd_state_restarts_total'), 1);
        assert.ok(second.metric('lbd_forwarded_packets_total') > 0, 'the rest of the download went through the new lbd');
        assert.equal(second.metric('lbd_dropped_packets_total', { reason: 'no_connection' }) || 0, 0, 'no ACK of the download dropped as no_connection');
      } finally {
        if (dl.running()) lab.kill(dl.proc);
        await second?.stop();
        await first.stop();
      }
    });
  }
}

for (const dataplane of ['native', 'ts'] as const) {
  test(`${dataplane}: wrk through the VIP across three restarts (SIGTERM, SIGKILL, SIGTERM): no request fails`, async () => {
    const stateFile = path.join(lab.dir, `restart-wrk-${dataplane}.state`);
    const yaml = config(dataplane, stateFile);
    let lbd = await startLbd(lab, yaml);
    const started: LbdProcess[] = [lbd];
    const out = { text: '' };
    // wrk runs until 1.5 s after the last restart, when the test ends it (SIGINT: wrk reports);
    // LOAD_BOUND_S only bounds it. A request lost in a restart's gap is retransmitted with
    // backoff (0.2, 0.6, 1.4, 3, 6.2, 12.6, 25.4 s after it): wrk's 30 s timeout covers a gap of
    // over five times the 3-4 s a start of lbd takes under this load.
    const wrk = lab.spawn(lab.ns.client, ['wrk', '-t1', '-c8', `-d${LOAD_BOUND_S}s`, '--timeout', '30s', `http://${lab.addr.vip}/`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ref: true,
    });
    wrk.stdout!.on('data', (d: Buffer) => (out.text += d.toString()));
    // 'close', not 'exit': the summary may still be in the pipe when wrk has exited.
    const wrkDone = new Promise<void>((resolve) => wrk.once('close', () => resolve()));
    try {
      for (const signal of ['SIGTERM', 'SIGKILL', 'SIGTERM'] as const) {
        await sleep(1500);
        await end(lbd, signal);
        lbd = await startLbd(lab, yaml);
        started.push(lbd);
      }
      await sleep(1500);
      assert.ok(wrk.exitCode === null && wrk.signalCode === null, `wrk still ran after the last restart (bounded by ${LOAD_BOUND_S} s)`);
      wrk.kill('SIGINT');
      await Promise.race([wrkDone, sleep(30000)]);
      const w = parseWrk(out.text);
      assert.ok(w.requests > 100, `wrk ran: ${out.text}`);
      // wrk keeps its 8 connections open: every one was opened before the first restart and must
      // outlive all three; none was opened during a gap.
      assert.equal(w.socketErrors, 0, `no connect, read, write or timeout error:\n${out.text}`);
      assert.equal(w.non2xx, 0, out.text);
      assert.equal(lbd.metric('lbd_state_restarts_total'), 3);
    } finally {
      if (wrk.exitCode === null) lab.kill(wrk);
      for (const p of started.reverse()) await p.stop();
    }
  });
}

test('an upgrade: lbd from a build in another directory adopts the flows of this one, and this one adopts them back', async () => {
  // The other build: lbd's runtime files copied elsewhere, as an installed package would be.
  const root = path.resolve(LBD_BIN, '../..');
  const other = path.join(lab.dir, 'other-build');
  mkdirSync(other, { recursive: true });
  for (const p of ['bin', 'dist', 'package.json', 'native/build/Release/lbd_native.node']) cpSync(path.join(root, p), path.join(other, p), { recursive: true });
  symlinkSync(path.join(root, 'node_modules'), path.join(other, 'node_modules'));
  const otherBin = path.join(other, 'bin/lbd');
  const stateFile = path.join(lab.dir, 'restart-upgrade.state');
  const yaml = config('native', stateFile);
  const first = await startLbd(lab, yaml);
  const dl = download();
  const started: LbdProcess[] = [first];
  try {
    assert.equal(await dl.started, 200, 'the download is under way');
    await end(first, 'SIGTERM');
    const upgraded = await startLbd(lab, yaml, { bin: otherBin });
    started.push(upgraded);
    assert.ok(adoptionLine(upgraded).flows >= 1, 'the other build adopted the flow');
    await end(upgraded, 'SIGTERM');
    const back = await startLbd(lab, yaml);
    started.push(back);
    assert.ok(adoptionLine(back).flows >= 1, 'and this build adopted it back');
    dl.release();
    assert.equal(await dl.done, whole(), 'the download completes byte-identical');
    assert.equal(back.metric('lbd_state_restarts_total'), 2);
    assert.equal(back.metric('lbd_dropped_packets_total', { reason: 'no_connection' }) || 0, 0, 'no ACK of the download dropped as no_connection');
  } finally {
    if (dl.running()) lab.kill(dl.proc);
    for (const p of started.reverse()) await p.stop();
  }
});

test('a state file lbd cannot trust (another layout version; garbage) is set aside with one log line, and lbd starts empty and serves', async () => {
  for (const [what, bytes, reason] of [
    ['layout version 3', headerOfVersion(3), /layout version 3, this lbd reads \d+/],
    ['garbage', Buffer.from('this is not a state file\n'.repeat(400)), /not an lbd state file/],
  ] as const) {
    const stateFile = path.join(lab.dir, `restart-bad-${what.replace(/\W/g, '_')}.state`);
    writeFileSync(stateFile, bytes);
    const lbd = await startLbd(lab, config('native', stateFile));
    try {
      const lines = lbd.logs().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('state file not adopted'));
      assert.equal(lines.length, 1, `${what}: one line says it:\n${logText(lbd)}`);
      assert.match(lines[0].reason, reason);
      assert.equal(lines[0].level, 40, 'a warning');
      assert.deepEqual(readFileSync(`${stateFile}.rejected`), bytes, `${what}: set aside as it was`);
      const body = lab.exec(lab.ns.client, ['curl', '-sS', '--max-time', '5', `http://${lab.addr.vip}/`]).trim();
      assert.ok(lab.names.includes(body), `served: ${body}`);
      assert.equal(lbd.metric('lbd_state_restarts_total'), 0);
    } finally {
      await lbd.stop();
    }
  }
});

/** A header as an lbd of another layout version would write it: magic, then the version. */
function headerOfVersion(version: number): Buffer {
  const b = Buffer.alloc(8192);
  b.write('LBDSTATE', 0, 'latin1');
  b.writeUInt32LE(version, 8);
  return b;
}

for (const dataplane of ['native', 'ts'] as const) {
  test(`${dataplane}: two hand-overs (lbd --take-over started while lbd runs): wrk through the VIP reports no error and a 1000/s UDP stream loses no datagram (but to a receiver's full buffer)`, async () => {
    const stateFile = path.join(lab.dir, `handover-${dataplane}.state`);
    // One admin socket for all: the new lbd asks the running one there to hand over.
    const yaml = `${lbdConfig(lab, { top: `dataplane: ${dataplane}`, extraServices: udpEchoService(lab) })}\nstate_file: ${stateFile}\nadmin:\n  socket: ${path.join(lab.dir, `handover-${dataplane}.sock`)}\n`;
    let lbd = await startLbd(lab, yaml);
    const started: LbdProcess[] = [lbd];
    const ringDrops: number[] = [];
    const takenAt: number[] = [];
    const outs = { wrk: '', udp: '' };
    // The load runs until 1.5 s after the second hand-over, when the test ends it (SIGINT: wrk
    // and the stream report what they did); LOAD_BOUND_S only bounds it. Under it a start of
    // lbd takes ~3-4 s here (2 cores shared with wrk, Apache and the running lbd).
    const udpBefore = udpRcvbufErrorsTotal();
    const wrk = lab.spawn(lab.ns.client, ['wrk', '-t1', '-c8', `-d${LOAD_BOUND_S}s`, '--timeout', '5s', `http://${lab.addr.vip}/`], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ref: true,
    });
    wrk.stdout!.on('data', (d: Buffer) => (outs.wrk += d.toString()));
    const udp = lab.spawn(
      lab.ns.client,
      ['node', UDP_ECHO, 'stream', '--host', lab.addr.vip, '--port', String(lab.ports.udp), '--rate', '1000', '--seconds', String(LOAD_BOUND_S)],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        ref: true,
      },
    );
    udp.stdout!.on('data', (d: Buffer) => (outs.udp += d.toString()));
    const done = Promise.all([wrk, udp].map((p) => new Promise<void>((resolve) => p.once('close', () => resolve()))));
    try {
      for (let i = 0; i < 2; i++) {
        await sleep(1500);
        if (dataplane === 'native') ringDrops.push(lbd.metric('lbd_native_capture_dropped_packets_total'));
        const old = lbd;
        const gone = new Promise<number | null>((resolve) => old.proc.once('exit', (code) => resolve(code)));
        lbd = await startLbd(lab, yaml, { args: ['--take-over'] });
        takenAt.push(performance.timeOrigin + performance.now());
        started.push(lbd);
        assert.equal(await gone, 0, `the old lbd handed over and exited 0:\n${logText(old)}`);
        // Logged once the old process is gone and the admin socket is this one's.
        for (const deadline = Date.now() + 5000; !lbd.logs().some((l) => l.msg === 'took over from the previous lbd');) {
          assert.ok(Date.now() < deadline, `took over:\n${logText(lbd)}`);
          await sleep(20);
        }
        assert.ok(adoptionLine(lbd).flows >= 9, 'the wrk connections and the UDP flow adopted');
      }
      await sleep(1500);
      assert.ok(
        [wrk, udp].every((p) => p.exitCode === null && p.signalCode === null),
        `the load still ran after the second hand-over (bounded by ${LOAD_BOUND_S} s)`,
      );
      for (const p of [wrk, udp]) p.kill('SIGINT');
      await Promise.race([done, sleep(30000)]);
      const w = parseWrk(outs.wrk);
      assert.ok(w.requests > 100, `wrk ran: ${outs.wrk}`);
      assert.equal(w.socketErrors, 0, `no connect, read, write or timeout error:\n${outs.wrk}`);
      assert.equal(w.non2xx, 0, outs.wrk);
      const r = JSON.parse(outs.udp.trim().split('\n').pop() ?? '{}') as { sentAt: number[]; answeredAt: (number | null)[] };
      assert.ok((r.sentAt?.at(-1) ?? 0) > takenAt[1] + 1000, `the stream ran past the second hand-over: ${outs.udp.slice(0, 200)}`);
      const lost = r.answeredAt.filter((a) => a === null).length;
      if (dataplane === 'native') ringDrops.push(lbd.metric('lbd_native_capture_dropped_packets_total'));
      const rsUdp = lab.ns.rs.map((ns) => udpRcvbufErrors(lab, ns));
      const windows: string[] = [];
      for (let i = 0; i < r.answeredAt.length; i++) {
        if (r.answeredAt[i] !== null || (i > 0 && r.answeredAt[i - 1] === null)) continue;
        let j = i;
        while (j < r.answeredAt.length && r.answeredAt[j] === null) j++;
        windows.push(`${Math.round(r.sentAt[i] - r.sentAt[0])}-${Math.round(r.sentAt[j - 1] - r.sentAt[0])} ms`);
      }
      // A datagram that an echo socket had no room for (a node process starved on 2 busy cores)
      // is the lab's loss, not lbd's: the real servers' and the client's receive-buffer drops.
      const labDrops = udpRcvbufErrorsTotal() - udpBefore;
      assert.ok(
        lost <= labDrops,
        `no datagram lost across the hand-overs but to full receive buffers, ${labDrops} (${lost} were, sent at ${windows.join(', ')} into the stream; new lbds up at ${takenAt.map((t) => Math.round(t - r.sentAt[0])).join(', ')} ms; ring drops of each lbd ${ringDrops.join(' ')}; real servers' and the client's UDP receive-buffer drops ${rsUdp.join(' ')} ${udpRcvbufErrors(lab, lab.ns.client)})`,
      );
      assert.equal(lbd.metric('lbd_state_restarts_total'), 2);
    } finally {
      for (const p of [wrk, udp]) if (p.exitCode === null) lab.kill(p);
      for (const p of started.reverse()) await p.stop();
    }
  });
}

// Last in the file: the download it kills leaves the real server probing a closed client for
// minutes, and the client's RSTs would count as no_connection in any later lbd here.
test("the control: started with --fresh (the table not adopted), the new lbd drops the same download's ACKs as no_connection and it dies", async () => {
  const stateFile = path.join(lab.dir, 'restart-fresh.state');
  const yaml = config('native', stateFile);
  const first = await startLbd(lab, yaml);
  let second: LbdProcess | undefined;
  // A shorter bound: this download is meant to stall.
  const dl = heldDownload(lab, lab.addr.vip, '/big.bin', 80, { sha256: true, maxMs: FRESH_BOUND_MS });
  try {
    assert.equal(await dl.started, 200, 'the download is under way');
    await end(first, 'SIGTERM');
    second = await startLbd(lab, yaml, { args: ['--fresh'] });
    dl.release();
    const last = await dl.done;
    assert.match(last, /^error download not finished in time/, `the download stalls: ${last}`);
    assert.ok(second.metric('lbd_dropped_packets_total', { reason: 'no_connection' }) > 0, 'its ACKs dropped as no_connection');
    assert.equal(second.metric('lbd_state_adopted_entries', { kind: 'connection' }) || 0, 0, 'nothing adopted');
  } finally {
    if (dl.running()) lab.kill(dl.proc);
    await second?.stop();
    await first.stop();
  }
});
