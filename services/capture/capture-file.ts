// Streaming reader for pcap and pcapng capture files, plain or gzip-compressed (detected by the
// 1f 8b magic, not by name). One buffer is reused for the whole file, so the steady state does no
// allocation per frame: each frame is handed to a callback as a view into that buffer, valid only
// during the call. Format references: the IETF drafts for pcap (draft-ietf-opsawg-pcap) and
// pcapng (draft-ietf-opsawg-pcapng).
import * as fsp from 'node:fs/promises';
import { ByteSource, FileByteSource, GzipByteSource } from './byte-source';

/**
 * Receives one frame. `buf[offset .. offset + capLen)` is the captured frame (only valid during
 * the call); `origLen` its length on the wire; `linkType` the LINKTYPE_* value of its interface;
 * `interfaceId` the pcapng interface index (0 for pcap).
 */
export type FrameCallback = (
  buf: Buffer, offset: number, capLen: number, origLen: number,
  timestampUs: number, linkType: number, interfaceId: number,
) => void;

/** A capture file that cannot be read at all: missing, unreadable, empty, not a capture, cut early. */
export class CaptureFileError extends Error {
  constructor(readonly path: string, readonly reason: string) {
    super(`${path}: ${reason}`);
    this.name = 'CaptureFileError';
  }
}

/**
 * Problems met after the first good frame: reading stops (or skips the block) and counts them here.
 * - truncated_record: the data ended inside a record/block (a cut capture file)
 * - bad_record_length: a pcap record or pcapng block whose length is impossible; reading stops
 * - unknown_interface: a pcapng packet block naming an interface with no IDB; block skipped
 * - truncated_gzip: the gzip stream was cut or corrupt; reading stops there
 */
export type ReaderDropReason = 'truncated_record' | 'bad_record_length' | 'unknown_interface' | 'truncated_gzip';

export type CaptureFormat = 'pcap' | 'pcapng';

const PCAP_MAGIC_US = 0xa1b2c3d4;
const PCAP_MAGIC_NS = 0xa1b23c4d;
const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const PCAPNG_IDB = 1;
const PCAPNG_PB_OBSOLETE = 2;
const PCAPNG_SPB = 3;
const PCAPNG_EPB = 6;
const OPT_IF_TSRESOL = 9;
const OPT_IF_TSOFFSET = 14;

/** No real capture has a frame this big; a larger length means a corrupt file. */
const MAX_RECORD_BYTES = 16 * 1024 * 1024;
const INITIAL_BUFFER_BYTES = 1024 * 1024;
const TWO_32 = 4294967296;

function u32le(b: Buffer, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0;
}

function u32be(b: Buffer, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

export async function openCaptureFile(path: string): Promise<CaptureFileReader> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(path, 'r');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied'
      : e.code === 'EISDIR' ? 'is a directory' : e.message;
    throw new CaptureFileError(path, `cannot open: ${why}`);
  }
  let source: ByteSource;
  let compressed = false;
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await fh.read(head, 0, 2, 0);
    if (bytesRead === 0) throw new CaptureFileError(path, 'empty file');
    if (bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b) {
      await fh.close();
      source = new GzipByteSource(path);
      compressed = true;
    } else {
      source = new FileByteSource(fh);
    }
  } catch (err) {
    await fh.close().catch(() => undefined);
    if (err instanceof CaptureFileError) throw err;
    throw new CaptureFileError(path, `cannot read: ${(err as Error).message}`);
  }
  const reader = new CaptureFileReader(path, source, compressed);
  try {
    await reader.readHeader();
  } catch (err) {
    await reader.close();
    if (err instanceof CaptureFileError) throw err;
    throw new CaptureFileError(path, `cannot read: ${(err as Error).message}`);
  }
  return reader;
}

export class CaptureFileReader {
  format: CaptureFormat = 'pcap';
  /** Link type of the first interface (pcap: the file's). */
  linkType = -1;
  framesRead = 0;
  readonly drops: Record<ReaderDropReason, number> = {
    truncated_record: 0, bad_record_length: 0, unknown_interface: 0, truncated_gzip: 0,
  };

  private buf = Buffer.allocUnsafe(INITIAL_BUFFER_BYTES);
  private pos = 0;
  private end = 0;
  /** Byte offset in the (decompressed) file of buf[0], for error messages. */
  private base = 0;
  private eof = false;
  private done = false;
  /** Bytes needed from `pos` before parsing can go on. */
  private need = 0;
  private le = true;
  // pcap
  private nanos = false;
  private snaplen = 0;
  // pcapng interfaces of the current section, by index
  private ifLinkType: number[] = [];
  private ifSnaplen: number[] = [];
  private ifUnitsPerUs: number[] = [];
  private ifUnitsPerSec: number[] = [];
  private ifOffsetUs: number[] = [];
  private lastTimestampUs = 0;

  constructor(readonly path: string, private readonly source: ByteSource, readonly compressed: boolean) {}

  private u32(off: number): number {
    return this.le ? this.buf.readUInt32LE(off) : this.buf.readUInt32BE(off);
  }

  private u16(off: number): number {
    return this.le ? this.buf.readUInt16LE(off) : this.buf.readUInt16BE(off);
  }

  private fail(reason: string): never {
    throw new CaptureFileError(this.path, reason);
  }

  /** Makes `n` bytes available from `pos` if the data has them; false at end of data. */
  private async fill(n: number): Promise<boolean> {
    if (this.end - this.pos >= n) return true;
    if (this.pos > 0) {
      this.buf.copy(this.buf, 0, this.pos, this.end);
      this.base += this.pos;
      this.end -= this.pos;
      this.pos = 0;
    }
    if (n > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(n, this.buf.length * 2));
      this.buf.copy(grown, 0, 0, this.end);
      this.buf = grown;
    }
    while (this.end < n && !this.eof) {
      const r = await this.source.read(this.buf, this.end, this.buf.length - this.end);
      if (r === 0) this.eof = true;
      this.end += r;
    }
    return this.end - this.pos >= n;
  }

  /** @internal Reads the file header (pcap) or first section header (pcapng). */
  async readHeader(): Promise<void> {
    await this.fill(24);
    const have = this.end - this.pos;
    if (have === 0) this.fail(this.compressed ? 'empty file (after gzip)' : 'empty file');
    if (have < 4) this.fail(`not a pcap/pcapng file (only ${have} bytes)`);
    const magicBE = this.buf.readUInt32BE(0);
    const magicLE = this.buf.readUInt32LE(0);
    if (magicBE === PCAPNG_SHB) {
      this.format = 'pcapng';
      if (have < 12) this.fail(`truncated pcapng section header (${have} bytes)`);
      const bom = this.buf.readUInt32LE(8);
      if (bom !== PCAPNG_BYTE_ORDER_MAGIC && this.buf.readUInt32BE(8) !== PCAPNG_BYTE_ORDER_MAGIC) {
        this.fail(`not a pcapng file (byte-order magic 0x${bom.toString(16).padStart(8, '0')})`);
      }
      // Read blocks until the first packet block or the end, so that `linkType` is known.
      return;
    }
    if (magicLE === PCAP_MAGIC_US || magicLE === PCAP_MAGIC_NS) this.le = true;
    else if (magicBE === PCAP_MAGIC_US || magicBE === PCAP_MAGIC_NS) this.le = false;
    else {
      const why = this.source.endError ? ` (${this.source.endError})` : '';
      this.fail(`not a pcap/pcapng file (magic 0x${magicBE.toString(16).padStart(8, '0')})${why}`);
    }
    this.nanos = this.u32(0) === PCAP_MAGIC_NS;
    if (have < 24) this.fail(`truncated pcap file header (${have} of 24 bytes)`);
    // Version 2.4 is the only one in use; some writers store it in the other byte order, and
    // readers accept that, so only pre-2 versions (a different record layout) are refused.
    const major = this.u16(4);
    if (major < 2) this.fail(`unsupported pcap version ${major}.${this.u16(6)}`);
    this.snaplen = this.u32(16);
    // The upper bits of the link-type field carry FCS information, not the link type.
    this.linkType = this.u32(20) & 0xffff;
    this.pos = 24;
  }

  /**
   * Reads up to `maxFrames` frames, calling `onFrame` for each synchronously, and resolves with
   * the number read: 0 means the end of the file. Await between calls for back-pressure.
   */
  async readFrames(onFrame: FrameCallback, maxFrames = Number.MAX_SAFE_INTEGER): Promise<number> {
    let n = 0;
    while (n < maxFrames && !this.done) {
      this.need = 0;
      n += this.format === 'pcap' ? this.parsePcap(onFrame, maxFrames - n) : this.parsePcapng(onFrame, maxFrames - n);
      if (this.done || this.need === 0) continue;
      if (!(await this.fill(this.need))) this.endOfData();
    }
    return n;
  }

  /** The data ended with `end - pos` bytes of an incomplete record left. */
  private endOfData(): void {
    this.done = true;
    const left = this.end - this.pos;
    if (this.source.endError) {
      if (this.framesRead === 0) this.fail(`${this.source.endError} at byte ${this.base + this.end}`);
      this.drops.truncated_gzip++;
      return;
    }
    if (left === 0) return;
    if (this.framesRead === 0) this.fail(`truncated record at byte ${this.base + this.pos}`);
    this.drops.truncated_record++;
  }

  /** A length that no valid file has: stop here (a file that never gave a frame is an error). */
  private badLength(what: string, len: number): void {
    if (this.framesRead === 0) this.fail(`bad ${what} length ${len} at byte ${this.base + this.pos}`);
    this.drops.bad_record_length++;
    this.done = true;
  }

  private parsePcap(onFrame: FrameCallback, max: number): number {
    let n = 0;
    const limit = Math.min(MAX_RECORD_BYTES, Math.max(this.snaplen, 262144));
    // Record headers read inline: Buffer#readUInt32LE validates its offset on every call.
    const buf = this.buf, le = this.le, end = this.end, nanos = this.nanos, linkType = this.linkType;
    while (n < max) {
      const p = this.pos;
      if (end - p < 16) { this.need = 16; return n; }
      const sec = le ? u32le(buf, p) : u32be(buf, p);
      const frac = le ? u32le(buf, p + 4) : u32be(buf, p + 4);
      const capLen = le ? u32le(buf, p + 8) : u32be(buf, p + 8);
      const origLen = le ? u32le(buf, p + 12) : u32be(buf, p + 12);
      if (capLen > limit) { this.badLength('pcap record', capLen); return n; }
      if (end - p < 16 + capLen) { this.need = 16 + capLen; return n; }
      const ts = sec * 1e6 + (nanos ? Math.floor(frac / 1000) : frac);
      this.pos = p + 16 + capLen;
      this.framesRead++;
      n++;
      onFrame(buf, p + 16, capLen, origLen, ts, linkType, 0);
    }
    return n;
  }

  private parsePcapng(onFrame: FrameCallback, max: number): number {
    let n = 0;
    while (n < max) {
      const have = this.end - this.pos;
      if (have < 12) { this.need = 12; return n; }
      const p = this.pos;
      const type = this.buf.readUInt32LE(p);
      if (type === PCAPNG_SHB) {
        const bom = this.buf.readUInt32LE(p + 8);
        if (bom === PCAPNG_BYTE_ORDER_MAGIC) this.le = true;
        else if (this.buf.readUInt32BE(p + 8) === PCAPNG_BYTE_ORDER_MAGIC) this.le = false;
        else { this.badLength('pcapng section (byte-order magic)', bom); return n; }
      }
      const len = this.u32(p + 4);
      if (len < 12 || len % 4 !== 0 || len > MAX_RECORD_BYTES) { this.badLength('pcapng block', len); return n; }
      if (have < len) { this.need = len; return n; }
      if (this.u32(p + len - 4) !== len) { this.badLength('pcapng block (trailer)', len); return n; }
      const btype = this.u32(p);
      this.pos = p + len;
      if (btype === PCAPNG_SHB) {
        this.ifLinkType.length = 0;
        this.ifSnaplen.length = 0;
        this.ifUnitsPerUs.length = 0;
        this.ifUnitsPerSec.length = 0;
        this.ifOffsetUs.length = 0;
      } else if (btype === PCAPNG_IDB) {
        if (len < 20) { this.pos = p; this.badLength('pcapng interface block', len); return n; }
        this.addInterface(p, len);
      } else if (btype === PCAPNG_EPB || btype === PCAPNG_PB_OBSOLETE) {
        if (len < 32) { this.pos = p; this.badLength('pcapng packet block', len); return n; }
        const ifId = btype === PCAPNG_EPB ? this.u32(p + 8) : this.u16(p + 8);
        const capLen = this.u32(p + 20);
        const origLen = this.u32(p + 24);
        if (28 + capLen > len - 4) { this.pos = p; this.badLength('pcapng packet (captured)', capLen); return n; }
        if (ifId >= this.ifLinkType.length) { this.drops.unknown_interface++; continue; }
        const ts = this.toMicros(this.u32(p + 12), this.u32(p + 16), ifId);
        this.lastTimestampUs = ts;
        this.framesRead++;
        n++;
        onFrame(this.buf, p + 28, capLen, origLen, ts, this.ifLinkType[ifId], ifId);
      } else if (btype === PCAPNG_SPB) {
        if (this.ifLinkType.length === 0) { this.drops.unknown_interface++; continue; }
        const origLen = this.u32(p + 8);
        const snap = this.ifSnaplen[0];
        let capLen = Math.min(origLen, len - 16);
        if (snap > 0 && capLen > snap) capLen = snap;
        this.framesRead++;
        n++;
        // A simple packet block has no timestamp: it gets the previous packet's time.
        onFrame(this.buf, p + 12, capLen, origLen, this.lastTimestampUs, this.ifLinkType[0], 0);
      }
      // Every other block type (name resolution, statistics, custom, ...) is skipped.
    }
    return n;
  }

  private addInterface(p: number, len: number): void {
    const linkType = this.u16(p + 8);
    const snaplen = this.u32(p + 12);
    let unitsPerSec = 1e6;
    let offsetUs = 0;
    const optEnd = p + len - 4;
    for (let o = p + 16; o + 4 <= optEnd;) {
      const code = this.u16(o);
      const olen = this.u16(o + 2);
      if (code === 0) break;
      if (o + 4 + olen > optEnd) break;
      if (code === OPT_IF_TSRESOL && olen >= 1) {
        const v = this.buf[o + 4];
        unitsPerSec = v & 0x80 ? 2 ** (v & 0x7f) : 10 ** v;
      } else if (code === OPT_IF_TSOFFSET && olen >= 8) {
        // Signed seconds to add to every timestamp of the interface.
        const hi = this.u32(this.le ? o + 8 : o + 4) | 0;
        const lo = this.u32(this.le ? o + 4 : o + 8);
        offsetUs = (hi * TWO_32 + lo) * 1e6;
      }
      o += 4 + ((olen + 3) & ~3);
    }
    if (this.linkType < 0) this.linkType = linkType;
    this.ifLinkType.push(linkType);
    this.ifSnaplen.push(snaplen);
    const perUs = unitsPerSec / 1e6;
    // Integral units per µs (µs, ns, ps): exact integer division. Otherwise the units per second
    // (10^k with k < 6, or 2^k), for which toMicros splits seconds and fraction.
    this.ifUnitsPerUs.push(Number.isInteger(perUs) && perUs < 2097152 ? perUs : 0);
    this.ifUnitsPerSec.push(unitsPerSec);
    this.ifOffsetUs.push(offsetUs);
  }

  /** (high << 32 | low) in the interface's units, to µs, floored, without losing precision. */
  private toMicros(high: number, low: number, ifId: number): number {
    const div = this.ifUnitsPerUs[ifId];
    let us: number;
    if (div === 1) us = high * TWO_32 + low;
    else if (div > 1) {
      // Split the division so every intermediate stays below 2^53.
      const qh = Math.floor(high / div);
      const rh = high - qh * div;
      us = qh * TWO_32 + Math.floor((rh * TWO_32 + low) / div);
    } else {
      // Coarser than µs or a power of two: whole seconds, then the fraction scaled to µs. Exact
      // while the count of units stays below 2^53 (any date for resolutions up to 2^-22 s).
      const perSec = this.ifUnitsPerSec[ifId];
      const total = high * TWO_32 + low;
      const sec = Math.floor(total / perSec);
      us = sec * 1e6 + Math.floor(((total - sec * perSec) * 1e6) / perSec);
    }
    return us + this.ifOffsetUs[ifId];
  }

  async close(): Promise<void> {
    this.done = true;
    await this.source.close();
  }
}
