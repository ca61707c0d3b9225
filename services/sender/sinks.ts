// Builds the sinks named in `sender.sinks` from the config.
import fs from 'node:fs';
import path from 'node:path';
import type { Config } from '../../lib/config';
import { ClickHouseSink } from './clickhouse-sink';
import { CollectorSink } from './collector-sink';
import { Encoder } from './frame';
import { JsonlSink } from './jsonl-sink';
import type { Sink } from './sink';
import { SqliteSink } from './sqlite-sink';

type Log = (msg: string, fields?: Record<string, unknown>) => void;

export function sqlitePath(cfg: Config['sender']): string {
  return cfg.sqlite.path || path.join(cfg.output_dir, 'flowtap.db');
}

export function buildSinks(cfg: Config['sender'], opts: { truncate: boolean; log: Log }): Sink[] {
  return cfg.sinks.map((name): Sink => {
    switch (name) {
      case 'jsonl':
        // A replay's output is the three files whole (truncated at start, never rotated).
        return new JsonlSink(cfg.output_dir, { truncate: opts.truncate, rotateBytes: opts.truncate ? Infinity : cfg.jsonl.rotate_bytes, keepFiles: cfg.jsonl.keep_files });
      case 'sqlite': {
        const file = sqlitePath(cfg);
        // A replay's store holds that replay only, as its JSON lines do.
        if (opts.truncate) for (const f of [file, `${file}-wal`, `${file}-shm`]) fs.rmSync(f, { force: true });
        return new SqliteSink(file, { retentionHours: cfg.sqlite.retention_hours, maxBytes: cfg.sqlite.max_bytes });
      }
      case 'collector': {
        const c = cfg.collector;
        const at = c.address.lastIndexOf(':');
        return new CollectorSink({
          host: c.address.slice(0, at),
          port: Number(c.address.slice(at + 1)),
          agentId: c.agent_id,
          encoder: c.compression === 'zstd' ? Encoder.ZSTD : Encoder.NONE,
          spoolDir: c.spool_dir || path.join(cfg.output_dir, 'spool'),
          spoolMaxBytes: c.spool_max_bytes,
          reconnectMinMs: c.reconnect_min_ms,
          reconnectMaxMs: c.reconnect_max_ms,
          log: opts.log,
        });
      }
      case 'clickhouse': {
        const h = cfg.clickhouse;
        return new ClickHouseSink({
          url: h.url, database: h.database, user: h.user, password: h.password,
          batchRows: h.batch_rows, flushIntervalMs: h.flush_interval_ms, log: opts.log,
        });
      }
    }
  });
}
