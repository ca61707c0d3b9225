// The JSON-lines sink: one file per record type, one JSON object per line, appended in batches.
// A file that reaches `rotateBytes` is renamed to <name>.1 (older ones shift to .2, ...) and a
// new one is opened, keeping `keepFiles` rotated files.
import fs from 'node:fs';
import path from 'node:path';
import { RECORD_TYPES, type RecordType } from './columns';
import { JsonWriter } from './json-writer';
import type { ProfileSinkBatch, Sink, SinkBatch } from './sink';

export const JSONL_FILES = {
  l4: 'l4_flow_log.jsonl',
  l7: 'l7_flow_log.jsonl',
  metrics: 'metrics.jsonl',
} as const;
/** Opened at the first profile, so an agent without the profiler (and every replay) keeps three files. */
export const PROFILE_JSONL_FILE = 'profile.jsonl';
export type { RecordType };
type FileKey = RecordType | 'profile';
const fileName = (key: FileKey): string => (key === 'profile' ? PROFILE_JSONL_FILE : JSONL_FILES[key]);

export interface JsonlOptions {
  truncate?: boolean;
  rotateBytes?: number;
  keepFiles?: number;
}

interface OpenFile {
  stream: fs.WriteStream;
  bytes: number;
}

export class JsonlSink implements Sink {
  readonly name = 'jsonl';
  readonly drops = new Map<string, number>();
  private readonly files = new Map<FileKey, OpenFile>();
  profileRows = 0;
  readonly written: Record<RecordType, number> = { l4: 0, l7: 0, metrics: 0 };
  private failure?: Error;
  private readonly rotateBytes: number;
  private readonly keepFiles: number;
  /** Lines are printed here and lent to the file streams without a copy. */
  private readonly out = new JsonWriter();

  constructor(readonly dir: string, options: JsonlOptions | boolean = {}) {
    const opts = typeof options === 'boolean' ? { truncate: options } : options;
    this.rotateBytes = opts.rotateBytes ?? Infinity;
    this.keepFiles = opts.keepFiles ?? 4;
    fs.mkdirSync(dir, { recursive: true });
    // Every file exists from the start, so an empty result is an empty file, not a missing one.
    for (const type of RECORD_TYPES) this.open(type, opts.truncate ? 'w' : 'a');
  }

  private open(type: FileKey, flags: 'w' | 'a'): void {
    const file = path.join(this.dir, fileName(type));
    const stream = fs.createWriteStream(file, { flags, highWaterMark: 1 << 20 });
    stream.on('error', (err) => { this.failure ??= err; });
    let bytes = 0;
    if (flags === 'a') try { bytes = fs.statSync(file).size; } catch { /* new file */ }
    this.files.set(type, { stream, bytes });
  }

  /** Closes the current file, shifts the rotated ones and opens an empty one. */
  private async rotate(type: FileKey): Promise<void> {
    const current = this.files.get(type)!;
    await endStream(current.stream);
    const base = path.join(this.dir, fileName(type));
    if (this.keepFiles === 0) {
      fs.rmSync(base, { force: true });
    } else {
      fs.rmSync(`${base}.${this.keepFiles}`, { force: true });
      for (let k = this.keepFiles - 1; k >= 1; k--) {
        if (fs.existsSync(`${base}.${k}`)) fs.renameSync(`${base}.${k}`, `${base}.${k + 1}`);
      }
      fs.renameSync(base, `${base}.1`);
    }
    this.open(type, 'w');
  }

  /** Appends rows; resolves when the stream can take more (back-pressure on a slow disk). */
  async write(batch: SinkBatch): Promise<void> {
    if (this.failure) throw this.failure;
    if (batch.count === 0) return;
    this.written[batch.type] += batch.count;
    batch.writeJsonLines(this.out);
    await this.append(batch.type, this.out.lend());
  }

  async writeRows(type: RecordType, rows: ReadonlyArray<Record<string, unknown>>): Promise<void> {
    if (this.failure) throw this.failure;
    if (rows.length === 0) return;
    this.written[type] += rows.length;
    await this.append(type, this.print(rows));
  }

  /** Appends profile rows to profile.jsonl (appended to, never truncated: profiles are live only). */
  async writeProfile(batch: ProfileSinkBatch): Promise<void> {
    if (this.failure) throw this.failure;
    if (batch.count === 0) return;
    const rows = batch.rows();
    if (!this.files.has('profile')) this.open('profile', 'a');
    this.profileRows += rows.length;
    await this.append('profile', this.print(rows));
  }

  private print(rows: ReadonlyArray<Record<string, unknown>>): Buffer {
    for (const row of rows) {
      this.out.text(JSON.stringify(row));
      this.out.byte(10);
    }
    return this.out.lend();
  }

  private async append(type: FileKey, text: Buffer): Promise<void> {
    let file = this.files.get(type)!;
    if (file.bytes > 0 && file.bytes + text.length > this.rotateBytes) {
      await this.rotate(type);
      file = this.files.get(type)!;
    }
    file.bytes += text.length;
    // Once written, the text's chunk may be reused for later lines.
    if (!file.stream.write(text, () => this.out.giveBack(text))) await new Promise<void>((resolve) => file.stream.once('drain', resolve));
  }

  async flush(): Promise<void> {
    // Streams write in the background; close() waits for them.
  }

  async close(): Promise<void> {
    await Promise.all([...this.files.values()].map((f) => endStream(f.stream)));
    if (this.failure) throw this.failure;
  }
}

function endStream(s: fs.WriteStream): Promise<void> {
  return new Promise<void>((resolve, reject) => s.end((err?: Error | null) => (err ? reject(err) : resolve())));
}
