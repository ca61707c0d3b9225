// The quadruple service: flow reports from flow and app meters from l7 in; 1 s and 1 m metric
// documents and per-minute L4 flow logs out, to the sender.
import { flowtap } from '../../lib/proto';
import { BatchOut, kindName, runService } from '../../lib/service';
import { Kind } from '../../lib/transport';
import { QuadrupleStage } from './quadruple-stage';

void runService({
  name: 'quadruple',
  async setup(ctx) {
    const cfg = ctx.config.quadruple;
    const documents = new BatchOut<flowtap.IDocument>(ctx, 'sender', Kind.DOCUMENT_BATCH, (d) => flowtap.DocumentBatch.encode({ documents: d }).finish());
    const l4Logs = new BatchOut<flowtap.IL4FlowLog>(ctx, 'sender', Kind.L4_LOG_BATCH, (l) => flowtap.L4LogBatch.encode({ logs: l }).finish());
    const stage = new QuadrupleStage(
      { onDocument: documents.push, onL4Log: l4Logs.push },
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
    const sendAll = async () => {
      await l4Logs.flush(true);
      await documents.flush(true);
    };
    return {
      async onBatch(kind, body) {
        if (kind === Kind.FLOW_BATCH) {
          const { flows } = flowtap.FlowBatch.decode(body);
          ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, flows.length);
          stage.addFlows(flows);
        } else if (kind === Kind.APP_METER_BATCH) {
          const { meters } = flowtap.AppMeterBatch.decode(body);
          ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, meters.length);
          stage.addAppMeters(meters);
        } else {
          throw new Error(`quadruple does not take ${kindName(kind)}`);
        }
        await l4Logs.flush();
        await documents.flush();
      },
      async onTick(timeUs) {
        stage.advance(timeUs);
        await sendAll();
      },
      async onEndOfStream() {
        stage.flush();
        await sendAll();
      },
    };
  },
});
