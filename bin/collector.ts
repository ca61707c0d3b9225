// `flowtap collector`: receives frames from many agents' senders and writes them to its own
// store (SQLite and/or ClickHouse), with Prometheus metrics like the services.
import { ServiceMetrics } from '../lib/metrics';
import { Logger } from '../lib/log';
import { CollectorServer } from '../services/collector/server';
import { ClickHouseSink } from '../services/sender/clickhouse-sink';
import { MAX_FRAME_BYTES } from '../services/sender/frame';
import type { Sink } from '../services/sender/sink';
import { SqliteSink } from '../services/sender/sqlite-sink';

export const COLLECTOR_USAGE = `usage:
  flowtap collector [--listen host:port] [--sqlite <file>] [--clickhouse <url> [--clickhouse-db <name>]]
                    [--metrics-port <port>] [--max-frame-bytes <n>] [--retention-hours <h>] [--max-bytes <n>]
      receive frames from agents (sender sink "collector") and store them;
      default --listen 0.0.0.0:20033 --sqlite data/collector.db --metrics-port 9106;
      SQLite retention 168 h of data time and 8 GiB (0: no limit)
`;

export class UsageError extends Error {}

function take(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new UsageError(`${name} needs a value\n${COLLECTOR_USAGE}`);
  args.splice(i, 2);
  return v;
}

export async function runCollector(argv: string[]): Promise<void> {
  const args = [...argv];
  const listen = take(args, '--listen') ?? '0.0.0.0:20033';
  const sqlite = take(args, '--sqlite');
  const clickhouse = take(args, '--clickhouse');
  const clickhouseDb = take(args, '--clickhouse-db') ?? 'flowtap';
  const metricsPort = Number(take(args, '--metrics-port') ?? 9106);
  const maxFrameBytes = Number(take(args, '--max-frame-bytes') ?? MAX_FRAME_BYTES);
  const retentionHours = Number(take(args, '--retention-hours') ?? 168);
  const maxBytes = Number(take(args, '--max-bytes') ?? 8 * 1024 ** 3);
  if (args.length > 0) throw new UsageError(`unknown argument ${args[0]}\n${COLLECTOR_USAGE}`);
  const at = listen.lastIndexOf(':');
  const port = Number(listen.slice(at + 1));
  if (at < 1 || !Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--listen: expected host:port, got ${listen}`);
  if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) throw new UsageError('--metrics-port: not a port');
  if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 64) throw new UsageError('--max-frame-bytes: at least 64');
  if (!(retentionHours >= 0) || !(maxBytes >= 0)) throw new UsageError('--retention-hours, --max-bytes: numbers >= 0 (0: no limit)');

  const log = new Logger('collector', (['debug', 'info', 'warn', 'error'] as const).find((l) => l === process.env.FLOWTAP_LOG_LEVEL) ?? 'info');
  const info = (msg: string, fields?: Record<string, unknown>) => log.info(msg, fields);
  const sinks: Sink[] = [];
  if (sqlite || !clickhouse) sinks.push(new SqliteSink(sqlite ?? 'data/collector.db', { retentionHours, maxBytes }));
  if (clickhouse) {
    const ch = new ClickHouseSink({ url: clickhouse, database: clickhouseDb, user: 'default', password: '', batchRows: 10000, flushIntervalMs: 1000, log: info });
    await ch.createTables();
    sinks.push(ch);
  }
  const server = new CollectorServer({ host: listen.slice(0, at), port, sinks, maxFrameBytes, log: info });
  const metrics = new ServiceMetrics('collector');
  metrics.trackDrops('', () => server.drops);
  for (const sink of sinks) metrics.trackDrops('', () => sink.drops);
  metrics.trackSize('connections_open', () => server.stats.open);
  metrics.trackSize('connections_total', () => server.stats.connections);
  metrics.trackSize('frames_total', () => server.stats.frames);
  metrics.trackSize('duplicate_frames_total', () => server.stats.duplicateFrames);
  for (const t of ['l4', 'l7', 'metrics', 'profile'] as const) metrics.trackSize(`records_${t}`, () => server.records[t]);
  const bound = await server.listen();
  const mport = await metrics.listen('127.0.0.1', metricsPort);
  log.info('collector listening', { port: bound, metrics: `http://127.0.0.1:${mport}/metrics`, sinks: sinks.map((s) => s.name) });
  // Tests and scripts read the bound ports from this line on stdout.
  process.stdout.write(JSON.stringify({ listening: bound, metrics: mport }) + '\n');
  const stop = async () => {
    await server.close();
    for (const sink of sinks) await sink.close();
    metrics.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
}
