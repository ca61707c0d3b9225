// Ships records to a `flowtap collector` over TCP in frames (frame.ts). Every frame goes to the
// on-disk spool first and is sent from there; the collector acknowledges frames once stored, and
// only then do they leave the spool. While the collector is unreachable the spool fills; past
// its bound, batches are dropped and their records counted (reason collector_spool_full).
// Reconnects back off exponentially with jitter. Profiles take the same road as PROFILE_BATCH
// frames; their drops carry the suffix _profile and count rows (stacks).
import net from 'node:net';
import { flowtap } from '../../lib/proto';
import { ACK_BYTES, ACK_MAGIC, Encoder, KIND_OF_TYPE, MAX_RAW_BYTES, PROFILE_KIND, encodeFrame, splitBatchBody } from './frame';
import type { RecordType } from './columns';
import { countDrop, type ProfileSinkBatch, type Sink, type SinkBatch } from './sink';
import { Spool } from './spool';

export interface CollectorSinkOptions {
  host: string;
  port: number;
  agentId: number;
  encoder: Encoder;
  spoolDir: string;
  spoolMaxBytes: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  /** Bytes sent and not yet acknowledged before sending pauses. */
  windowBytes?: number;
  /** Raw payload bytes per frame at most; bigger batches are split. */
  frameRawBytes?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export class CollectorSink implements Sink {
  readonly name = 'collector';
  readonly drops = new Map<string, number>();
  readonly written: Record<RecordType, number> = { l4: 0, l7: 0, metrics: 0 };
  profileRows = 0;
  readonly stats = { connects: 0, framesSent: 0, recordsAcked: 0, bytesSent: 0 };
  readonly spool: Spool;
  private socket?: net.Socket;
  private connected = false;
  private closed = false;
  /** Index into the spool's pending frames of the next one to send on this connection. */
  private cursor = 0;
  private inflightBytes = 0;
  private attempt = 0;
  private timer?: NodeJS.Timeout;
  private ackBuf: Buffer = Buffer.alloc(0);
  private readonly drainWaiters: Array<() => void> = [];
  private readonly windowBytes: number;
  private readonly frameRawBytes: number;

  constructor(private readonly opts: CollectorSinkOptions) {
    this.spool = new Spool(opts.spoolDir, opts.spoolMaxBytes);
    if (this.spool.truncatedAtLoad > 0) countDrop(this.drops, 'collector_spool_torn_tail_bytes', this.spool.truncatedAtLoad);
    this.windowBytes = opts.windowBytes ?? 8 << 20;
    this.frameRawBytes = Math.min(opts.frameRawBytes ?? 4 << 20, MAX_RAW_BYTES);
    this.connect();
  }

  get isConnected(): boolean {
    return this.connected;
  }

  async write(batch: SinkBatch): Promise<void> {
    const records = splitBatchBody(batch.body);
    if (!records) {
      countDrop(this.drops, 'collector_bad_batch', batch.count);
      return;
    }
    const { spooled, refused } = this.spoolRecords(KIND_OF_TYPE[batch.type], records);
    this.written[batch.type] += spooled;
    if (refused > 0) countDrop(this.drops, 'collector_spool_full', refused);
    this.pump();
  }

  /**
   * Spools one profile interval. Its body goes as received, one record; an interval too big
   * for a frame is cut into slices of its stacks, each a ProfileBatch of the interval.
   */
  async writeProfile(batch: ProfileSinkBatch): Promise<void> {
    if (batch.count === 0) return;
    const slices = 4 + batch.body.length <= this.frameRawBytes
      ? [{ bytes: batch.body, rows: batch.count }]
      : this.sliceProfile(batch.message);
    const { spooled, refused } = this.spoolRecords(PROFILE_KIND, slices.map((s) => s.bytes), (i) => slices[i].rows);
    this.profileRows += spooled;
    if (refused > 0) countDrop(this.drops, 'collector_spool_full_profile', refused);
    this.pump();
  }

  /** ProfileBatch slices of at most about frameRawBytes; lost_samples goes with the first only, so sums stay right. */
  private sliceProfile(m: flowtap.IProfileBatch): Array<{ bytes: Uint8Array; rows: number }> {
    const stacks = m.stacks ?? [];
    const out: Array<{ bytes: Uint8Array; rows: number }> = [];
    // The record's length prefix and the interval's fields (three varints, at most 26 bytes).
    const fixed = 4 + 32;
    let start = 0;
    let size = fixed;
    const emit = (end: number) => {
      const slice = stacks.slice(start, end);
      const bytes = flowtap.ProfileBatch.encode({
        start_time: m.start_time, end_time: m.end_time, sample_hz: m.sample_hz, stacks: slice, lost_samples: out.length === 0 ? m.lost_samples : 0,
      }).finish();
      out.push({ bytes, rows: slice.length });
      start = end;
      size = fixed;
    };
    for (let i = 0; i < stacks.length; i++) {
      // Tag and length varint (at most 6 bytes), then the stack.
      const stackBytes = 6 + flowtap.ProfileStack.encode(stacks[i]).len;
      if (i > start && size + stackBytes > this.frameRawBytes) emit(i);
      size += stackBytes;
    }
    emit(stacks.length);
    return out;
  }

  /**
   * Appends records to the spool in frames of at most frameRawBytes of payload. `rowsOf` says
   * how many rows a record holds (1 unless given). Returns the rows spooled and refused (spool full).
   */
  private spoolRecords(kind: number, records: readonly Uint8Array[], rowsOf?: (i: number) => number): { spooled: number; refused: number } {
    let spooled = 0;
    let refused = 0;
    let start = 0;
    while (start < records.length) {
      let end = start;
      let raw = 0;
      while (end < records.length && (end === start || raw + 4 + records[end].length <= this.frameRawBytes)) raw += 4 + records[end++].length;
      const chunk = records.slice(start, end);
      let rows = chunk.length;
      if (rowsOf) {
        rows = 0;
        for (let i = start; i < end; i++) rows += rowsOf(i);
      }
      const ok = this.spool.append((seq) => encodeFrame(kind, chunk, this.opts.agentId, this.spool.epoch, seq, this.opts.encoder), chunk.length);
      if (ok) spooled += rows;
      else refused += rows;
      start = end;
    }
    return { spooled, refused };
  }

  private connect(): void {
    if (this.closed) return;
    const socket = net.connect({ host: this.opts.host, port: this.opts.port });
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('connect', () => {
      this.connected = true;
      this.stats.connects++;
      this.attempt = 0;
      this.cursor = 0;
      this.inflightBytes = 0;
      this.ackBuf = Buffer.alloc(0);
      this.opts.log?.('connected to collector', { address: `${this.opts.host}:${this.opts.port}`, pending: this.spool.pendingFrames });
      this.pump();
    });
    socket.on('data', (chunk: Buffer) => this.onAckData(chunk));
    socket.on('drain', () => this.pump());
    socket.on('error', () => { /* 'close' follows and schedules the reconnect */ });
    socket.on('close', () => {
      if (this.socket !== socket) return;
      const was = this.connected;
      this.connected = false;
      this.socket = undefined;
      if (was) this.opts.log?.('collector connection lost', { pending: this.spool.pendingFrames });
      this.scheduleReconnect();
    });
  }

  /** Exponential backoff with full jitter between half and all of the step. */
  private scheduleReconnect(): void {
    if (this.closed || this.timer) return;
    const step = Math.min(this.opts.reconnectMaxMs, this.opts.reconnectMinMs * 2 ** Math.min(this.attempt, 20));
    this.attempt++;
    const delay = step / 2 + Math.random() * (step / 2);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.connect();
    }, delay);
  }

  /** Sends pending frames from the spool while the window and the socket have room. */
  private pump(): void {
    const socket = this.socket;
    if (!this.connected || !socket) return;
    while (this.inflightBytes < this.windowBytes && !socket.writableNeedDrain) {
      const f = this.spool.frame(this.cursor);
      if (!f) break;
      this.cursor++;
      this.inflightBytes += f.data.length;
      this.stats.framesSent++;
      this.stats.bytesSent += f.data.length;
      socket.write(f.data);
    }
  }

  private onAckData(chunk: Buffer): void {
    this.ackBuf = this.ackBuf.length === 0 ? chunk : Buffer.concat([this.ackBuf, chunk]);
    let p = 0;
    while (p + ACK_BYTES <= this.ackBuf.length) {
      const magic = this.ackBuf.readUInt32BE(p);
      const epoch = this.ackBuf.readUInt32BE(p + 4);
      const seq = this.ackBuf.readUInt32BE(p + 8) * 2 ** 32 + this.ackBuf.readUInt32BE(p + 12);
      p += ACK_BYTES;
      if (magic !== ACK_MAGIC || epoch !== this.spool.epoch) {
        countDrop(this.drops, 'collector_bad_ack');
        this.socket?.destroy();
        return;
      }
      const done = this.spool.ack(seq);
      this.stats.recordsAcked += done.records;
      // Acknowledged frames were all sent on this connection, so they were before the cursor.
      this.cursor = Math.max(0, this.cursor - done.frames);
      this.inflightBytes = Math.max(0, this.inflightBytes - done.bytes);
    }
    this.ackBuf = this.ackBuf.subarray(p);
    if (this.spool.pendingFrames === 0) this.drainWaiters.splice(0).forEach((w) => w());
    this.pump();
  }

  /** Waits until the collector has acknowledged everything, or `timeoutMs`. True if drained. */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.spool.pendingFrames === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.drainWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  async flush(): Promise<void> {
    this.pump();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.socket?.destroy();
    this.spool.close();
  }
}
