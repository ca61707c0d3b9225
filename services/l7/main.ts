// The l7 service: L4 payloads with their flow context in; L7 flow logs to the sender and
// per-flow, per-second application meters to quadruple.
import { flowtap } from '../../lib/proto';
import { BatchOut, kindName, runService } from '../../lib/service';
import { LeakyBucketThrottle } from '../../lib/throttle';
import { Kind } from '../../lib/transport';
import { SocketDataBatch } from '../capture/ebpf-socket-batch';
import { http2Parser } from './parsers/http2';
import { tlsParser } from './parsers/tls';
import { DEFAULT_PARSERS } from './registry';
import { SocketDataL7 } from './socket-data';
import { L7Stage } from './stage';

void runService({
  name: 'l7',
  async setup(ctx) {
    const cfg = ctx.config.l7;
    const logs = new BatchOut<flowtap.IL7FlowLog>(ctx, 'sender', Kind.L7_LOG_BATCH, (l) => flowtap.L7LogBatch.encode({ logs: l }).finish());
    const meters = new BatchOut<flowtap.IAppMeter>(ctx, 'quadruple', Kind.APP_METER_BATCH, (m) => flowtap.AppMeterBatch.encode({ meters: m }).finish());
    const timeoutOf = (name: string) => (name === 'DNS' ? cfg.session_timeout.dns : name === 'TLS' ? cfg.session_timeout.tls : cfg.session_timeout.others) * 1e6;
    // L7 logs pass a leaky bucket of l7_log_per_second on packet time (the log's end time);
    // AppMeters are not throttled, so the metrics still count every request.
    const throttle = new LeakyBucketThrottle<flowtap.IL7FlowLog>(cfg.l7_log_per_second);
    const throttleDrops = { l7_log_throttled: 0 };
    const throttledLogs = (log: flowtap.IL7FlowLog) => {
      if (throttle.admit(log, Number(log.end_time || log.start_time || 0))) logs.push(log);
      else throttleDrops.l7_log_throttled = throttle.dropped;
    };
    const stage = new L7Stage(throttledLogs, meters.push, {
      maxSessions: cfg.max_sessions,
      sessionTimeoutUs: Object.fromEntries(DEFAULT_PARSERS.map((p) => [p.name, timeoutOf(p.name)])),
    });
    ctx.metrics.trackDrops('l7_', () => stage.drops);
    ctx.metrics.trackDrops('l7_', () => throttleDrops);
    // Socket data from the eBPF tracer: the same parsers, one flow per traced socket.
    const socketBatch = new SocketDataBatch();
    const socketL7 = new SocketDataL7(throttledLogs, {
      maxSessions: cfg.max_sessions,
      sessionTimeoutUs: Object.fromEntries(DEFAULT_PARSERS.map((p) => [p.name, timeoutOf(p.name)])),
    });
    let malformedSocketBatches = 0;
    ctx.metrics.trackDrops('l7_ebpf_', () => ({ ...socketL7.stage.drops, malformed_socket_batch: malformedSocketBatches }));
    ctx.metrics.trackSize('l7_ebpf_sockets', () => socketL7.socketCount);
    // Encrypted bytes of sockets whose plaintext comes from the TLS probes: skipped, not lost.
    ctx.metrics.trackSize('l7_ebpf_tls_ciphertext_rows_skipped', () => socketL7.counters.tls_ciphertext);
    // Parsers that keep their own drop counters (header blocks that cannot be decoded, bad records).
    ctx.metrics.trackDrops('l7_http2_', () => http2Parser.drops);
    ctx.metrics.trackDrops('l7_tls_', () => tlsParser.drops);
    ctx.metrics.trackSize('l7_flows', () => stage.flowCount);
    ctx.metrics.trackSize('l7_sessions', () => stage.sessionCount);
    ctx.metrics.trackSize('l7_buffered_bytes', () => stage.bufferedBytes);
    const sendAll = async () => {
      await logs.flush(true);
      await meters.flush(true);
    };
    return {
      async onBatch(kind, body) {
        if (kind === Kind.SOCKET_DATA_BATCH) {
          if (!socketBatch.decode(body)) {
            malformedSocketBatches++;
            return;
          }
          ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, socketBatch.count);
          socketL7.push(socketBatch);
          await logs.flush();
          return;
        }
        if (kind !== Kind.APP_PAYLOAD_BATCH) throw new Error(`l7 does not take ${kindName(kind)}`);
        const { items } = flowtap.AppPayloadBatch.decode(body);
        ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, items.length);
        for (const item of items) {
          if (item.flow_closed) stage.closeFlow(Number(item.flow_id));
          else stage.push(item);
        }
        await logs.flush();
        await meters.flush();
      },
      async onTick(timeUs) {
        stage.tick(timeUs);
        socketL7.tick(timeUs);
        await sendAll();
      },
      async onEndOfStream() {
        stage.flush();
        socketL7.flush();
        await sendAll();
      },
    };
  },
});
