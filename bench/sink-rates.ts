// Rows per second into each sink, on L7 flow logs in batches of 1024 (the transport's batch
// size): jsonl, sqlite, collector (zstd frames over TCP to an in-process collector writing
// SQLite, timed until every frame is acknowledged; the collector runs in this process, so its
// CPU counts too) and, given a server URL, ClickHouse (the server's CPU does not count).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { flowtap } from '../lib/proto';
import { CollectorServer } from '../services/collector/server';
import { ClickHouseSink } from '../services/sender/clickhouse-sink';
import { CollectorSink } from '../services/sender/collector-sink';
import { Encoder } from '../services/sender/frame';
import { JsonlSink } from '../services/sender/jsonl-sink';
import { SinkBatch, type Sink } from '../services/sender/sink';
import { SqliteSink } from '../services/sender/sqlite-sink';

export interface SinkRates {
  rows: number;
  /** rows/s per sink, each measured alone (wall time). */
  rowsPerSecond: Record<string, number>;
  /** rows per second of this process's CPU time (user + system): steadier on a shared machine. */
  rowsPerCpuSecond: Record<string, number>;
  /** Collector frames: bytes on the wire per row. */
  collectorBytesPerRow: number;
}

/** L7LogBatch messages of 1024 logs. */
function batches(rows: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let start = 0; start < rows; start += 1024) {
    const logs: flowtap.IL7FlowLog[] = [];
    for (let i = start; i < Math.min(rows, start + 1024); i++) {
      logs.push({
        flow_id: i + 1, start_time: 1_700_000_000_000_000 + i * 997, end_time: 1_700_000_000_000_000 + i * 997 + 1800,
        ip_0: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, ip_1: `192.168.1.${i % 16}`, client_port: 1024 + (i % 60000),
        server_port: 80, protocol: 6, l7_protocol: 'http1', version: '1.1', request_type: i % 5 ? 'GET' : 'POST',
        request_domain: 'api.example.test', request_resource: `/v1/items/${i % 1000}?page=${i % 7}`, endpoint: '/v1/items',
        response_code: i % 20 ? 200 : 503, response_status: i % 20 ? 'ok' : 'server_error', response_duration: 1800 + (i % 900),
        request_length: 120 + (i % 50), response_length: 2048 + (i % 4000), trace_id: (i * 2654435761).toString(16), signal_source: 'packet',
      });
    }
    out.push(flowtap.L7LogBatch.encode({ logs }).finish());
  }
  return out;
}

async function time(sink: Sink, input: Uint8Array[], done: () => Promise<void> = async () => {}): Promise<[number, number]> {
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  // Each batch decoded afresh, as the sender decodes what it receives, so that no sink benefits
  // from rows another computed; the decode counts, as it does in the sender.
  let rows = 0;
  for (const body of input) {
    const b = SinkBatch.decode('l7', body);
    rows += b.count;
    await sink.write(b);
  }
  await sink.flush();
  await done();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  await sink.close();
  return [rows / s, rows / ((cpu.user + cpu.system) / 1e6)];
}

export async function measureSinks(opts: { rows?: number; clickhouseUrl?: string } = {}): Promise<SinkRates> {
  const rows = opts.rows ?? 200_000;
  const input = batches(rows);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-bench-sinks-'));
  const rates: Record<string, number> = {};
  const cpuRates: Record<string, number> = {};
  const record = (name: string, [wall, cpu]: [number, number]) => {
    rates[name] = Math.round(wall);
    cpuRates[name] = Math.round(cpu);
  };
  let collectorBytesPerRow = 0;
  try {
    record('jsonl', await time(new JsonlSink(path.join(dir, 'jsonl'), true), input));
    record('sqlite', await time(new SqliteSink(path.join(dir, 'agent.db')), input));
    const store = new SqliteSink(path.join(dir, 'collector.db'));
    const server = new CollectorServer({ host: '127.0.0.1', port: 0, sinks: [store] });
    const port = await server.listen();
    const sink = new CollectorSink({
      host: '127.0.0.1', port, agentId: 1, encoder: Encoder.ZSTD, spoolDir: path.join(dir, 'spool'),
      spoolMaxBytes: 1 << 30, reconnectMinMs: 50, reconnectMaxMs: 500,
    });
    record('collector', await time(sink, input, async () => {
      if (!(await sink.drain(120_000))) throw new Error('collector did not acknowledge everything');
    }));
    collectorBytesPerRow = sink.stats.bytesSent / rows;
    await server.close();
    await store.close();
    if (opts.clickhouseUrl) {
      record('clickhouse', await time(new ClickHouseSink({
        url: opts.clickhouseUrl, database: 'bench', user: 'default', password: '', batchRows: 10_000, flushIntervalMs: 60_000,
      }), input));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return { rows, rowsPerSecond: rates, rowsPerCpuSecond: cpuRates, collectorBytesPerRow };
}
