import { readFileSync } from 'node:fs';
import { CaptureError } from '../errors';
import { type AddonCapture, type CaptureStats, requireBinding } from './binding';
import type { FrameSink } from './forwarder';
import { MAX_FRAME, VNET_HDR_LEN } from './segment';

/**
 * A frame handler: `vnet`, when the port's capture has one (PACKET_VNET_HDR), is the frame's
 * struct virtio_net_hdr (all zeros for an ordinary frame), overwritten like the buffer.
 */
export type FrameHandler = (buf: Buffer, len: number, vnet?: Uint8Array) => void;

/**
 * A network port the data plane reads frames from and writes frames to. The frame handler
 * is called synchronously with a buffer that the next frame overwrites: use it, don't keep it.
 */
export interface Port extends FrameSink {
  readonly name: string;
  readonly mac: Buffer;
  start(onFrame: FrameHandler): void;
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

/** A whole 64 KiB super-frame (GSO/GRO) and a VLAN tag the capture puts back. */
const SNAPLEN_BUFFER = MAX_FRAME;

/**
 * A capture port through the native binding's Capture (native/src/capture.cc): an AF_PACKET
 * TPACKET_V2 ring on the interface with the libpcap-compiled BPF filter, read as the event loop
 * runs (uv_poll). Frames come one synchronous call each, copied into the port's one buffer as
 * libpcap hands them out (length 0 for a frame the capture cut short); send() puts one frame on
 * the interface through its qdisc, as pcap_sendpacket did. Nothing is allocated per frame.
 * The TypeScript data path's port; also the egress ARP and local-access ports of the native path,
 * the VIP prober's and doctor's. With PACKET_VNET_HDR (open() says `vnet`), each frame comes with
 * its virtio_net_hdr (super-frames up to 64 KiB, partial checksums) and send() takes one: `vnet`
 * tells the Forwarder that super-frames may leave whole.
 */
export class RingPort implements Port {
  readonly mac: Buffer;
  private readonly cap: AddonCapture;
  private readonly buffer = Buffer.alloc(SNAPLEN_BUFFER);
  /** The current frame's virtio_net_hdr (zeros for an ordinary frame or without PACKET_VNET_HDR). */
  private readonly vnetHdr = new Uint8Array(VNET_HDR_LEN);
  /** The capture and send sockets carry a virtio_net_hdr (PACKET_VNET_HDR). */
  readonly vnet: boolean;
  private closed = false;
  sendErrors = 0;

  constructor(
    readonly name: string,
    readonly filter: string,
    ringBytes = 16 << 20,
  ) {
    this.cap = new (requireBinding().Capture)();
    try {
      const opened = this.cap.open(name, filter, ringBytes);
      this.mac = opened.mac;
      this.vnet = opened.vnet === true;
    } catch (e) {
      throw new CaptureError(`cannot capture on "${name}": ${(e as Error).message.replace(/^lbd_native: /, '')}`);
    }
  }

  start(onFrame: FrameHandler): void {
    const buf = this.buffer;
    const vnet = this.vnetHdr;
    if (this.vnet) this.cap.start(buf, (len) => onFrame(buf, len, vnet), vnet);
    else this.cap.start(buf, (len) => onFrame(buf, len));
  }

  send(buf: Buffer, len: number, vnet?: Uint8Array): boolean {
    if (!this.closed && this.cap.send(buf, len, vnet)) return true;
    this.sendErrors++;
    return false;
  }

  setFilter(filter: string): void {
    this.cap.setFilter(filter);
  }

  stats(): CaptureStats {
    return this.cap.stats();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.cap.close();
  }
}

/** An in-memory port for tests: frames are injected by hand and sent frames are kept. */
export class MemoryPort implements Port {
  readonly sent: Buffer[] = [];
  private handler: FrameHandler | null = null;
  private readonly buffer = Buffer.alloc(SNAPLEN_BUFFER);
  refuse = false;

  constructor(
    readonly name: string,
    readonly mac: Buffer,
  ) {}

  start(onFrame: FrameHandler): void {
    this.handler = onFrame;
  }

  /** Delivers a frame as a capture would: copied into the one shared buffer (with its virtio_net_hdr, if given). */
  inject(frame: Uint8Array, vnet?: Uint8Array): void {
    if (!this.handler) throw new Error(`port ${this.name} not started`);
    this.buffer.set(frame);
    this.handler(this.buffer, frame.length, vnet);
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
