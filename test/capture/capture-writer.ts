// Writes pcap and pcapng files in the variants the corpus lacks (big-endian, nanosecond, several
// interfaces, odd link types, unknown blocks), so the reader can be checked against tshark on them.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openCaptureFile } from '../../services/capture/capture-file';

export interface Frame {
  data: Buffer;
  origLen: number;
  timestampUs: number;
  linkType: number;
}

/** All frames of a capture, copied out of the reader's buffer. */
export async function readAllFrames(file: string): Promise<Frame[]> {
  const reader = await openCaptureFile(file);
  const frames: Frame[] = [];
  try {
    while (await reader.readFrames((buf, off, cap, orig, ts, lt) => {
      frames.push({ data: Buffer.from(buf.subarray(off, off + cap)), origLen: orig, timestampUs: ts, linkType: lt });
    }, 1000) > 0);
  } finally {
    await reader.close();
  }
  return frames;
}

const tmpDirs: string[] = [];
process.on('exit', () => { for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true }); });

/** A path in a fresh temporary directory, removed when the test process exits. */
export function tmpFile(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-capture-'));
  tmpDirs.push(dir);
  return path.join(dir, name);
}

function u32(v: number, le: boolean): Buffer {
  const b = Buffer.alloc(4);
  if (le) b.writeUInt32LE(v >>> 0); else b.writeUInt32BE(v >>> 0);
  return b;
}

function u16(v: number, le: boolean): Buffer {
  const b = Buffer.alloc(2);
  if (le) b.writeUInt16LE(v); else b.writeUInt16BE(v);
  return b;
}

/** A classic pcap file: `le` byte order, µs or ns timestamps. */
export function pcapFile(frames: Frame[], linkType: number, le: boolean, nanos: boolean): Buffer {
  const parts: Buffer[] = [
    u32(nanos ? 0xa1b23c4d : 0xa1b2c3d4, le), u16(2, le), u16(4, le), u32(0, le), u32(0, le),
    u32(262144, le), u32(linkType, le),
  ];
  for (const f of frames) {
    const sec = Math.floor(f.timestampUs / 1e6);
    const us = f.timestampUs - sec * 1e6;
    parts.push(u32(sec, le), u32(nanos ? us * 1000 + 789 : us, le), u32(f.data.length, le), u32(f.origLen, le), f.data);
  }
  return Buffer.concat(parts);
}

export interface NgInterface {
  linkType: number;
  /** if_tsresol byte (6: µs, 9: ns, 0x80|k: 2^-k); undefined: no option (µs). */
  tsresol?: number;
}

function block(type: number, body: Buffer, le: boolean): Buffer {
  const pad = (4 - (body.length % 4)) % 4;
  const len = 12 + body.length + pad;
  return Buffer.concat([u32(type, le), u32(len, le), body, Buffer.alloc(pad), u32(len, le)]);
}

/**
 * A pcapng file: one section in `le` byte order with the given interfaces; frame k goes to
 * interface `ifOf(k)`. An unknown block type and a name-resolution block are put in between,
 * and `spbEvery` > 0 writes every n-th frame of interface 0 as a simple packet block.
 */
export function pcapngFile(frames: Frame[], ifaces: NgInterface[], ifOf: (k: number) => number, le: boolean,
  spbEvery = 0): Buffer {
  const parts: Buffer[] = [];
  parts.push(block(0x0a0d0d0a, Buffer.concat([u32(0x1a2b3c4d, le), u16(1, le), u16(0, le), u32(0xffffffff, le), u32(0xffffffff, le)]), le));
  parts.push(block(0x0bad0001, Buffer.from('unknown block, to be skipped'), le));
  for (const itf of ifaces) {
    const opts: Buffer[] = [];
    if (itf.tsresol !== undefined) opts.push(u16(9, le), u16(1, le), Buffer.from([itf.tsresol, 0, 0, 0]));
    opts.push(u16(2, le), u16(4, le), Buffer.from('eth0'), u16(0, le), u16(0, le));
    parts.push(block(1, Buffer.concat([u16(itf.linkType, le), u16(0, le), u32(0, le), ...opts]), le));
  }
  parts.push(block(4, Buffer.concat([u16(0, le), u16(0, le)]), le)); // empty name resolution block
  frames.forEach((f, k) => {
    const ifId = ifOf(k);
    if (spbEvery > 0 && ifId === 0 && k > 0 && k % spbEvery === 0 && f.data.length === f.origLen) {
      parts.push(block(3, Buffer.concat([u32(f.origLen, le), f.data]), le));
      return;
    }
    const res = ifaces[ifId].tsresol ?? 6;
    const units = res & 0x80 ? 2 ** (res & 0x7f) : 10 ** res;
    // Exact: µs * units / 1e6 with BigInt (units are 10^k or 2^k).
    const t = (BigInt(f.timestampUs) * BigInt(units)) / 1000000n;
    const high = Number(t >> 32n), low = Number(t & 0xffffffffn);
    parts.push(block(6, Buffer.concat([u32(ifId, le), u32(high, le), u32(low, le), u32(f.data.length, le),
      u32(f.origLen, le), f.data, Buffer.alloc((4 - (f.data.length % 4)) % 4)]), le));
  });
  return Buffer.concat(parts);
}
