// The sender: takes metric documents, L4 and L7 flow logs, and writes them to the sinks.
import { kindName, runService } from '../../lib/service';
import { Kind } from '../../lib/transport';
import { flowtap } from '../../lib/proto';
import { JsonlSink } from './jsonl-sink';
import { documentRow, l4Row, l7Row } from './records';

void runService({
  name: 'sender',
  async setup(ctx) {
    const sink = new JsonlSink(ctx.config.sender.output_dir, ctx.replay);
    const flowIds = new Set<number>();
    ctx.metrics.trackSize('rows_written_l4', () => sink.written.l4);
    ctx.metrics.trackSize('rows_written_l7', () => sink.written.l7);
    ctx.metrics.trackSize('rows_written_metrics', () => sink.written.metrics);
    return {
      async onBatch(kind, body) {
        switch (kind) {
          case Kind.L4_LOG_BATCH: {
            const { logs } = flowtap.L4LogBatch.decode(body);
            ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, logs.length);
            if (ctx.replay) for (const log of logs) flowIds.add(Number(log.flow_id));
            await sink.write('l4', logs.map((l) => l4Row(l as flowtap.L4FlowLog)));
            break;
          }
          case Kind.L7_LOG_BATCH: {
            const { logs } = flowtap.L7LogBatch.decode(body);
            ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, logs.length);
            await sink.write('l7', logs.map((l) => l7Row(l as flowtap.L7FlowLog)));
            break;
          }
          case Kind.DOCUMENT_BATCH: {
            const { documents } = flowtap.DocumentBatch.decode(body);
            ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, documents.length);
            await sink.write('metrics', documents.map((d) => documentRow(d as flowtap.Document)));
            break;
          }
          default:
            throw new Error(`sender does not take ${kindName(kind)}`);
        }
      },
      async onEndOfStream() {
        // A live agent keeps its files open; a replay is done and closes them.
        if (!ctx.replay) return;
        await sink.close();
        ctx.tellParent({
          type: 'summary',
          service: 'sender',
          counts: { flows: flowIds.size, l4_records: sink.written.l4, l7_records: sink.written.l7, metric_rows: sink.written.metrics },
        });
      },
    };
  },
});
