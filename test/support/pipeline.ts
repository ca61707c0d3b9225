// The whole data path in one process, for tests over many capture files: the stage libraries of
// capture, flow, l7 and quadruple chained as the services chain them (same config defaults, same
// tick rule, protobuf encode/decode at every process boundary), without ZeroMQ or processes.
// The sender is left out: its input (Documents, L4 and L7 logs) is what the run returns.
import { PacketBatch } from '../../lib/packet-batch';
import { flowtap } from '../../lib/proto';
import { LeakyBucketThrottle } from '../../lib/throttle';
import { defaultConfig } from '../../lib/config';
import { FrameDecoder } from '../../services/capture/decode';
import { pumpCaptureFile } from '../../services/capture/file-pump';
import { FlowMap } from '../../services/flow/flow-map';
import { ProtocolInference } from '../../services/l7/inference';
import { DEFAULT_PARSERS } from '../../services/l7/registry';
import { L7Stage } from '../../services/l7/stage';
import { QuadrupleConfig, QuadrupleStage } from '../../services/quadruple/quadruple-stage';

const SECOND_US = 1_000_000;

export interface PipelineOptions {
  quadruple?: Partial<QuadrupleConfig>;
  /** L7 logs per second through the leaky bucket (default: the config's). */
  l7LogPerSecond?: number;
}

export interface PipelineResult {
  documents: flowtap.IDocument[];
  l4Logs: flowtap.IL4FlowLog[];
  l7Logs: flowtap.IL7FlowLog[];
  /** Frames read and rows decoded by capture. */
  frames: number;
  rows: number;
  drops: {
    decode: Record<string, number>;
    flow: Record<string, number>;
    l7: Record<string, number>;
    quadruple: Record<string, number>;
    l7LogThrottled: number;
  };
}

/** Replays `file` through capture -> flow (+inference) -> l7 -> quadruple, and returns their output. */
export async function runPipeline(file: string, opts: PipelineOptions = {}): Promise<PipelineResult> {
  const cfg = defaultConfig();
  const documents: flowtap.IDocument[] = [];
  const l4Logs: flowtap.IL4FlowLog[] = [];
  const l7Logs: flowtap.IL7FlowLog[] = [];

  // quadruple, as services/quadruple/main.ts builds it.
  const q = new QuadrupleStage({ onDocument: (d) => documents.push(d), onL4Log: (l) => l4Logs.push(l) }, {
    toleranceSecondSec: cfg.quadruple.late_tolerance_1s,
    toleranceMinuteSec: cfg.quadruple.late_tolerance_1m,
    l4LogPerSecond: cfg.quadruple.l4_log_per_second,
    aggregateHealthChecks: cfg.quadruple.aggregate_health_checks,
    carryIdleLimitSec: cfg.quadruple.carry_idle_limit,
    ...opts.quadruple,
  });

  // l7, as services/l7/main.ts builds it (logs through the leaky bucket).
  const timeouts = cfg.l7.session_timeout;
  const timeoutOf = (name: string) => (name === 'DNS' ? timeouts.dns : name === 'TLS' ? timeouts.tls : timeouts.others) * SECOND_US;
  const l7Throttle = new LeakyBucketThrottle<flowtap.IL7FlowLog>(opts.l7LogPerSecond ?? cfg.l7.l7_log_per_second);
  let meters: flowtap.IAppMeter[] = [];
  const l7 = new L7Stage((log) => {
    if (l7Throttle.admit(log, Number(log.end_time || log.start_time || 0))) {
      l7Logs.push(...flowtap.L7LogBatch.decode(flowtap.L7LogBatch.encode({ logs: [log] }).finish()).logs);
    }
  }, (m) => meters.push(m), {
    maxSessions: cfg.l7.max_sessions,
    sessionTimeoutUs: Object.fromEntries(DEFAULT_PARSERS.map((p) => [p.name, timeoutOf(p.name)])),
  });
  const metersToQuadruple = () => {
    if (meters.length === 0) return;
    q.addAppMeters(flowtap.AppMeterBatch.decode(flowtap.AppMeterBatch.encode({ meters }).finish()).meters);
    meters = [];
  };

  // flow, as services/flow/main.ts builds it.
  const fc = cfg.flow;
  const inference = new ProtocolInference();
  let flows: flowtap.IFlow[] = [];
  let payloads: flowtap.IAppPayload[] = [];
  const map: FlowMap = new FlowMap(
    {
      onFlow: (f) => { flows.push(f); if (f.is_closed) inference.forget(Number(f.flow_id)); },
      onAppPayload: (p) => payloads.push(p),
    },
    (flowId, payload, fromClient, protocol, serverPort): string => inference.infer(flowId, payload, fromClient, protocol, serverPort, map.nowUs),
    {
      maxFlows: fc.max_flows,
      serverPorts: new Set(fc.server_ports),
      timeouts: {
        establishedUs: fc.timeouts.established * SECOND_US, openingUs: fc.timeouts.opening * SECOND_US,
        closingUs: fc.timeouts.closing * SECOND_US, rstUs: fc.timeouts.rst * SECOND_US,
        udpUs: fc.timeouts.udp * SECOND_US, otherUs: fc.timeouts.others * SECOND_US,
      },
    },
  );
  // flow's sendAll: payloads to l7, then flow reports to quadruple.
  const sendAll = () => {
    if (payloads.length > 0) {
      l7.pushBatch(flowtap.AppPayloadBatch.decode(flowtap.AppPayloadBatch.encode({ items: payloads }).finish()).items);
      payloads = [];
      metersToQuadruple();
    }
    if (flows.length > 0) {
      q.addFlows(flowtap.FlowBatch.decode(flowtap.FlowBatch.encode({ flows }).finish()).flows);
      flows = [];
    }
  };
  // The tick flow broadcasts when packet time enters a new second.
  let tickedSecond = -1;
  const flowBatch = new PacketBatch(cfg.transport.batch_size, cfg.capture.payload_cut);

  // capture, as services/capture/main.ts replays a file.
  const decoder = new FrameDecoder();
  const captureBatch = new PacketBatch(cfg.transport.batch_size, cfg.capture.payload_cut);
  const pumped = await pumpCaptureFile(file, decoder, captureBatch, (b) => {
    flowBatch.decode(b.encode());
    map.processBatch(flowBatch);
    const second = Math.floor(map.nowUs / SECOND_US);
    if (second > tickedSecond) {
      sendAll();
      if (tickedSecond >= 0) {
        l7.tick(map.nowUs);
        metersToQuadruple();
        q.advance(map.nowUs);
      }
      tickedSecond = second;
    }
  });

  // End of stream: each stage flushes and passes the marker on.
  map.flush();
  sendAll();
  l7.flush();
  metersToQuadruple();
  q.flush();

  // Documents and L4 logs cross to the sender encoded too.
  const docsOut = flowtap.DocumentBatch.decode(flowtap.DocumentBatch.encode({ documents }).finish()).documents;
  const l4Out = flowtap.L4LogBatch.decode(flowtap.L4LogBatch.encode({ logs: l4Logs }).finish()).logs;
  return {
    documents: docsOut,
    l4Logs: l4Out,
    l7Logs,
    frames: pumped.frames,
    rows: pumped.rows,
    drops: {
      decode: { ...decoder.drops },
      flow: { ...map.drops },
      l7: { ...l7.drops },
      quadruple: { ...q.drops },
      l7LogThrottled: l7Throttle.dropped,
    },
  };
}
