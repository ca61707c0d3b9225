// The collector sink's on-disk spool: every frame is appended here before it is sent and stays
// until the collector acknowledges it, so frames survive a collector outage and the sender's
// own restarts (at-least-once). Segment files hold whole frames back to back; `acked` holds the
// highest acknowledged sequence number; `epoch` names this spool's sequence space, so a
// collector never mistakes a new spool's frames for duplicates of an old one's.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { HEADER_BYTES, readHeader } from './frame';

interface Segment {
  file: string;
  fd: number;
  bytes: number;
  /** Highest sequence number in the segment. */
  lastSeq: number;
}

interface Entry {
  seq: number;
  segment: Segment;
  offset: number;
  length: number;
  records: number;
}

export class Spool {
  readonly epoch: number;
  private acked = 0;
  private nextSeqValue = 1;
  private readonly segments: Segment[] = [];
  /** Frames not yet acknowledged, in sequence order. */
  private readonly entries: Entry[] = [];
  private bytesValue = 0;
  /** Bytes cut from the end of a segment at load (a frame half-written when the process died). */
  readonly truncatedAtLoad: number = 0;

  constructor(readonly dir: string, readonly maxBytes: number, readonly segmentBytes = Math.min(4 << 20, Math.max(64 << 10, maxBytes >> 3))) {
    fs.mkdirSync(dir, { recursive: true });
    const epochFile = path.join(dir, 'epoch');
    if (fs.existsSync(epochFile)) {
      this.epoch = Number(fs.readFileSync(epochFile, 'utf8')) >>> 0;
    } else {
      this.epoch = crypto.randomBytes(4).readUInt32BE(0) || 1;
      writeAtomic(epochFile, String(this.epoch));
    }
    const ackedFile = path.join(dir, 'acked');
    if (fs.existsSync(ackedFile)) this.acked = Number(fs.readFileSync(ackedFile, 'utf8')) || 0;
    this.nextSeqValue = this.acked + 1;
    let truncated = 0;
    for (const name of fs.readdirSync(dir).filter((n) => n.startsWith('seg-')).sort()) {
      truncated += this.loadSegment(path.join(dir, name));
    }
    this.truncatedAtLoad = truncated;
    this.dropAckedSegments();
  }

  /** Reads a segment's frames into the index; cuts a partial frame at its end. */
  private loadSegment(file: string): number {
    const data = fs.readFileSync(file);
    const fd = fs.openSync(file, 'r+');
    const segment: Segment = { file, fd, bytes: 0, lastSeq: 0 };
    let p = 0;
    while (p + HEADER_BYTES <= data.length) {
      const h = readHeader(data, p);
      if (h.frameSize < HEADER_BYTES || p + h.frameSize > data.length) break;
      if (h.seq > this.acked) this.entries.push({ seq: h.seq, segment, offset: p, length: h.frameSize, records: h.recordCount });
      segment.lastSeq = Math.max(segment.lastSeq, h.seq);
      this.nextSeqValue = Math.max(this.nextSeqValue, h.seq + 1);
      p += h.frameSize;
    }
    if (p < data.length) fs.ftruncateSync(fd, p);
    segment.bytes = p;
    this.bytesValue += p;
    this.segments.push(segment);
    return data.length - p;
  }

  get nextSeq(): number {
    return this.nextSeqValue;
  }

  /** Bytes on disk. */
  get bytes(): number {
    return this.bytesValue;
  }

  /** Frames waiting for an acknowledgement. */
  get pendingFrames(): number {
    return this.entries.length;
  }

  get pendingRecords(): number {
    let n = 0;
    for (const e of this.entries) n += e.records;
    return n;
  }

  /**
   * Appends a frame built for the next sequence number. Returns false, writing nothing, when
   * the spool would grow past its bound.
   */
  append(build: (seq: number) => Buffer, records: number): boolean {
    const frame = build(this.nextSeqValue);
    if (this.bytesValue + frame.length > this.maxBytes) return false;
    let segment = this.segments[this.segments.length - 1];
    if (!segment || segment.bytes >= this.segmentBytes) {
      const file = path.join(this.dir, `seg-${String(this.nextSeqValue).padStart(16, '0')}.spool`);
      segment = { file, fd: fs.openSync(file, 'w+'), bytes: 0, lastSeq: 0 };
      this.segments.push(segment);
    }
    fs.writeSync(segment.fd, frame, 0, frame.length, segment.bytes);
    this.entries.push({ seq: this.nextSeqValue, segment, offset: segment.bytes, length: frame.length, records });
    segment.bytes += frame.length;
    segment.lastSeq = this.nextSeqValue;
    this.bytesValue += frame.length;
    this.nextSeqValue++;
    return true;
  }

  /** The i-th unacknowledged frame, read back from disk (the page cache, usually). */
  frame(i: number): { seq: number; data: Buffer } | undefined {
    const e = this.entries[i];
    if (!e) return undefined;
    const data = Buffer.allocUnsafe(e.length);
    fs.readSync(e.segment.fd, data, 0, e.length, e.offset);
    return { seq: e.seq, data };
  }

  /** Every frame up to `seq` is stored by the collector: forget them. */
  ack(seq: number): { frames: number; records: number; bytes: number } {
    const done = { frames: 0, records: 0, bytes: 0 };
    if (seq <= this.acked) return done;
    this.acked = Math.min(seq, this.nextSeqValue - 1);
    while (done.frames < this.entries.length && this.entries[done.frames].seq <= this.acked) {
      const e = this.entries[done.frames++];
      done.records += e.records;
      done.bytes += e.length;
    }
    this.entries.splice(0, done.frames);
    writeAtomic(path.join(this.dir, 'acked'), String(this.acked));
    this.dropAckedSegments();
    return done;
  }

  /** Deletes the segments whose frames are all acknowledged (a new one opens at the next append). */
  private dropAckedSegments(): void {
    while (this.segments.length > 0 && this.segments[0].lastSeq <= this.acked) {
      const s = this.segments.shift()!;
      fs.closeSync(s.fd);
      fs.rmSync(s.file, { force: true });
      this.bytesValue -= s.bytes;
    }
  }

  close(): void {
    for (const s of this.segments) fs.closeSync(s.fd);
    this.segments.length = 0;
  }
}

function writeAtomic(file: string, text: string): void {
  fs.writeFileSync(file + '.tmp', text);
  fs.renameSync(file + '.tmp', file);
}
