// Rough frames/s from memory, one core: the TypeScript Forwarder.process() (one frame at a time,
// copied into one buffer as libpcap does) against the addon's processFrames() (collect: false).
// Not a test and not the benchmark of issue 4 (bench/): a quick ratio of the per-frame work.
// Run after npm run build and npm run build:native:  node native/bench-memory.js
const root = require('path').resolve(__dirname, '..', 'dist');
const { Forwarder } = require(root + '/src/dataplane/forwarder');
const { NativeDataplane } = require(root + '/src/dataplane/native');
const { VirtualService } = require(root + '/src/dataplane/services');
const { createScheduler } = require(root + '/src/scheduler/index');
const { ipToInt, macFromString } = require(root + '/src/dataplane/packet');
const { frame, MAC, SYN, ACK, PSH } = require(root + '/test/helpers/frames');

function fw() {
  const f = new Forwarder({ connTableSize: 1 << 20, timeouts: { tcp: 900, tcpfin: 120, udp: 300 },
    captureMac: macFromString(MAC.balancer), egressMac: macFromString('02:00:00:00:0e:01'), egress: { send: () => true } });
  const svc = new VirtualService(0, 'web', ipToInt('10.0.10.100'), 80, 6, createScheduler(process.env.SCHED || 'wlc'), 0, 0xffffffff);
  for (const [a, m] of [['10.0.10.40', MAC.rs40], ['10.0.10.111', MAC.rs111]]) {
    const rs = f.dests.add(svc, ipToInt(a), 80, 1); f.dests.setMac(rs.index, macFromString(m)); svc.dests.push(rs); svc.reals.push(rs);
  }
  svc.changed(); f.services.add(svc); return f;
}
const N = 200000;
function frames(kind) {
  const out = [];
  for (let i = 0; i < N; i++) {
    if (kind === 'syn') out.push(frame({ flags: SYN, src: `10.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, sport: 1024 + (i % 60000) }));
    else out.push(frame({ flags: ACK | PSH, src: '10.1.0.' + (1 + (i % 250)), sport: 2000 + (i % 4), payload: Buffer.alloc(32) }));
  }
  return out;
}
function setup(f, kind) { // steady: open the 1000 flows first
  if (kind !== 'steady') return;
  for (let i = 0; i < 1000; i++) { const s = frame({ flags: SYN, src: '10.1.0.' + (1 + (i % 250)), sport: 2000 + Math.floor(i / 250) }); f.process(s, s.length); }
}
for (const kind of ['steady', 'syn']) {
  const fs = frames(kind);
  const lens = Uint32Array.from(fs.map((x) => x.length));
  const tmpl = Buffer.concat(fs);
  let best = { ts: 0, nat: 0 };
  for (let rep = 0; rep < 5; rep++) {
    { const f = fw(); setup(f, kind); const buf = Buffer.alloc(2048); const t0 = process.hrtime.bigint();
      for (const x of fs) { buf.set(x); f.process(buf, x.length); }
      const dt = Number(process.hrtime.bigint() - t0) / 1e9; best.ts = Math.max(best.ts, N / dt);
      if (f.counters[2] !== N + (kind === 'steady' ? 1000 : 0)) throw new Error('ts forwarded ' + f.counters[2]); }
    { const f = fw(); setup(f, kind); const dp = new NativeDataplane(f); const work = Buffer.from(tmpl); const t0 = process.hrtime.bigint();
      dp.processFrames(work, lens, { collect: false });
      const dt = Number(process.hrtime.bigint() - t0) / 1e9; best.nat = Math.max(best.nat, N / dt);
      if (f.counters[2] !== N + (kind === 'steady' ? 1000 : 0)) throw new Error('native forwarded ' + f.counters[2]); }
  }
  console.log(`${kind.padEnd(7)} TS ${(best.ts / 1e6).toFixed(2)} Mframes/s  native ${(best.nat / 1e6).toFixed(2)} Mframes/s  ratio ${(best.nat / best.ts).toFixed(1)}x`);
}
