/**
 * Both ends of the bench's bulk upload (bench/bulk.ts), run inside the lab's namespaces:
 *
 *   node bulk-peer.js sink --port P
 *     On a real server: listens on 0.0.0.0:P (so the VIP on lo too); per connection, counts what
 *     it receives and discards it; at the client's half-close answers `{"bytes":N}` and closes.
 *     Prints `listening P`, then one JSON line per finished connection (`from`, `bytes`, `how`).
 *
 *   node bulk-peer.js send --host H --port P --bytes N [--max-ms M] [--stall-ms S]
 *     On the client: prints `ready`, waits for `go` on stdin (so the measuring window excludes
 *     Node's start-up), connects, writes N bytes (one random MiB, over and over, 64 KiB at a time, with
 *     backpressure), half-closes, waits for the sink's answer, prints one JSON line (`ok`, `bytes`
 *     the sink counted, `ms` from go to the answer, `handed` bytes taken by the kernel, `cpuUs`
 *     its own CPU time since go, `error`)
 *     and exits. Bounded: gives up after M ms in all (default 60000) or S ms without the kernel
 *     taking a byte (default 10000).
 */
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';

function arg(name: string, dflt?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : dflt;
  if (v === undefined) {
    process.stderr.write(`bulk-peer: --${name} is required\n`);
    process.exit(2);
  }
  return v;
}

function sink(): void {
  const port = Number(arg('port'));
  net
    .createServer({ allowHalfOpen: true }, (s) => {
      const from = `${s.remoteAddress}:${s.remotePort}`;
      let bytes = 0;
      let done = false;
      const report = (how: string): void => {
        if (done) return;
        done = true;
        process.stdout.write(`${JSON.stringify({ from, bytes, how })}\n`);
      };
      s.on('data', (d: Buffer) => (bytes += d.length));
      s.on('end', () => {
        report('end');
        s.end(`${JSON.stringify({ bytes })}\n`);
      });
      s.on('error', (e: NodeJS.ErrnoException) => report(`error ${e.code ?? e.message}`));
      s.on('close', () => report('close'));
    })
    .listen(port, '0.0.0.0', () => process.stdout.write(`listening ${port}\n`));
}

function send(): void {
  const host = arg('host');
  const port = Number(arg('port'));
  const total = Number(arg('bytes'));
  const maxMs = Number(arg('max-ms', '60000'));
  const stallMs = Number(arg('stall-ms', '10000'));
  const chunk = randomBytes(1024 * 1024);
  let t0 = 0;
  let cpu0: NodeJS.CpuUsage | undefined;
  let s: net.Socket | null = null;
  let finished = false;
  const finish = (r: { error?: string; bytes?: number }): void => {
    if (finished) return;
    finished = true;
    const handed = s ? s.bytesWritten - s.writableLength : 0;
    const ms = Date.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const out = { ok: !r.error && r.bytes === total, ...r, total, handed, ms, cpuUs: cpu.user + cpu.system, localPort: s?.localPort ?? null };
    process.stdout.write(`${JSON.stringify(out)}\n`, () => process.exit(out.ok ? 0 : 1));
    // a failed transfer ends with a reset, so that the sink reports what it got (a plain close
    // would leave the kernel sending the queued bytes, and the sink waiting for them)
    if (r.error) s?.resetAndDestroy();
    else s?.destroy();
  };
  const go = (): void => {
    t0 = Date.now();
    cpu0 = process.cpuUsage();
    const sock = net.connect({ host, port, allowHalfOpen: true });
    s = sock;
    let sent = 0;
    const pump = (): void => {
      // 64 KiB writes: one completes when the kernel took all of it, which is what the stall
      // check below watches (bytesWritten - writableLength)
      while (sent < total) {
        const off = sent % chunk.length;
        const n = Math.min(65536, chunk.length - off, total - sent);
        sent += n;
        if (!sock.write(chunk.subarray(off, off + n))) {
          sock.once('drain', pump);
          return;
        }
      }
      sock.end();
    };
    sock.on('connect', pump);
    let reply = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (reply += d));
    sock.on('end', () => {
      try {
        finish({ bytes: (JSON.parse(reply) as { bytes: number }).bytes });
      } catch {
        finish({ error: `no answer from the sink (${JSON.stringify(reply.slice(0, 100))})` });
      }
    });
    sock.on('error', (e) => finish({ error: e.message }));
    let handed = -1;
    let lastChange = Date.now();
    setInterval(() => {
      const h = sock.bytesWritten - sock.writableLength;
      if (h !== handed) {
        handed = h;
        lastChange = Date.now();
      }
      if (Date.now() - t0 > maxMs) finish({ error: `timed out after ${maxMs} ms` });
      else if (Date.now() - lastChange > stallMs) finish({ error: `stalled: the kernel took no byte for ${stallMs} ms` });
    }, 100).unref();
  };
  process.stdout.write('ready\n');
  let input = '';
  process.stdin.on('data', (d: Buffer) => {
    input += d.toString();
    if (input.includes('go\n') && t0 === 0) go();
  });
}

const mode = process.argv[2];
if (mode === 'sink') sink();
else if (mode === 'send') send();
else {
  process.stderr.write('usage: bulk-peer.js sink --port P | send --host H --port P --bytes N [--max-ms M] [--stall-ms S]\n');
  process.exit(2);
}
