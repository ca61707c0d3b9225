// The l7 service: L4 payloads with their flow context in; L7 flow logs to the sender and
// per-flow, per-second application meters to quadruple. The work is L7Input's; this shell gives
// it the configuration and sends what it produces.
import { type ServiceName } from '../../lib/config';
import { flowtap } from '../../lib/proto';
import { kindName, runService } from '../../lib/service';
import { Kind } from '../../lib/transport';
import { http2Parser } from './parsers/http2';
import { tlsParser } from './parsers/tls';
import { L7Input } from './l7-input';
import { MessageRecorder } from './recording';

interface Outgoing { target: ServiceName; kind: number; body: Uint8Array; count: number }

void runService({
  name: 'l7',
  async setup(ctx) {
    const cfg = ctx.config.l7;
    // Finished messages wait here until the handler that made them sends them (back-pressure).
    const outbox: Outgoing[] = [];
    const input = new L7Input({
      l7LogPerSecond: cfg.l7_log_per_second,
      maxSessions: cfg.max_sessions,
      batchSize: ctx.config.transport.batch_size,
      sessionTimeoutUs: { DNS: cfg.session_timeout.dns * 1e6, TLS: cfg.session_timeout.tls * 1e6 },
      defaultSessionTimeoutUs: cfg.session_timeout.others * 1e6,
      sendLogs: (body, count) => outbox.push({ target: 'sender', kind: Kind.L7_LOG_BATCH, body, count }),
      sendMeters: (body, count) => outbox.push({ target: 'quadruple', kind: Kind.APP_METER_BATCH, body, count }),
    });
    const send = async () => {
      for (let i = 0; i < outbox.length; i++) {
        const o = outbox[i];
        await ctx.send(o.target, o.kind, o.body, o.count);
      }
      outbox.length = 0;
    };
    // FLOWTAP_L7_RECORD=<file> keeps what l7 takes, ticks included, as input for bench/l7-bench.ts.
    const recordTo = process.env.FLOWTAP_L7_RECORD;
    const recorder = recordTo ? new MessageRecorder(recordTo) : undefined;
    const recordControl = (kind: flowtap.Control.Kind, timeUs: number) =>
      recorder?.write(Kind.CONTROL, flowtap.Control.encode({ kind, time_us: timeUs, source: 'l7-recording' }).finish());
    const { stage, socketL7 } = input;
    ctx.metrics.trackDrops('l7_', () => stage.drops);
    ctx.metrics.trackDrops('l7_', () => input.throttleDrops);
    ctx.metrics.trackDrops('l7_ebpf_', () => ({ ...socketL7.stage.drops, malformed_socket_batch: input.malformedSocketBatches }));
    ctx.metrics.trackSize('l7_ebpf_sockets', () => socketL7.socketCount);
    // Encrypted bytes of sockets whose plaintext comes from the TLS probes: skipped, not lost.
    ctx.metrics.trackSize('l7_ebpf_tls_ciphertext_rows_skipped', () => socketL7.counters.tls_ciphertext);
    // Parsers that keep their own drop counters (header blocks that cannot be decoded, bad records).
    ctx.metrics.trackDrops('l7_http2_', () => http2Parser.drops);
    ctx.metrics.trackDrops('l7_tls_', () => tlsParser.drops);
    ctx.metrics.trackSize('l7_flows', () => stage.flowCount);
    ctx.metrics.trackSize('l7_sessions', () => stage.sessionCount);
    ctx.metrics.trackSize('l7_buffered_bytes', () => stage.bufferedBytes);
    return {
      async onBatch(kind, body) {
        recorder?.write(kind, body);
        try {
          const records = input.batch(kind, body);
          ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, records);
        } finally {
          // Records made before a malformed item still go out.
          await send();
        }
      },
      async onTick(timeUs) {
        recordControl(flowtap.Control.Kind.TICK, timeUs);
        input.tick(timeUs);
        await send();
      },
      async onEndOfStream() {
        recordControl(flowtap.Control.Kind.END_OF_STREAM, 0);
        input.end();
        await send();
      },
    };
  },
});
