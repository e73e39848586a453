/**
 * Tiny UDP echo server (and client) for the lab's real servers.
 *
 *   node dist/lab/udp-echo.js serve --bind 10.0.10.100 --port 5353 --name server40
 *       Binds to the given address (the VIP, NOT 0.0.0.0, so that replies leave with source = VIP,
 *       as DSR requires) and answers every datagram with `<name>:` + payload.
 *       Prints "listening <addr>:<port>" once bound; exits 0 on SIGTERM/SIGINT.
 *
 *   node dist/lab/udp-echo.js send --host 10.0.10.100 --port 5353 [--message hi] [--timeout 2000]
 *       [--count 1] [--bind ADDR]
 *       Sends the message (count times, one after the other, waiting for each reply) and prints
 *       each reply as `<reply text>\t<reply source addr>:<port>` on its own line. Exits 1 on a
 *       timeout.
 *
 *   node dist/lab/udp-echo.js stream --host 10.0.10.100 --port 5353 [--rate 1000] [--seconds 5]
 *       Sends one numbered datagram every 1/rate s for the given time (bounded: at most 60 s; a
 *       SIGINT or SIGTERM ends it early), waits 500 ms for late replies, then prints one JSON line
 *       {"sentAt":[ms…],"answeredAt":[ms|null…]}
 *       (epoch milliseconds, sub-millisecond): which datagrams came back and when. The restart
 *       benchmark measures lbd's forwarding gap with it.
 *
 * Runs inside a lab namespace via `ip netns exec`; it knows nothing about namespaces itself.
 */
import * as dgram from 'node:dgram';

function parseArgs(argv: string[]): { mode: string; opts: Map<string, string> } {
  const mode = argv[0] ?? '';
  const opts = new Map<string, string>();
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`missing value for ${a}`);
    opts.set(a.slice(2), v);
    i++;
  }
  return { mode, opts };
}

function req(opts: Map<string, string>, k: string): string {
  const v = opts.get(k);
  if (v === undefined) throw new Error(`--${k} is required`);
  return v;
}

function port(s: string): number {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`bad port ${s}`);
  return n;
}

function serve(opts: Map<string, string>): void {
  const bind = req(opts, 'bind');
  const p = port(opts.get('port') ?? '5353');
  const prefix = Buffer.from(`${req(opts, 'name')}:`);
  // A receive buffer as large as the host allows: a burst of frames from the balancer (one that
  // sat in lbd's ring while its event loop was busy) arrives within microseconds, and frames sent
  // from an AF_PACKET socket reach a veth peer with their sender's buffer size charged to this
  // socket, so the default buffer (208 KiB) held only a few of them and the rest were lost here.
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true, recvBufferSize: 4 * 1024 * 1024 });
  sock.on('error', (e) => {
    process.stderr.write(`udp-echo: ${e.message}\n`);
    process.exit(1);
  });
  sock.on('message', (msg, rinfo) => {
    sock.send(Buffer.concat([prefix, msg]), rinfo.port, rinfo.address);
  });
  sock.bind(p, bind, () => {
    const a = sock.address();
    process.stdout.write(`listening ${a.address}:${a.port}\n`);
  });
  const stop = (): void => {
    sock.close(() => process.exit(0));
    setTimeout(() => process.exit(0), 500).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

function send(opts: Map<string, string>): void {
  const host = req(opts, 'host');
  const p = port(opts.get('port') ?? '5353');
  const message = Buffer.from(opts.get('message') ?? 'ping');
  const timeoutMs = Number(opts.get('timeout') ?? '2000');
  let remaining = Number(opts.get('count') ?? '1');
  const sock = dgram.createSocket('udp4');
  let timer: NodeJS.Timeout | undefined;
  const fire = (): void => {
    timer = setTimeout(() => {
      process.stderr.write(`udp-echo: no reply from ${host}:${p} within ${timeoutMs} ms\n`);
      process.exit(1);
    }, timeoutMs);
    sock.send(message, p, host);
  };
  sock.on('error', (e) => {
    process.stderr.write(`udp-echo: ${e.message}\n`);
    process.exit(1);
  });
  sock.on('message', (msg, rinfo) => {
    if (timer) clearTimeout(timer);
    process.stdout.write(`${msg.toString()}\t${rinfo.address}:${rinfo.port}\n`);
    if (--remaining > 0) fire();
    else sock.close();
  });
  const bind = opts.get('bind');
  if (bind) sock.bind(0, bind, fire);
  else fire();
}

function stream(opts: Map<string, string>): void {
  const host = req(opts, 'host');
  const p = port(opts.get('port') ?? '5353');
  const rate = Math.min(10000, Math.max(1, Number(opts.get('rate') ?? '1000')));
  const seconds = Math.min(60, Math.max(0.1, Number(opts.get('seconds') ?? '5')));
  const total = Math.round(rate * seconds);
  const now = () => performance.timeOrigin + performance.now();
  const sentAt: number[] = [];
  const answeredAt: (number | null)[] = new Array<number | null>(total).fill(null);
  // A large receive buffer, as the echo servers have: on a busy machine this process reads late,
  // and its own socket must not be where replies are lost.
  const sock = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 * 1024 * 1024 });
  sock.on('error', (e) => {
    process.stderr.write(`udp-echo: ${e.message}\n`);
    process.exit(1);
  });
  sock.on('message', (msg) => {
    // `<name>:` then the 4-byte sequence number sent.
    const at = msg.indexOf(0x3a);
    if (at < 0 || msg.length < at + 5) return;
    const seq = msg.readUInt32BE(at + 1);
    if (seq < total && answeredAt[seq] === null) answeredAt[seq] = now();
  });
  // The number to send: all of them, or those sent so far once told to stop (the caller ends the
  // stream when what it measures is over).
  let end = total;
  const stop = (): void => {
    end = Math.min(end, sentAt.length);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  const t0 = now();
  const tick = (): void => {
    // Catch up on the schedule (timers are coarse): every datagram due by now goes out.
    while (sentAt.length < end && now() - t0 >= (sentAt.length * 1000) / rate) {
      const payload = Buffer.alloc(4); // its own: send() may still hold the last one
      payload.writeUInt32BE(sentAt.length, 0);
      sentAt.push(now());
      sock.send(payload, p, host);
    }
    if (sentAt.length < end) setTimeout(tick, 1);
    else
      setTimeout(() => {
        process.stdout.write(`${JSON.stringify({ sentAt, answeredAt: answeredAt.slice(0, sentAt.length) })}\n`);
        sock.close();
        process.removeListener('SIGINT', stop);
        process.removeListener('SIGTERM', stop);
      }, 500);
  };
  tick();
}

function main(): void {
  try {
    const { mode, opts } = parseArgs(process.argv.slice(2));
    if (mode === 'serve') serve(opts);
    else if (mode === 'send') send(opts);
    else if (mode === 'stream') stream(opts);
    else throw new Error('usage: udp-echo.js serve|send|stream --option value …');
  } catch (e) {
    process.stderr.write(`udp-echo: ${(e as Error).message}\n`);
    process.exit(2);
  }
}

main();
