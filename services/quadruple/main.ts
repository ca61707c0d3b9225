// The quadruple service: flow reports from flow and app meters from l7 in; 1 s and 1 m metric
// documents and per-minute L4 flow logs out, to the sender. Batches are decoded and encoded by
// the stage itself (wire.ts); this shell queues the encoded batches and sends them.
import { kindName, runService } from '../../lib/service';
import { Kind } from '../../lib/transport';
import { QuadrupleStage } from './quadruple-stage';

void runService({
  name: 'quadruple',
  async setup(ctx) {
    const cfg = ctx.config.quadruple;
    // Encoded batches waiting to be sent, L4 logs before documents as they always went.
    const l4Batches: [Buffer, number][] = [];
    const documentBatches: [Buffer, number][] = [];
    const stage = new QuadrupleStage(
      {
        batchSize: ctx.config.transport.batch_size,
        onDocumentBatch: (body, count) => { documentBatches.push([body, count]); },
        onL4LogBatch: (body, count) => { l4Batches.push([body, count]); },
      },
      {
        toleranceSecondSec: cfg.late_tolerance_1s,
        toleranceMinuteSec: cfg.late_tolerance_1m,
        l4LogPerSecond: cfg.l4_log_per_second,
        aggregateHealthChecks: cfg.aggregate_health_checks,
        carryIdleLimitSec: cfg.carry_idle_limit,
      },
    );
    // Drop reasons: see QuadrupleDropReason (late data, bad records, l4_log_throttled).
    ctx.metrics.trackDrops('quadruple_', () => stage.drops);
    ctx.metrics.trackSize('flows_in_aggregation', () => stage.flowsInAggr);
    ctx.metrics.trackSize('l4_logs_held_by_throttle', () => stage.l4LogsHeld);
    ctx.metrics.trackSize('flows_carried_1m', () => stage.flowsCarried);
    const send = async () => {
      // shift(), not a loop then clear: nothing pushed while a send waits is lost.
      for (let b = l4Batches.shift(); b; b = l4Batches.shift()) await ctx.send('sender', Kind.L4_LOG_BATCH, b[0], b[1]);
      for (let b = documentBatches.shift(); b; b = documentBatches.shift()) await ctx.send('sender', Kind.DOCUMENT_BATCH, b[0], b[1]);
    };
    return {
      async onBatch(kind, body) {
        if (kind === Kind.FLOW_BATCH) {
          ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, stage.addFlowBatch(body));
        } else if (kind === Kind.APP_METER_BATCH) {
          ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, stage.addAppMeterBatch(body));
        } else {
          throw new Error(`quadruple does not take ${kindName(kind)}`);
        }
        await send();
      },
      async onTick(timeUs) {
        stage.advance(timeUs);
        stage.flushBatches();
        await send();
      },
      async onEndOfStream() {
        stage.flush();
        stage.flushBatches();
        await send();
      },
    };
  },
});
