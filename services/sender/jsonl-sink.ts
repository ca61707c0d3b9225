// The JSON-lines sink: one file per record type, one JSON object per line, appended in batches.
import fs from 'node:fs';
import path from 'node:path';

export const JSONL_FILES = {
  l4: 'l4_flow_log.jsonl',
  l7: 'l7_flow_log.jsonl',
  metrics: 'metrics.jsonl',
} as const;
export type RecordType = keyof typeof JSONL_FILES;

export class JsonlSink {
  private readonly streams = new Map<RecordType, fs.WriteStream>();
  readonly written: Record<RecordType, number> = { l4: 0, l7: 0, metrics: 0 };
  private failure?: Error;

  constructor(readonly dir: string, truncate = false) {
    fs.mkdirSync(dir, { recursive: true });
    // Every file exists from the start, so an empty result is an empty file, not a missing one.
    for (const type of Object.keys(JSONL_FILES) as RecordType[]) {
      const stream = fs.createWriteStream(path.join(dir, JSONL_FILES[type]), { flags: truncate ? 'w' : 'a', highWaterMark: 1 << 20 });
      stream.on('error', (err) => { this.failure ??= err; });
      this.streams.set(type, stream);
    }
  }

  /** Appends rows; resolves when the stream can take more (back-pressure on a slow disk). */
  async write(type: RecordType, rows: Array<Record<string, unknown>>): Promise<void> {
    if (this.failure) throw this.failure;
    if (rows.length === 0) return;
    let text = '';
    for (const row of rows) text += JSON.stringify(row) + '\n';
    this.written[type] += rows.length;
    const stream = this.streams.get(type)!;
    if (!stream.write(text)) await new Promise<void>((resolve) => stream.once('drain', resolve));
  }

  async close(): Promise<void> {
    await Promise.all([...this.streams.values()].map((s) => new Promise<void>((resolve, reject) => {
      s.end((err?: Error | null) => (err ? reject(err) : resolve()));
    })));
    if (this.failure) throw this.failure;
  }
}
