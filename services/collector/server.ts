// The collector's stage: accepts frames (services/sender/frame.ts) from many agents over TCP,
// checks each one, writes its records to the collector's sinks and acknowledges it. A malformed
// frame is counted by reason and closes that connection only; the other agents go on.
// Frames from one agent's spool epoch are deduplicated by sequence number, so a sender that
// resends after a lost acknowledgement does not store its records twice (while this process lives).
// Profile frames carry ProfileBatch messages and go to the sinks' profile tables.
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { ACK_BYTES, FrameError, HEADER_BYTES, MAX_FRAME_BYTES, decodeFrame, encodeAck, type FrameType } from '../sender/frame';
import { countDrop, ProfileSinkBatch, SinkBatch, type Sink } from '../sender/sink';

export interface CollectorOptions {
  host: string;
  port: number;
  sinks: Sink[];
  maxFrameBytes?: number;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

/**
 * Drop reasons (frames; the connection is closed): frame_too_small, frame_too_large,
 * frame_size_mismatch, unknown_version, unknown_type, unknown_encoder, bad_reserved,
 * raw_too_large, raw_size_mismatch, bad_compression, bad_record_length, undecodable_record,
 * record_count_mismatch, truncated_frame (connection ended inside a frame), sink_error.
 */
export class CollectorServer {
  readonly drops = new Map<string, number>();
  readonly stats = { connections: 0, open: 0, frames: 0, duplicateFrames: 0 };
  /** Records stored, by type; for profiles, rows (stacks). */
  readonly records: Record<FrameType, number> = { l4: 0, l7: 0, metrics: 0, profile: 0 };
  private readonly server: net.Server;
  private readonly lastSeq = new Map<string, number>();
  private readonly sockets = new Set<net.Socket>();
  /** Frames are written one at a time, whichever connection they came on. */
  private writing: Promise<void> = Promise.resolve();
  private readonly maxFrameBytes: number;

  constructor(private readonly opts: CollectorOptions) {
    this.maxFrameBytes = opts.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.server = net.createServer((socket) => this.accept(socket));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => resolve((this.server.address() as AddressInfo).port));
    });
  }

  private accept(socket: net.Socket): void {
    this.stats.connections++;
    this.stats.open++;
    this.sockets.add(socket);
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    // Received chunks, joined only when a whole header or frame is there (no copy per chunk).
    let chunks: Buffer[] = [];
    let have = 0;
    const joined = (): Buffer => {
      if (chunks.length > 1) chunks = [Buffer.concat(chunks, have)];
      return chunks[0];
    };
    let busy = false;
    let bad = false;
    const reject = (reason: string, detail: string) => {
      if (bad) return;
      bad = true;
      countDrop(this.drops, reason);
      this.opts.log?.('rejected a frame; closing the connection', { peer, reason, detail });
      socket.destroy();
    };
    const work = async () => {
      if (busy || bad) return;
      busy = true;
      socket.pause();
      try {
        while (!bad && have >= 4) {
          const size = (chunks[0].length >= 4 ? chunks[0] : joined()).readUInt32BE(0);
          if (size < HEADER_BYTES) return reject('frame_too_small', `${size} bytes`);
          if (size > this.maxFrameBytes) return reject('frame_too_large', `${size} bytes`);
          if (have < size) break;
          const all = joined();
          const frame = all.subarray(0, size);
          chunks = size < all.length ? [all.subarray(size)] : [];
          have -= size;
          let ack: Buffer | undefined;
          try {
            ack = await this.handleFrame(frame);
          } catch (err) {
            if (err instanceof FrameError) return reject(err.reason, err.message);
            return reject('sink_error', (err as Error).message);
          }
          if (ack && !socket.destroyed) socket.write(ack);
        }
      } finally {
        busy = false;
        if (!bad && !socket.destroyed) socket.resume();
      }
    };
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      have += chunk.length;
      void work();
    });
    socket.on('error', () => { /* close follows */ });
    socket.on('close', () => {
      this.stats.open--;
      this.sockets.delete(socket);
      if (!bad && have > 0) countDrop(this.drops, 'truncated_frame');
    });
  }

  /** Checks, deduplicates and stores one frame; resolves to its acknowledgement. */
  private handleFrame(frame: Buffer): Promise<Buffer> {
    const decoded = decodeFrame(frame); // throws FrameError before anything is written
    const { header } = decoded;
    const stream = `${header.agentId}/${header.epoch}`;
    const run = async (): Promise<Buffer> => {
      this.stats.frames++;
      if (header.seq <= (this.lastSeq.get(stream) ?? 0)) {
        this.stats.duplicateFrames++;
        return encodeAck(header.epoch, header.seq);
      }
      let stored: number;
      if (decoded.type === 'profile') {
        stored = 0;
        for (const message of decoded.records) {
          const batch = new ProfileSinkBatch(message, new Uint8Array(0));
          for (const sink of this.opts.sinks) await sink.writeProfile?.(batch);
          stored += batch.count;
        }
      } else {
        const batch = new SinkBatch(decoded.type, new Uint8Array(0), decoded.records);
        for (const sink of this.opts.sinks) await sink.write(batch);
        stored = decoded.records.length;
      }
      // An acknowledgement promises the rows are stored, so buffering sinks write out first.
      for (const sink of this.opts.sinks) await sink.flush();
      for (const sink of this.opts.sinks) {
        // A sink that still holds rows could not store them: no acknowledgement; the agent resends.
        if ((sink.pendingRows?.() ?? 0) > 0) throw new Error(`${sink.name} could not store the rows yet`);
      }
      this.lastSeq.set(stream, header.seq);
      this.records[decoded.type] += stored;
      return encodeAck(header.epoch, header.seq);
    };
    const result = this.writing.then(run);
    this.writing = result.then(() => undefined, () => undefined);
    return result;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.writing;
  }
}

export { ACK_BYTES };
