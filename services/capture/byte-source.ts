// Where a capture file's bytes come from: the file itself, or a gunzip stream over it.
// Both fill a caller's buffer, so the reader above keeps one buffer for the whole file.
import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as zlib from 'node:zlib';

export interface ByteSource {
  /** Reads up to `len` bytes into `dst` at `off`; resolves 0 at the end of the data. */
  read(dst: Buffer, off: number, len: number): Promise<number>;
  close(): Promise<void>;
  /** Set when the data ended early for a reason other than a clean end (e.g. a cut gzip stream). */
  readonly endError: string | undefined;
}

export class FileByteSource implements ByteSource {
  readonly endError = undefined;
  constructor(private readonly fh: FileHandle) {}

  async read(dst: Buffer, off: number, len: number): Promise<number> {
    const { bytesRead } = await this.fh.read(dst, off, len, null);
    return bytesRead;
  }

  close(): Promise<void> {
    return this.fh.close();
  }
}

/** Decompresses gzip as it is read; memory stays at one compressed and one inflated chunk. */
export class GzipByteSource implements ByteSource {
  endError: string | undefined;
  private readonly stream: zlib.Gunzip;
  private readonly chunks: AsyncIterator<Buffer>;
  private chunk: Buffer | undefined;
  private chunkPos = 0;
  private ended = false;

  constructor(path: string) {
    const raw = fs.createReadStream(path, { highWaterMark: 256 * 1024 });
    this.stream = zlib.createGunzip({ chunkSize: 256 * 1024 });
    raw.on('error', (err) => this.stream.destroy(err));
    raw.pipe(this.stream);
    this.chunks = this.stream[Symbol.asyncIterator]();
  }

  async read(dst: Buffer, off: number, len: number): Promise<number> {
    while (!this.chunk || this.chunkPos >= this.chunk.length) {
      if (this.ended) return 0;
      try {
        const r = await this.chunks.next();
        if (r.done) { this.ended = true; return 0; }
        this.chunk = r.value;
        this.chunkPos = 0;
      } catch (err) {
        // A cut or corrupt gzip stream ends the data; the reader decides whether that is fatal.
        this.ended = true;
        this.endError = `gzip: ${(err as Error).message}`;
        return 0;
      }
    }
    const n = Math.min(len, this.chunk.length - this.chunkPos);
    this.chunk.copy(dst, off, this.chunkPos, this.chunkPos + n);
    this.chunkPos += n;
    return n;
  }

  async close(): Promise<void> {
    this.stream.destroy();
  }
}
