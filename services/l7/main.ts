// The l7 service: L4 payloads with their flow context in; L7 flow logs to the sender and
// per-flow, per-second application meters to quadruple.
import { flowtap } from '../../lib/proto';
import { BatchOut, kindName, runService } from '../../lib/service';
import { Kind } from '../../lib/transport';
import { DEFAULT_PARSERS } from './registry';
import { L7Stage } from './stage';

void runService({
  name: 'l7',
  async setup(ctx) {
    const cfg = ctx.config.l7;
    const logs = new BatchOut<flowtap.IL7FlowLog>(ctx, 'sender', Kind.L7_LOG_BATCH, (l) => flowtap.L7LogBatch.encode({ logs: l }).finish());
    const meters = new BatchOut<flowtap.IAppMeter>(ctx, 'quadruple', Kind.APP_METER_BATCH, (m) => flowtap.AppMeterBatch.encode({ meters: m }).finish());
    const timeoutOf = (name: string) => (name === 'DNS' ? cfg.session_timeout.dns : name === 'TLS' ? cfg.session_timeout.tls : cfg.session_timeout.others) * 1e6;
    const stage = new L7Stage(logs.push, meters.push, {
      maxSessions: cfg.max_sessions,
      sessionTimeoutUs: Object.fromEntries(DEFAULT_PARSERS.map((p) => [p.name, timeoutOf(p.name)])),
    });
    ctx.metrics.trackDrops('l7_', () => stage.drops);
    ctx.metrics.trackSize('l7_flows', () => stage.flowCount);
    ctx.metrics.trackSize('l7_sessions', () => stage.sessionCount);
    ctx.metrics.trackSize('l7_buffered_bytes', () => stage.bufferedBytes);
    const sendAll = async () => {
      await logs.flush(true);
      await meters.flush(true);
    };
    return {
      async onBatch(kind, body) {
        if (kind !== Kind.APP_PAYLOAD_BATCH) throw new Error(`l7 does not take ${kindName(kind)}`);
        const { items } = flowtap.AppPayloadBatch.decode(body);
        ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, items.length);
        stage.pushBatch(items);
        await logs.flush();
        await meters.flush();
      },
      async onTick(timeUs) {
        stage.tick(timeUs);
        await sendAll();
      },
      async onEndOfStream() {
        stage.flush();
        await sendAll();
      },
    };
  },
});
