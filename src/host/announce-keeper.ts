/**
 * The announce keeper: a process of its own that holds lbd's announce interface (a TAP, given
 * to it as file descriptor 3) while lbd is alive and well, so that the VIP routes through that
 * interface, which the routing daemon announces, die with lbd however it fails:
 *
 * - lbd ends (a crash, SIGKILL, an exit): its end of the pipe on our stdin closes, we exit at
 *   once, the kernel deletes the interface (nobody else holds it) and every route through it;
 * - lbd hangs (its event loop stalled, or the process stopped by SIGSTOP, which a thread inside
 *   lbd could not see from within): its heartbeat lines stop, and after `hangTimeoutMs` we exit
 *   (a frozen cgroup freezes us too, when we are in it: a service manager's business);
 * - lbd stops for a restart: it writes "hold <ms>" first, and we keep the interface that long
 *   after it is gone, for the next lbd to attach a queue of its own (a multi-queue TAP lives
 *   while any queue is held), so that a quick restart never withdraws the VIPs.
 *
 * Usage: node announce-keeper.js HANG_TIMEOUT_MS, with the TAP on fd 3 and lbd's pipe on stdin.
 * It reads nothing else, writes nothing, and needs nothing but its inherited descriptor. The
 * pipe alone governs it: termination signals (a service manager stopping lbd's whole group, a
 * terminal) are ignored, so that lbd decides between withdrawing and holding.
 */
const hangMs = Number(process.argv[2]);
if (!Number.isFinite(hangMs) || hangMs <= 0) {
  process.stderr.write('usage: announce-keeper HANG_TIMEOUT_MS (the TAP on fd 3, heartbeats on stdin)\n');
  process.exit(2);
}

const letGo = (): never => process.exit(0);
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => {});
let holdMs = 0;
let partial = '';
let heard = false;
// The timer may come due with heartbeats already waiting unread (this process itself was not
// scheduled for a while): look at the pipe once more before letting go.
const hang = setTimeout(function expired() {
  heard = false;
  setImmediate(() => (heard ? hang.refresh() : letGo()));
}, hangMs);

process.stdin.on('data', (chunk: Buffer) => {
  heard = true;
  hang.refresh();
  const lines = (partial + chunk.toString('latin1')).split('\n');
  partial = lines.pop() ?? '';
  for (const line of lines) {
    const m = /^hold (\d+)$/.exec(line);
    if (m) holdMs = Number(m[1]);
  }
});
process.stdin.on('end', () => {
  clearTimeout(hang);
  if (holdMs > 0) setTimeout(letGo, holdMs);
  else letGo();
});
process.stdin.on('error', letGo);
