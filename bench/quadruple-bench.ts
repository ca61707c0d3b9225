// Quadruple benchmark: flow reports/s through what the quadruple service does per FlowBatch
// message (decode straight from the body, 1 s and 1 min windows, concurrent connections,
// FlowAggr, the L4 log throttle, DocumentBatch/L4LogBatch encoding), without the socket; and the
// stage alone on decoded objects (no encoding). Run: node dist/bench/quadruple-bench.js
import { flowtap } from '../lib/proto';
import { PacketBatch } from '../lib/packet-batch';
import { QuadrupleStage } from '../services/quadruple/quadruple-stage';

const T0 = 1_700_000_040;

function v4(a: number): Uint8Array {
  const b = new Uint8Array(16);
  PacketBatch.setIpv4(b, 0, Uint8Array.of(10, (a >> 16) & 255, (a >> 8) & 255, a & 255), 0);
  return b;
}

export interface QuadrupleBenchResult {
  /** wire: FlowBatch bodies in, encoded batches out (the service); objects: decoded records in, objects out. */
  path: 'wire' | 'objects';
  reports: number; seconds: number; cpuSeconds: number; reportsPerSec: number; reportsPerCpuSec: number; documents: number; l4Logs: number;
}

/**
 * Flow reports per second through the quadruple service's work (decode + stage), on 10 000
 * flows reporting every second for 60 s (a warm-up run first).
 */
export function benchQuadruple(): number {
  measureQuadruple(2_000, 10);
  return measureQuadruple().reportsPerSec;
}

/** `flows` flows with 1000 clients and 50 servers, each reporting every second for `seconds` s. */
export function measureQuadruple(flows = 10_000, seconds = 60, path: 'wire' | 'objects' = 'wire'): QuadrupleBenchResult {
  let documents = 0, l4Logs = 0;
  const q = path === 'wire'
    ? new QuadrupleStage({ batchSize: 1024, onDocumentBatch: (_, n) => { documents += n; }, onL4LogBatch: (_, n) => { l4Logs += n; } })
    : new QuadrupleStage({ onDocument: () => { documents++; }, onL4Log: () => { l4Logs++; } });
  let cpuUs = 0;
  const clients = Array.from({ length: 1000 }, (_, k) => v4(k));
  const servers = Array.from({ length: 50 }, (_, k) => v4(0x100000 + k));
  let elapsedNs = 0n, reports = 0;
  const batch: flowtap.IFlow[] = [];
  const send = () => {
    // What arrives on the socket: one encoded FlowBatch (encoding is flow's cost, not timed).
    const body = flowtap.FlowBatch.encode({ flows: batch }).finish();
    // The objects path is timed without its protobufjs decode: the stage alone.
    const decoded = path === 'objects' ? flowtap.FlowBatch.decode(body).flows : [];
    const c0 = process.cpuUsage(), t0 = process.hrtime.bigint();
    if (path === 'wire') q.addFlowBatch(body);
    else q.addFlows(decoded);
    elapsedNs += process.hrtime.bigint() - t0;
    const c = process.cpuUsage(c0);
    cpuUs += c.user + c.system;
    reports += batch.length;
    batch.length = 0;
  };
  for (let s = 0; s < seconds; s++) {
    for (let k = 0; k < flows; k++) {
      batch.push({
        flow_id: k + 1, start_time: T0 * 1e6, end_time: (T0 + s) * 1e6 + 5e5, report_time: (T0 + s) * 1e6,
        ip_version: 4, ip_0: clients[k % 1000], ip_1: servers[k % 50], client_port: 1024 + k, server_port: 80,
        protocol: 6, l7_protocol: 'HTTP', is_new_flow: s === 0, is_closed: s === seconds - 1,
        close_type: s === seconds - 1 ? 'finish' : '', packet_tx: 3, packet_rx: 4, byte_tx: 300, byte_rx: 4000,
        l3_byte_tx: 258, l3_byte_rx: 3944, l4_byte_tx: 100, l4_byte_rx: 3800, tcp_flags_tx: 0x18, tcp_flags_rx: 0x18,
        srt_sum: 1000, srt_count: 1, srt_max: 1000, art_sum: 2000, art_count: 1, art_max: 2000,
      });
      if (batch.length === 1024) send();
    }
  }
  send();
  const c0 = process.cpuUsage(), t0 = process.hrtime.bigint();
  q.flush();
  if (path === 'wire') (q as QuadrupleStage).flushBatches();
  elapsedNs += process.hrtime.bigint() - t0;
  const c = process.cpuUsage(c0);
  cpuUs += c.user + c.system;
  const secs = Number(elapsedNs) / 1e9, cpuSecs = cpuUs / 1e6;
  return { path, reports, seconds: secs, cpuSeconds: cpuSecs, reportsPerSec: reports / secs, reportsPerCpuSec: reports / cpuSecs, documents, l4Logs };
}

if (require.main === module) {
  for (const path of ['wire', 'objects'] as const) {
    measureQuadruple(2_000, 10, path); // warm-up
    console.log(JSON.stringify(measureQuadruple(10_000, 60, path)));
  }
}
