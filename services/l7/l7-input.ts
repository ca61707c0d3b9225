// What the l7 service does with each message, without sockets: AppPayloadBatch and
// SocketDataBatch in; encoded L7LogBatch (to the sender) and AppMeterBatch (to quadruple)
// messages out, collected until the shell sends them. services/l7/main.ts and bench/l7-bench.ts
// both drive it.
import { flowtap } from '../../lib/proto';
import { ProtoWriter } from '../../lib/proto-wire';
import { LeakyBucketThrottle } from '../../lib/throttle';
import { Kind } from '../../lib/transport';
import { SocketDataBatch } from '../capture/ebpf-socket-batch';
import { DEFAULT_PARSERS } from './registry';
import { SocketDataL7 } from './socket-data';
import { L7Stage } from './stage';
import { AppPayloadBatchReader, AppPayloadRecord, writeAppMeter, writeL7Log } from './wire';

export interface L7InputOptions {
  l7LogPerSecond: number;
  maxSessions: number;
  /** Records per outgoing message. */
  batchSize: number;
  /** Session timeouts by protocol name, µs; others take defaultSessionTimeoutUs. */
  sessionTimeoutUs: Record<string, number>;
  defaultSessionTimeoutUs: number;
  /** Called with each finished L7LogBatch / AppMeterBatch body and its record count. */
  sendLogs(body: Uint8Array, count: number): void;
  sendMeters(body: Uint8Array, count: number): void;
}

export class L7Input {
  readonly stage: L7Stage;
  readonly socketL7: SocketDataL7;
  readonly throttleDrops = { l7_log_throttled: 0 };
  malformedSocketBatches = 0;
  private readonly socketBatch = new SocketDataBatch();
  private readonly reader = new AppPayloadBatchReader();
  // Records are written into the next outgoing message as they are made.
  private readonly logs = new ProtoWriter();
  private readonly meters = new ProtoWriter();
  private logCount = 0;
  private meterCount = 0;
  private readonly onItem = (p: AppPayloadRecord): void => {
    if (p.flowClosed) this.stage.closeFlow(p.flowId);
    else this.stage.pushRecord(p);
  };

  constructor(private readonly opts: L7InputOptions) {
    const timeouts = Object.fromEntries(DEFAULT_PARSERS.map((p) => [p.name, opts.sessionTimeoutUs[p.name] ?? opts.defaultSessionTimeoutUs]));
    // L7 logs pass a leaky bucket of l7_log_per_second on packet time (the log's end time);
    // AppMeters are not throttled, so the metrics still count every request.
    const throttle = new LeakyBucketThrottle<flowtap.IL7FlowLog>(opts.l7LogPerSecond);
    const throttledLogs = (log: flowtap.IL7FlowLog) => {
      if (throttle.admit(log, Number(log.end_time || log.start_time || 0))) {
        writeL7Log(this.logs, log);
        if (++this.logCount >= opts.batchSize) this.sendLogs();
      } else this.throttleDrops.l7_log_throttled = throttle.dropped;
    };
    const meterOut = (m: flowtap.IAppMeter) => {
      writeAppMeter(this.meters, m);
      if (++this.meterCount >= opts.batchSize) this.sendMeters();
    };
    this.stage = new L7Stage(throttledLogs, meterOut, { maxSessions: opts.maxSessions, sessionTimeoutUs: timeouts, reuseRecords: true });
    this.socketL7 = new SocketDataL7(throttledLogs, { maxSessions: opts.maxSessions, sessionTimeoutUs: timeouts });
  }

  /** One message from the socket; returns its record count. Throws on a malformed AppPayloadBatch. */
  batch(kind: number, body: Buffer): number {
    if (kind === Kind.SOCKET_DATA_BATCH) {
      if (!this.socketBatch.decode(body)) { this.malformedSocketBatches++; return 0; }
      this.socketL7.push(this.socketBatch);
      return this.socketBatch.count;
    }
    if (kind !== Kind.APP_PAYLOAD_BATCH) throw new Error(`l7 does not take message kind ${kind}`);
    return this.reader.read(body, this.onItem);
  }

  tick(timeUs: number): void {
    this.stage.tick(timeUs);
    this.socketL7.tick(timeUs);
    this.flushPartial();
  }

  end(): void {
    this.stage.flush();
    this.socketL7.flush();
    this.flushPartial();
  }

  private flushPartial(): void {
    if (this.logCount > 0) this.sendLogs();
    if (this.meterCount > 0) this.sendMeters();
  }

  private sendLogs(): void {
    const n = this.logCount;
    this.logCount = 0;
    this.opts.sendLogs(this.logs.take(), n);
  }

  private sendMeters(): void {
    const n = this.meterCount;
    this.meterCount = 0;
    this.opts.sendMeters(this.meters.take(), n);
  }
}
