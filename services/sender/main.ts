// The sender: takes metric documents, L4 and L7 flow logs and eBPF profiles, and writes them to
// the sinks named in `sender.sinks` (jsonl, sqlite, collector, clickhouse). Drops are counted by
// reason, each prefixed with its sink's (see docs/storage.md).
import { kindName, runService } from '../../lib/service';
import { Kind } from '../../lib/transport';
import type { RecordType } from './columns';
import { CollectorSink } from './collector-sink';
import { DecodeScratch, ProfileSinkBatch, SinkBatch } from './sink';
import { SqliteSink } from './sqlite-sink';
import { buildSinks } from './sinks';

const TYPE_OF_KIND = new Map<number, RecordType>([
  [Kind.L4_LOG_BATCH, 'l4'], [Kind.L7_LOG_BATCH, 'l7'], [Kind.DOCUMENT_BATCH, 'metrics'],
]);

void runService({
  name: 'sender',
  async setup(ctx) {
    const cfg = ctx.config.sender;
    const log = (msg: string, fields?: Record<string, unknown>) => ctx.log.info(msg, fields);
    const sinks = buildSinks(cfg, { truncate: ctx.replay, log });
    const first = sinks[0];
    const flowIds = new Set<number>();
    // Every sink is done with a batch when write() resolves (none keeps it), and batches come
    // one at a time: each is decoded into the columns of the one before.
    const scratch = new DecodeScratch();
    // Records a sink threw on (e.g. jsonl on a full disk), by sink: reason <sink>_write_error
    // (<sink>_write_error_profile for profile rows).
    const sinkErrors = new Map<string, number>();
    ctx.metrics.trackDrops('', () => new Map([...sinkErrors].map(([name, n]) => [`${name}_write_error`, n])));
    const profileErrors = new Map<string, number>();
    ctx.metrics.trackDrops('', () => new Map([...profileErrors].map(([name, n]) => [`${name}_write_error_profile`, n])));
    for (const sink of sinks) {
      ctx.metrics.trackDrops('', () => sink.drops);
      for (const type of ['l4', 'l7', 'metrics'] as const) {
        ctx.metrics.trackSize(`${sink.name}_rows_written_${type}`, () => sink.written[type]);
      }
      if (sink instanceof CollectorSink) {
        ctx.metrics.trackSize('collector_spool_bytes', () => sink.spool.bytes);
        ctx.metrics.trackSize('collector_spool_frames', () => sink.spool.pendingFrames);
        ctx.metrics.trackSize('collector_connected', () => (sink.isConnected ? 1 : 0));
      }
      if (sink instanceof SqliteSink) {
        ctx.metrics.trackSize('sqlite_used_bytes', () => sink.usedBytes());
        ctx.metrics.trackSize('sqlite_evicted_age', () => sink.evicted.age);
        ctx.metrics.trackSize('sqlite_evicted_size', () => sink.evicted.size);
      }
    }
    // Kept for dashboards of the skeleton: rows written by the first sink.
    ctx.metrics.trackSize('rows_written_l4', () => first.written.l4);
    ctx.metrics.trackSize('rows_written_l7', () => first.written.l7);
    ctx.metrics.trackSize('rows_written_metrics', () => first.written.metrics);
    // Profiles (capture's eBPF profiler) go to every sink that stores them (all four do).
    const profileSinks = sinks.filter((s) => s.writeProfile);
    for (const sink of profileSinks) ctx.metrics.trackSize(`${sink.name}_rows_written_profile`, () => sink.profileRows ?? 0);
    return {
      async onBatch(kind, body) {
        if (kind === Kind.PROFILE_BATCH) {
          const batch = ProfileSinkBatch.decode(body);
          ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, batch.count);
          for (const sink of profileSinks) {
            try {
              await sink.writeProfile!(batch);
            } catch (err) {
              profileErrors.set(sink.name, (profileErrors.get(sink.name) ?? 0) + batch.count);
              ctx.log.warn('a sink failed to write profiles', { sink: sink.name, error: (err as Error).message });
            }
          }
          return;
        }
        const type = TYPE_OF_KIND.get(kind);
        if (!type) throw new Error(`sender does not take ${kindName(kind)}`);
        const batch = SinkBatch.decode(type, body, scratch);
        ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, batch.count);
        if (ctx.replay) batch.addFlowIds(flowIds);
        for (const sink of sinks) {
          // One failing sink must not keep the batch from the others.
          try {
            await sink.write(batch);
          } catch (err) {
            sinkErrors.set(sink.name, (sinkErrors.get(sink.name) ?? 0) + batch.count);
            ctx.log.warn('a sink failed to write a batch', { sink: sink.name, error: (err as Error).message });
          }
        }
      },
      async onEndOfStream() {
        // A live agent keeps its sinks open; a replay is done and closes them.
        if (!ctx.replay) {
          for (const sink of sinks) await sink.flush();
          return;
        }
        for (const sink of sinks) {
          await sink.flush();
          if (sink instanceof CollectorSink && !(await sink.drain(cfg.collector.drain_timeout_ms))) {
            ctx.log.warn('collector did not acknowledge everything; the rest stays in the spool', { frames: sink.spool.pendingFrames });
          }
          await sink.close();
        }
        ctx.tellParent({
          type: 'summary',
          service: 'sender',
          counts: { flows: flowIds.size, l4_records: first.written.l4, l7_records: first.written.l7, metric_rows: first.written.metrics },
        });
      },
    };
  },
});
