import { writeFileSync } from 'node:fs';

// pcap-parser ships no types.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const pcapp = require('pcap-parser');

/** Reads every frame of a pcap file with npm pcap-parser. */
export function readPcap(file: string): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const frames: Buffer[] = [];
    const parser = pcapp.parse(file);
    parser.on('packet', (p: { data: Buffer }) => frames.push(Buffer.from(p.data)));
    parser.on('end', () => resolve(frames));
    parser.on('error', reject);
  });
}

/** Writes frames as a classic pcap file (Ethernet link type). */
export function writePcap(file: string, frames: Buffer[]): void {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(65535, 16);
  header.writeUInt32LE(1, 20);
  const parts: Buffer[] = [header];
  frames.forEach((f, i) => {
    const rec = Buffer.alloc(16);
    rec.writeUInt32LE(1764000000 + i, 0);
    rec.writeUInt32LE(f.length, 8);
    rec.writeUInt32LE(f.length, 12);
    parts.push(rec, f);
  });
  writeFileSync(file, Buffer.concat(parts));
}
