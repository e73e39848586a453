/**
 * A long-lived HTTP download whose length the caller controls, for drain tests.
 *
 *   node dist/lab/held-download.js --host 10.0.10.100 --port 80 --path /big.bin [--max-ms 60000] [--sha256]
 *
 * Sends one GET, reads the first bytes of the answer, prints `started <status>` and stops reading:
 * the receive window fills, the server blocks in send() and the connection stays ESTABLISHED, on
 * any machine however fast. A line `go` on stdin resumes reading; when the server closes it prints
 * `done <status> <body bytes>` (with --sha256: `done <status> <body bytes> <sha256 of the body>`) and exits 0. A connection error prints `error <message>` and exits 1;
 * no `go` within --max-ms (or no end within --max-ms after it) exits 2, so a forgotten download never outlives its test.
 *
 * Why not `curl --limit-rate`: curl 7.88 lets the first megabytes through at full speed while
 * the socket buffers absorb them, so a "slow" ranged download can finish before the test looks.
 */
import { createHash } from 'node:crypto';
import * as net from 'node:net';

function option(name: string, fallback?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : fallback;
  if (v === undefined) {
    process.stderr.write(`held-download: --${name} is required\n`);
    process.exit(64);
  }
  return v;
}

const host = option('host');
const port = Number(option('port', '80'));
const urlPath = option('path', '/');
const maxMs = Number(option('max-ms', '60000'));
const hash = process.argv.includes('--sha256') ? createHash('sha256') : null;

let status = 0;
let headerText = '';
let headerDone = false;
let bodyBytes = 0;
let started = false;
let released = false;

const bound = (why: string) =>
  setTimeout(() => {
    process.stdout.write(`error ${why}\n`);
    process.exit(2);
  }, maxMs);
let giveUp = bound('no "go" on stdin in time');

const socket = net.connect({ host, port }, () => {
  socket.write(`GET ${urlPath} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
});

socket.on('data', (chunk: Buffer) => {
  if (!headerDone) {
    headerText += chunk.toString('latin1');
    const end = headerText.indexOf('\r\n\r\n');
    if (end < 0) return;
    headerDone = true;
    status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(headerText)?.[1] ?? 0);
    bodyBytes = Buffer.byteLength(headerText, 'latin1') - (end + 4);
    hash?.update(chunk.subarray(chunk.length - bodyBytes));
  } else {
    bodyBytes += chunk.length;
    hash?.update(chunk);
  }
  if (!started) {
    started = true;
    if (!released) socket.pause();
    process.stdout.write(`started ${status}\n`);
  }
});

socket.on('end', () => {
  clearTimeout(giveUp);
  process.stdout.write(`done ${status} ${bodyBytes}${hash ? ` ${hash.digest('hex')}` : ''}\n`);
  process.exit(0);
});

socket.on('error', (err) => {
  process.stdout.write(`error ${err.message}\n`);
  process.exit(1);
});

let input = '';
process.stdin.on('data', (d: Buffer) => {
  input += d.toString();
  if (released || !/^go$/m.test(input)) return;
  released = true;
  clearTimeout(giveUp);
  giveUp = bound('download not finished in time after "go"');
  if (started) socket.resume();
});
