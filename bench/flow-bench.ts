// Flow stage benchmarks: packets/s on a generated stream of many short TCP flows, and memory
// per flow with many concurrent flows. Run: node --expose-gc dist/bench/flow-bench.js [flows]
import { PacketBatch, TCP_ACK, TCP_FIN, TCP_SYN } from '../lib/packet-batch';
import { FlowMap } from '../services/flow/flow-map';
import { AppPayloadBatchEncoder, FlowBatchEncoder } from '../services/flow/report-encoder';

const T0 = 1_700_000_000e6;

/** The 8 packets of a short TCP connection: handshake, request, response, FINs, last ACK. */
const SCRIPT: Array<{ fromClient: boolean; flags: number; len: number }> = [
  { fromClient: true, flags: TCP_SYN, len: 0 },
  { fromClient: false, flags: TCP_SYN | TCP_ACK, len: 0 },
  { fromClient: true, flags: TCP_ACK, len: 0 },
  { fromClient: true, flags: TCP_ACK, len: 120 },
  { fromClient: false, flags: TCP_ACK, len: 900 },
  { fromClient: true, flags: TCP_FIN | TCP_ACK, len: 0 },
  { fromClient: false, flags: TCP_FIN | TCP_ACK, len: 0 },
  { fromClient: true, flags: TCP_ACK, len: 0 },
];

const PAYLOAD = Buffer.from('GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n'.padEnd(900, 'x'));

function writePacket(b: PacketBatch, flow: number, step: number, ts: number, withPayload = false): void {
  const s = SCRIPT[step];
  const i = b.begin();
  b.timestampUs[i] = ts;
  b.ipVersion[i] = 4;
  b.protocol[i] = 6;
  const client = 0x0a000000 + (flow & 0xffffff); // 10.x.y.z, one address per flow
  const server = 0xc0a80001 + (flow % 16);       // 16 servers
  const cport = 1024 + (flow % 60000);
  const [src, dst] = s.fromClient ? [client, server] : [server, client];
  b.ipSrc32[i * 4 + 2] = 0xffff0000;
  b.ipDst32[i * 4 + 2] = 0xffff0000;
  b.ipSrc32[i * 4 + 3] = ((src >>> 24) | ((src >>> 8) & 0xff00) | ((src << 8) & 0xff0000) | (src << 24)) >>> 0;
  b.ipDst32[i * 4 + 3] = ((dst >>> 24) | ((dst >>> 8) & 0xff00) | ((dst << 8) & 0xff0000) | (dst << 24)) >>> 0;
  b.portSrc[i] = s.fromClient ? cport : 80;
  b.portDst[i] = s.fromClient ? 80 : cport;
  b.tcpFlags[i] = s.flags;
  b.tcpSeq[i] = s.fromClient ? 1000 + (step > 3 ? 121 : step > 0 ? 1 : 0) : 5000 + (step > 4 ? 901 : step > 1 ? 1 : 0);
  b.tcpAck[i] = 1;
  b.tcpWindow[i] = 65535;
  b.l4PayloadLen[i] = s.len;
  b.l3Len[i] = 40 + s.len;
  b.frameLen[i] = 54 + s.len;
  if (withPayload && s.len > 0) b.setPayload(i, PAYLOAD, 0, s.len);
  b.commit();
}

export interface FlowBenchResult {
  packets: number; flows: number; seconds: number; packetsPerSec: number; cpuSeconds: number; packetsPerCpuSec: number; flowsPerSec: number;
  reports: number; maxOpen: number; drops: Record<string, number>;
}

/**
 * `concurrent` connections in flight, each 8 packets long, the stream's packets `gapUs` apart on
 * the wire; only processBatch/advance time is measured (generation excluded).
 */
export function benchFlowThroughput(totalFlows = 400_000, concurrent = 2_000, gapUs = 20, withPayloads = false): FlowBenchResult {
  let reports = 0;
  // With payloads: a cheap infer on the first payload, and reports and payloads encoded to
  // protobuf batches as the flow service does (payload bytes copied into the AppPayloadBatch).
  const flowEncoder = new FlowBatchEncoder(1024);
  const payloadEncoder = new AppPayloadBatchEncoder(1024);
  const map = new FlowMap({
    onFlowReport: withPayloads
      ? (r) => { reports++; flowEncoder.add(r); if (flowEncoder.count === 1024) flowEncoder.take(); }
      : () => { reports++; },
    onPayloadReport: withPayloads ? (p) => { payloadEncoder.add(p); if (payloadEncoder.count === 1024) payloadEncoder.take(); } : undefined,
  }, withPayloads ? (_id, p) => (p[0] === 0x47 ? 'HTTP' : '') : undefined);
  const b = new PacketBatch(1024);
  let ts = T0, elapsedNs = 0n, cpuUs = 0, packets = 0, maxOpen = 0;
  // Wall time and this thread's CPU time around the stage only: other work shares the cores.
  const timed = (fn: () => void) => {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    fn();
    elapsedNs += process.hrtime.bigint() - t0;
    const c = process.cpuUsage(c0);
    cpuUs += c.user + c.system;
  };
  const flush = () => {
    timed(() => map.processBatch(b));
    packets += b.count;
    if (map.flowsOpen > maxOpen) maxOpen = map.flowsOpen;
    b.reset();
  };
  for (let gen = 0; gen * concurrent < totalFlows; gen++) {
    for (let step = 0; step < SCRIPT.length; step++) {
      for (let k = 0; k < concurrent; k++) {
        if (b.full) flush();
        writePacket(b, gen * concurrent + k, step, ts, withPayloads);
        ts += gapUs;
      }
    }
  }
  flush();
  timed(() => map.flush());
  const seconds = Number(elapsedNs) / 1e9;
  const cpuSeconds = cpuUs / 1e6;
  return { packets, flows: map.totals.flowsCreated, seconds, packetsPerSec: packets / seconds,
    cpuSeconds, packetsPerCpuSec: packets / cpuSeconds,
    flowsPerSec: map.totals.flowsCreated / seconds, reports, maxOpen, drops: { ...map.drops } };
}

/**
 * Bytes of heap + typed-array memory per open flow with `flows` concurrent TCP flows (one
 * mid-stream data packet each, no payload kept), measured after a full GC before and after.
 * Includes the flow slots, hash buckets, timer wheel, per-second counter rows and the service table.
 * The flows open over `spreadSeconds` of packet time (1 M over 100 s: 10 k new flows a second,
 * none idle long enough to time out), and the last second is reported before measuring, so the
 * per-second counters are held for the flows of one second only. With `spreadSeconds` 0 every
 * flow is active in the same second and still unreported: the worst case for those counters.
 */
export function benchFlowMemory(flows = 1_000_000, spreadSeconds = 100): { flows: number; spreadSeconds: number; bytesPerFlow: number; heapBytesPerFlow: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('benchFlowMemory needs node --expose-gc');
  const used = () => { gc(); gc(); const m = process.memoryUsage(); return { heap: m.heapUsed, all: m.heapUsed + m.arrayBuffers }; };
  const b = new PacketBatch(1024);
  const before = used();
  const map = new FlowMap({ onFlowReport: () => undefined }, undefined, { maxFlows: flows });
  const gapUs = spreadSeconds > 0 ? (spreadSeconds * 1e6) / flows : 1 / flows;
  let ts = T0;
  for (let k = 0; k < flows; k++) {
    if (b.full) { map.processBatch(b); b.reset(); }
    ts = T0 + Math.floor(k * gapUs);
    writePacket(b, k, 3, ts);
  }
  map.processBatch(b);
  b.reset();
  if (spreadSeconds > 0) map.advance(ts + 1e6);
  const after = used();
  if (map.flowsOpen !== flows) throw new Error(`expected ${flows} open flows, got ${map.flowsOpen}`);
  return { flows, spreadSeconds, bytesPerFlow: Math.round((after.all - before.all) / flows), heapBytesPerFlow: Math.round((after.heap - before.heap) / flows) };
}

export interface FlowBenchReport {
  memory: ReturnType<typeof benchFlowMemory>;
  memoryAllActive: ReturnType<typeof benchFlowMemory>;
  throughput: FlowBenchResult;
  throughputWithPayloads: FlowBenchResult;
}

/**
 * The flow stage's figures for bench/run.ts: bytes per flow with 1 M concurrent flows, opened
 * over 100 s and all in one second (needs node --expose-gc), and packets/s without and with payload handling (inference + AppPayload copies).
 */
export function benchFlow(concurrentFlows = 1_000_000): FlowBenchReport {
  const memory = benchFlowMemory(concurrentFlows); // first, before other runs leave garbage behind
  const memoryAllActive = benchFlowMemory(concurrentFlows, 0);
  benchFlowThroughput(50_000); // warm-up
  return {
    memory,
    memoryAllActive,
    throughput: benchFlowThroughput(),
    throughputWithPayloads: benchFlowThroughput(400_000, 2_000, 20, true),
  };
}

if (require.main === module) {
  console.log(JSON.stringify(benchFlow(Number(process.argv[2] ?? 1_000_000)), null, 1));
}
