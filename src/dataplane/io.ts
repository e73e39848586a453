import { readFileSync } from 'node:fs';
import { CaptureError } from '../errors';
import type { FrameSink } from './forwarder';

/**
 * A network port the data plane reads frames from and writes frames to. The frame handler
 * is called synchronously with a buffer that the next frame overwrites: use it, don't keep it.
 */
export interface Port extends FrameSink {
  readonly name: string;
  readonly mac: Buffer;
  start(onFrame: (buf: Buffer, len: number) => void): void;
  close(): void;
}

/** The interface's MAC address, read from sysfs. */
export function interfaceMac(name: string): Buffer {
  let text: string;
  try {
    text = readFileSync(`/sys/class/net/${name}/address`, 'utf8').trim();
  } catch {
    throw new CaptureError(`interface "${name}" does not exist (no /sys/class/net/${name})`);
  }
  return Buffer.from(text.split(':').map((h) => parseInt(h, 16)));
}

const SNAPLEN_BUFFER = 65536;

/**
 * A libpcap handle through npm `cap`: kernel BPF filter, immediate mode (needs libpcap-dev's
 * unversioned libpcap.so at run time, or frames arrive late in batches), pcap_sendpacket to send.
 */
export class CapPort implements Port {
  readonly mac: Buffer;
  private readonly cap: any;
  private readonly buffer = Buffer.alloc(SNAPLEN_BUFFER);
  private handler: ((buf: Buffer, len: number) => void) | null = null;
  sendErrors = 0;

  constructor(readonly name: string, readonly filter: string, ringBytes = 16 << 20) {
    this.mac = interfaceMac(name);
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const { Cap } = require('cap');
    this.cap = new Cap();
    try {
      const linkType = this.cap.open(name, filter, ringBytes, this.buffer);
      if (linkType !== 'ETHERNET') throw new CaptureError(`interface "${name}" is ${linkType}, not Ethernet`);
    } catch (e) {
      if (e instanceof CaptureError) throw e;
      throw new CaptureError(`cannot capture on "${name}": ${(e as Error).message} (lbd needs root or CAP_NET_RAW)`);
    }
  }

  start(onFrame: (buf: Buffer, len: number) => void): void {
    this.handler = onFrame;
    const buf = this.buffer;
    this.cap.on('packet', (nbytes: number, truncated: boolean) => {
      // A frame larger than the buffer cannot be forwarded whole: length 0 makes the data
      // plane count it as truncated.
      onFrame(buf, truncated ? 0 : nbytes);
    });
  }

  send(buf: Buffer, len: number): boolean {
    try {
      this.cap.send(buf, len);
      return true;
    } catch {
      this.sendErrors++;
      return false;
    }
  }

  close(): void {
    if (this.handler) this.cap.removeAllListeners('packet');
    this.handler = null;
    try {
      this.cap.close();
    } catch {
      /* already closed */
    }
  }
}

/** An in-memory port for tests: frames are injected by hand and sent frames are kept. */
export class MemoryPort implements Port {
  readonly sent: Buffer[] = [];
  private handler: ((buf: Buffer, len: number) => void) | null = null;
  private readonly buffer = Buffer.alloc(SNAPLEN_BUFFER);
  refuse = false;

  constructor(readonly name: string, readonly mac: Buffer) {}

  start(onFrame: (buf: Buffer, len: number) => void): void {
    this.handler = onFrame;
  }

  /** Delivers a frame as a capture would: copied into the one shared buffer. */
  inject(frame: Uint8Array): void {
    if (!this.handler) throw new Error(`port ${this.name} not started`);
    this.buffer.set(frame);
    this.handler(this.buffer, frame.length);
  }

  send(buf: Buffer, len: number): boolean {
    if (this.refuse) return false;
    this.sent.push(Buffer.from(buf.subarray(0, len)));
    return true;
  }

  close(): void {
    this.handler = null;
  }
}
