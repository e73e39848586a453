import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { createLab, sleepMs, type Lab, type LabOptions } from '../../lab/lab';
import { lbdConfig, startLbd, type LbdProcess } from '../helpers/lbd-process';

// Bulk transfers through the VIP with every offload at its default, as a real sender has them:
// the client's tx checksum offload and TSO on (partial checksums, TSO super-frames up to 64 KiB),
// GRO on on the balancer's capture interface (merged super-frames in lbd's capture). A 16 MiB
// download (Apache → client: only the client's ACKs cross lbd) and a 16 MiB upload (client →
// lbd → real server: every data segment crosses lbd) must arrive byte-identical, on both data
// paths, in the one-NIC lab and in a two-NIC lab whose VIP is routed to the balancer (nobody
// ARPs it) and is on the balancer's own lo.

const MIB = 1024 * 1024;
const SIZE = 16 * MIB;
const UPLOAD_PORT = 9000;
/** Hard bound of one transfer (16 MiB takes well under a second here when it works). */
const MAX_MS = 30000;
/** A transfer that made no progress for this long is given up (a stall, not a slow machine). */
const STALL_MS = 8000;

/** The upload sink on each real server: per connection, sha256 + byte count of what it received. */
const SINK = `
const net = require('node:net'), crypto = require('node:crypto');
const port = Number(process.argv[1]);
const conns = new Map();
let seq = 0;
const report = (c, how) => {
  if (c.done) return;
  c.done = true;
  const r = { conn: c.id, how, bytes: c.bytes, sha256: c.hash.digest('hex'), ms: Date.now() - c.t0, from: c.from };
  console.log(JSON.stringify(r));
  conns.delete(c.id);
  return r;
};
net.createServer({ allowHalfOpen: true }, (s) => {
  const c = { id: ++seq, bytes: 0, hash: crypto.createHash('sha256'), t0: Date.now(), from: s.remoteAddress + ':' + s.remotePort, last: -1 };
  conns.set(c.id, c);
  s.on('data', (d) => { c.hash.update(d); c.bytes += d.length; });
  s.on('end', () => { const r = report(c, 'end'); s.end(JSON.stringify(r) + '\\n'); });
  s.on('error', (e) => report(c, 'error ' + e.code));
  s.on('close', () => report(c, 'close'));
}).listen(port, '0.0.0.0', () => console.log('listening ' + port));
setInterval(() => {
  for (const c of conns.values()) if (c.bytes !== c.last) { c.last = c.bytes; console.log(JSON.stringify({ conn: c.id, progress: c.bytes, ms: Date.now() - c.t0 })); }
}, 1000).unref();
process.on('SIGTERM', () => { for (const c of [...conns.values()]) report(c, 'killed'); process.exit(0); });
`;

/** The upload client: sends a file to host:port, half-closes, prints the sink's reply (JSON). */
const UPLOADER = `
const net = require('node:net'), fs = require('node:fs');
const [host, port, file, maxMs, stallMs] = process.argv.slice(1);
const data = fs.readFileSync(file);
const t0 = Date.now();
let reply = '', handed = -1, lastChange = Date.now(), result = null;
const s = net.connect({ host, port: Number(port), allowHalfOpen: true });
const finish = (r) => {
  if (result) return;
  result = { ...r, handed: s.bytesWritten - s.writableLength, ms: Date.now() - t0 };
  console.log(JSON.stringify(result));
  if (r.error) s.resetAndDestroy(); else s.destroy(); // a reset: the sink then reports what it got
  process.exit(r.error ? 2 : 0);
};
// 64 KiB writes with backpressure: a write completes when the kernel took it all, so the bytes
// handed to the kernel (bytesWritten - writableLength) show progress, and its absence a stall
let off = 0;
const pump = () => {
  while (off < data.length) {
    const piece = data.subarray(off, off + 65536);
    off += piece.length;
    if (!s.write(piece)) return void s.once('drain', pump);
  }
  s.end();
};
s.on('connect', pump);
s.setEncoding('utf8');
s.on('data', (d) => (reply += d));
s.on('end', () => { try { finish({ reply: JSON.parse(reply) }); } catch { finish({ error: 'bad reply', raw: reply }); } });
s.on('error', (e) => finish({ error: e.message }));
setInterval(() => {
  const h = s.bytesWritten - s.writableLength;
  if (h !== handed) { handed = h; lastChange = Date.now(); }
  if (Date.now() - t0 > Number(maxMs)) finish({ error: 'timeout after ' + maxMs + ' ms' });
  else if (Date.now() - lastChange > Number(stallMs)) finish({ error: 'stalled ' + stallMs + ' ms' });
}, 200);
`;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Non-zero drop counters by reason, plus what lbd received/forwarded and any super-frame/ICMP counter. */
function lbdCounters(lbd: LbdProcess): { drops: Record<string, number>; other: Record<string, number> } {
  const drops: Record<string, number> = {};
  const other: Record<string, number> = {};
  for (const line of lbd.metrics().split('\n')) {
    const d = /^lbd_dropped_packets_total\{[^}]*reason="([^"]+)"[^}]*\} (\S+)$/.exec(line);
    if (d) {
      if (Number(d[2]) !== 0) drops[d[1]] = (drops[d[1]] ?? 0) + Number(d[2]);
      continue;
    }
    const m = /^(lbd_(?:received|forwarded)_(?:packets|bytes)_total|lbd_\w*(?:super|segment|gso|icmp|too_big|capture_dropped)\w*)(\{[^}]*\})? (\S+)$/.exec(
      line,
    );
    if (m && Number(m[3]) !== 0) other[m[1] + (m[2] ?? '')] = Number(m[3]);
  }
  return { drops, other };
}

interface Shape {
  name: string;
  opts: LabOptions;
}
const SHAPES: Shape[] = [
  { name: 'one-nic', opts: { shape: 'one-nic' } },
  { name: 'two-nic, VIP routed to the balancer and on its lo', opts: { shape: 'two-nic', routedVip: true } },
];

for (const shape of SHAPES) {
  describe(`bulk 16 MiB, offloads at their defaults: ${shape.name}`, () => {
    let lab: Lab;
    let download: Buffer;
    let uploadFile: string;
    let uploadSha: string;
    const sinkLogs: string[] = [];

    before(() => {
      lab = createLab({ ...shape.opts, bigFileMB: 1 });
      // One random file, the same on every real server (whichever rr picks serves the same bytes).
      download = randomBytes(SIZE);
      for (const a of lab.addr.rs) writeFileSync(path.join(lab.dir, `rs${a.split('.')[3]}`, 'htdocs', 'bulk.bin'), download, { mode: 0o644 });
      const up = randomBytes(SIZE);
      uploadFile = path.join(lab.dir, 'upload.bin');
      writeFileSync(uploadFile, up);
      uploadSha = sha256(up);
      lab.ns.rs.forEach((ns, i) => {
        const name = `bulk-sink-${i}`;
        lab.spawn(ns, ['node', '-e', SINK, String(UPLOAD_PORT)], { name });
        sinkLogs.push(path.join(lab.dir, 'logs', `${name}.log`));
      });
      for (const log of sinkLogs) {
        const end = Date.now() + 10000;
        while (!safeRead(log).includes('listening')) {
          if (Date.now() > end) throw new Error(`upload sink did not start: ${safeRead(log)}`);
          sleepMs(50);
        }
      }
    });
    // the teardown stops the sinks with everything else the lab started
    after(() => lab?.teardown());

    test(
      'the lab: client offloads at their defaults, GRO on on the capture interface' + (shape.opts.routedVip ? ', the VIP routed and on the balancer lo' : ''),
      () => {
        const k = lab.exec(lab.ns.client, ['ethtool', '-k', lab.ifaces.client]);
        assert.match(k, /^tx-checksumming: on/m);
        assert.match(k, /^\s*tx-tcp-segmentation: on/m);
        assert.match(lab.exec(lab.ns.balancer, ['ethtool', '-k', lab.ifaces.balancerCapture]), /^generic-receive-offload: on/m);
        if (shape.opts.routedVip) {
          assert.match(lab.exec(lab.ns.client, ['ip', 'route', 'get', lab.addr.vip]), new RegExp(`via ${lab.addr.balancer.replace(/\./g, '\\.')} `));
          assert.match(lab.exec(lab.ns.balancer, ['ip', '-4', '-o', 'addr', 'show', 'dev', 'lo']), new RegExp(` ${lab.addr.vip.replace(/\./g, '\\.')}/32 `));
        }
      },
    );

    for (const dataplane of ['native', 'ts'] as const) {
      test(`${dataplane}: 16 MiB download and 16 MiB upload through the VIP are byte-identical`, async (t) => {
        const lbd = await startLbd(
          lab,
          lbdConfig(lab, {
            scheduler: 'rr',
            top: `dataplane: ${dataplane}`,
            extraServices: `
  - name: upload
    vip: ${lab.addr.vip}
    port: ${UPLOAD_PORT}
    protocol: tcp
    scheduler: rr
    real_servers:
${lab.addr.rs.map((a) => `      - ${a}`).join('\n')}`,
          }),
        );
        const problems: string[] = [];
        try {
          assert.equal(lbd.metric('lbd_dataplane_info', { path: dataplane }), 1);

          // download: Apache → client directly (DSR); the client's ACKs cross lbd
          const dlFile = path.join(lab.dir, `dl-${dataplane}.bin`);
          const t0 = Date.now();
          const dl = lab.tryExec(
            lab.ns.client,
            [
              'curl',
              '-sS',
              '--max-time',
              String(MAX_MS / 1000),
              '--connect-timeout',
              String(STALL_MS / 1000),
              '--speed-limit',
              '1',
              '--speed-time',
              String(STALL_MS / 1000),
              '-o',
              dlFile,
              '-w',
              '%{http_code} %{size_download}',
              `http://${lab.addr.vip}/bulk.bin`,
            ],
            { timeoutMs: MAX_MS + 5000 },
          );
          const got = safeReadBuf(dlFile);
          const dlMs = Date.now() - t0;
          const afterDl = lbdCounters(lbd);
          const dlLine = `download: curl exit ${dl.status} "${dl.stdout.trim()}" ${dl.stderr.trim()}; ${got.length}/${SIZE} bytes in ${dlMs} ms, sha256 ${sha256(got) === sha256(download) ? 'equal' : 'DIFFERENT'}; lbd drops ${JSON.stringify(afterDl.drops)} ${JSON.stringify(afterDl.other)}`;
          t.diagnostic(dlLine);
          if (dl.status !== 0 || got.length !== SIZE || !got.equals(download)) problems.push(dlLine);

          // upload: client → lbd → a real server's sink; every data segment crosses lbd
          const t1 = Date.now();
          const up = lab.tryExec(lab.ns.client, ['node', '-e', UPLOADER, lab.addr.vip, String(UPLOAD_PORT), uploadFile, String(MAX_MS), String(STALL_MS)], {
            timeoutMs: MAX_MS + 10000,
          });
          const upMs = Date.now() - t1;
          let res: { error?: string; reply?: { bytes: number; sha256: string }; handed?: number } = {};
          try {
            res = JSON.parse(up.stdout.trim().split('\n').pop() ?? '');
          } catch {
            res = { error: `uploader printed no result (exit ${up.status}): ${up.stdout} ${up.stderr}` };
          }
          // what the sinks saw (the reply may be lost even when the data arrived)
          const seen = sinkLogs.map((l) => lastSinkLines(l)).join(' | ');
          const afterUp = lbdCounters(lbd);
          const upLine = `upload: ${res.error ?? 'ok'}; ${res.handed ?? '?'} bytes handed to the client's kernel, the sink says ${res.reply ? `${res.reply.bytes}/${SIZE} bytes, sha256 ${res.reply.sha256 === uploadSha ? 'equal' : 'DIFFERENT'}` : 'nothing'} in ${upMs} ms; sinks: ${seen}; lbd drops ${JSON.stringify(afterUp.drops)} ${JSON.stringify(afterUp.other)}`;
          t.diagnostic(upLine);
          if (res.error || !res.reply || res.reply.bytes !== SIZE || res.reply.sha256 !== uploadSha) problems.push(upLine);
        } finally {
          await lbd.stop();
        }
        assert.deepEqual(problems, []);
      });
    }
  });
}

function safeRead(f: string): string {
  try {
    return readFileSync(f, 'utf8');
  } catch {
    return '';
  }
}
function safeReadBuf(f: string): Buffer {
  try {
    return readFileSync(f);
  } catch {
    return Buffer.alloc(0);
  }
}
/** The sink's newest line per connection since the last call (its log grows over the file's tests). */
const sinkOffsets = new Map<string, number>();
function lastSinkLines(log: string): string {
  const txt = safeRead(log);
  const from = sinkOffsets.get(log) ?? 0;
  sinkOffsets.set(log, txt.length);
  const last = new Map<number, string>();
  for (const line of txt.slice(from).split('\n')) {
    const m = /"conn":(\d+)/.exec(line);
    if (m) last.set(Number(m[1]), line);
  }
  return [...last.values()].join(' ') || '-';
}
