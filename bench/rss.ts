/**
 * node dist/bench/rss.js [--flows 1048576] [--table 1048576] [--path native|ts]
 *
 * Memory with a full connection table: a Forwarder with connection_table.size = --table (the
 * daemon's default, 1048576), one rr service with two real servers, then --flows SYNs of
 * distinct flows (source 198.18.0.0/15 + port, as bench/gen does) through the native
 * processFrames (default) or the TypeScript Forwarder.process(). Prints one JSON line: RSS
 * (and heap, external, array buffers) before the Forwarder, after it is built, and after the
 * flows are in, plus the number of connections in the table. No network, no root.
 */
import { Forwarder } from '../src/dataplane/forwarder';
import { NativeDataplane } from '../src/dataplane/native';
import { ipToInt, macFromString } from '../src/dataplane/packet';
import { VirtualService } from '../src/dataplane/services';
import { createScheduler } from '../src/scheduler/index';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : def;
}

const FLOWS = Number(arg('flows', '1048576'));
const TABLE = Number(arg('table', '1048576'));
const PATH = arg('path', 'native');
const LB_MAC = '02:00:00:00:00:30';
const CLIENT_MAC = '02:00:00:00:00:50';
const VIP = '10.0.10.100';

function mem(): Record<string, number> {
  const m = process.memoryUsage();
  const mb = (n: number): number => Math.round((n / 1048576) * 10) / 10;
  return { rssMB: mb(m.rss), heapUsedMB: mb(m.heapUsed), externalMB: mb(m.external), arrayBuffersMB: mb(m.arrayBuffers) };
}

/** A 54-byte Ethernet/IPv4/TCP SYN (checksums are not checked by the balancer). */
function syn(buf: Uint8Array, off: number, flow: number): void {
  const b = buf.subarray(off, off + 54);
  b.fill(0);
  macFromString(LB_MAC).forEach((v, i) => (b[i] = v));
  macFromString(CLIENT_MAC).forEach((v, i) => (b[6 + i] = v));
  b[12] = 0x08;
  b[14] = 0x45;
  b[17] = 40; // total length
  b[22] = 64; // ttl
  b[23] = 6; // tcp
  const src = (ipToInt('198.18.0.0') + Math.floor(flow / 64000)) >>> 0;
  b[26] = src >>> 24;
  b[27] = (src >>> 16) & 255;
  b[28] = (src >>> 8) & 255;
  b[29] = src & 255;
  const dst = ipToInt(VIP);
  b[30] = dst >>> 24;
  b[31] = (dst >>> 16) & 255;
  b[32] = (dst >>> 8) & 255;
  b[33] = dst & 255;
  const sport = 1024 + (flow % 64000);
  b[34] = sport >> 8;
  b[35] = sport & 255;
  b[37] = 80;
  b[38] = 1; // seq
  b[46] = 0x50; // data offset 5
  b[47] = 0x02; // SYN
  b[48] = 0xff;
  b[49] = 0xff; // window
}

function main(): void {
  const before = mem();
  let sent = 0;
  const fw = new Forwarder({
    connTableSize: TABLE,
    timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
    captureMac: macFromString(LB_MAC),
    egressMac: macFromString(LB_MAC),
    egress: { send: () => (sent++, true) }, // the TypeScript path's sends
  });
  const svc = new VirtualService(0, 'web', ipToInt(VIP), 80, 6, createScheduler('rr'), 0, ipToInt('255.255.255.255'));
  for (const [i, a] of ['10.0.10.40', '10.0.10.111'].entries()) {
    const rs = fw.dests.add(svc, ipToInt(a), 80, 1);
    fw.dests.setMac(rs.index, macFromString(`02:00:00:00:0${i}:40`));
    svc.dests.push(rs);
    svc.reals.push(rs);
  }
  svc.changed();
  fw.services.add(svc);
  const dp = PATH === 'native' ? new NativeDataplane(fw) : null;
  const built = mem();

  const CHUNK = 4096;
  const frames = new Uint8Array(CHUNK * 54);
  const lengths = new Uint32Array(CHUNK).fill(54);
  const t0 = process.hrtime.bigint();
  for (let f = 0; f < FLOWS; f += CHUNK) {
    const n = Math.min(CHUNK, FLOWS - f);
    for (let i = 0; i < n; i++) syn(frames, i * 54, f + i);
    if (dp) {
      const r = dp.processFrames(frames.subarray(0, n * 54), lengths.subarray(0, n), { collect: false });
      for (let i = 0; i < n; i++) if (r.verdicts[i] === 0) sent++; // Verdict.Forward
    } else {
      const buf = Buffer.from(frames.buffer, frames.byteOffset, n * 54);
      for (let i = 0; i < n; i++) {
        const one = Buffer.from(buf.subarray(i * 54, i * 54 + 54));
        fw.process(one, 54);
      }
    }
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const conns = fw.conns.size;
  const filled = mem();
  (globalThis as { gc?: () => void }).gc?.();
  process.stdout.write(
    JSON.stringify({
      path: PATH,
      table: TABLE,
      flows: FLOWS,
      forwarded: sent,
      connsInTable: conns,
      ms: Math.round(ms),
      before,
      built,
      filled,
      afterGc: mem(),
    }) + '\n',
  );
  dp?.close();
}

main();
