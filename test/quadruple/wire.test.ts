// The service's path through the quadruple stage (FlowBatch/AppMeterBatch bodies decoded by
// wire.ts, DocumentBatch/L4LogBatch bodies written from the meter slots) against the object path
// (protobufjs-decoded records in, objects out): on real captures both must give the same rows and
// logs, read back with protobufjs as the sender reads them.
import test from 'ava';
import * as path from 'node:path';
import { flowtap } from '../../lib/proto';
import { PacketBatch } from '../../lib/packet-batch';
import { FlowMap } from '../../services/flow/flow-map';
import { QuadrupleConfig, QuadrupleStage } from '../../services/quadruple/quadruple-stage';
import { CORPUS, batchesFromCapture } from '../flow/tshark-packets';

const BATCH = 64;

/** Both paths fed the same records; returns their outputs as sorted JSON lines, each through protobufjs (as the service sent them before). */
function runBoth(feed: (add: (flows: flowtap.IFlow[], meters: flowtap.IAppMeter[], tickUs?: number) => void) => void, config: Partial<QuadrupleConfig>) {
  const objDocs: string[] = [], objLogs: string[] = [];
  const obj = new QuadrupleStage({
    onDocument: (d) => objDocs.push(JSON.stringify(flowtap.Document.toObject(flowtap.Document.decode(flowtap.Document.encode(d).finish()), { defaults: true }))),
    onL4Log: (l) => objLogs.push(JSON.stringify(flowtap.L4FlowLog.toObject(flowtap.L4FlowLog.decode(flowtap.L4FlowLog.encode(l).finish()), { defaults: true }))),
  }, config);
  const wireDocs: string[] = [], wireLogs: string[] = [];
  let batches = 0;
  const wire = new QuadrupleStage({
    batchSize: BATCH,
    onDocumentBatch: (body, count) => {
      const docs = flowtap.DocumentBatch.decode(body).documents;
      if (docs.length !== count) throw new Error('batch count');
      batches++;
      for (const d of docs) wireDocs.push(JSON.stringify(flowtap.Document.toObject(d as flowtap.Document, { defaults: true })));
    },
    onL4LogBatch: (body, count) => {
      const logs = flowtap.L4LogBatch.decode(body).logs;
      if (logs.length !== count) throw new Error('batch count');
      for (const l of logs) wireLogs.push(JSON.stringify(flowtap.L4FlowLog.toObject(l as flowtap.L4FlowLog, { defaults: true })));
    },
  }, config);
  feed((flows, meters, tickUs) => {
    if (flows.length) {
      obj.addFlows(flowtap.FlowBatch.decode(flowtap.FlowBatch.encode({ flows }).finish()).flows);
      t0(wire.addFlowBatch(flowtap.FlowBatch.encode({ flows }).finish()), flows.length);
    }
    if (meters.length) {
      obj.addAppMeters(flowtap.AppMeterBatch.decode(flowtap.AppMeterBatch.encode({ meters }).finish()).meters);
      t0(wire.addAppMeterBatch(flowtap.AppMeterBatch.encode({ meters }).finish()), meters.length);
    }
    if (tickUs) { obj.advance(tickUs); wire.advance(tickUs); wire.flushBatches(); }
  });
  obj.flush();
  wire.flush();
  wire.flushBatches();
  return { obj, wire, objDocs: objDocs.sort(), objLogs: objLogs.sort(), wireDocs: wireDocs.sort(), wireLogs: wireLogs.sort(), batches };
}

function t0(got: number, want: number): void {
  if (got !== want) throw new Error(`decoded ${got} records, sent ${want}`);
}

/** An AppMeter per flow report with an L7 protocol, as l7 would send for its requests. */
function metersOf(flows: flowtap.IFlow[]): flowtap.IAppMeter[] {
  return flows.filter((f) => f.l7_protocol).map((f, k) => ({
    flow_id: f.flow_id, time: Math.floor(Number(f.report_time) / 1e6), ip_version: f.ip_version, ip_0: f.ip_0, ip_1: f.ip_1,
    server_port: f.server_port, protocol: f.protocol, l7_protocol: f.l7_protocol, endpoint: k % 3 === 0 ? '/caf\u00e9' : `/p${k % 7}`,
    request: 1, response: k % 5 === 0 ? 0 : 1, server_error: k % 11 === 0 ? 1 : 0, rrt_sum: 1000 + k, rrt_count: 1, rrt_max: 1000 + k,
  }));
}

for (const rel of ['mixed/zeek/wikipedia.pcap', 'http1/deepflow/http.pcap', 'dns/tcpdump/dns_tcp.pcap']) {
  test(`wire path = object path on ${rel}`, (t) => {
    const file = path.join(CORPUS, rel);
    const r = runBoth((add) => {
      const pending: flowtap.IFlow[] = [];
      const map = new FlowMap({ onFlow: (f) => pending.push(f) });
      for (const b of batchesFromCapture(file).batches) {
        map.processBatch(b);
        const flows = pending.splice(0);
        add(flows, metersOf(flows));
      }
      map.flush();
      const flows = pending.splice(0);
      add(flows, metersOf(flows));
    }, { l4LogPerSecond: 2, throttleSeed: 5, aggregateHealthChecks: true });
    t.true(r.objDocs.length > 0);
    t.deepEqual(r.wireDocs, r.objDocs);
    t.deepEqual(r.wireLogs, r.objLogs);
    t.deepEqual(r.wire.drops, r.obj.drops);
    t.deepEqual(r.wire.totals, r.obj.totals);
  });
}

function v4(a: number): Uint8Array {
  const b = new Uint8Array(16);
  PacketBatch.setIpv4(b, 0, Uint8Array.of(10, 0, (a >> 8) & 255, a & 255), 0);
  return b;
}

test('wire path: 64-bit values, health checks, throttled logs, many rows, idle windows', (t) => {
  const T = 1_700_000_040;
  const r = runBoth((add) => {
    for (let s = 0; s < 130; s += s < 10 ? 1 : 20) {
      const flows: flowtap.IFlow[] = [];
      for (let k = 0; k < 300; k++) {
        const check = k % 10 === 0;
        flows.push({
          flow_id: 2 ** 40 + k, start_time: T * 1e6, end_time: (T + s) * 1e6 + k, report_time: (T + s) * 1e6, ip_version: 4,
          ip_0: v4(k), ip_1: v4(1000 + (k % 7)), client_port: 1024 + k, server_port: check ? 8080 : 443, protocol: 6,
          l7_protocol: k % 2 ? 'HTTP' : '', is_new_flow: s === 0, is_closed: check || s === 129,
          close_type: check ? 'tcp_client_rst' : s === 129 ? 'timeout' : '',
          packet_tx: check ? 3 : 2 ** 33 + k, packet_rx: 1, byte_tx: check ? 180 : 5e12 + k, byte_rx: 77, l4_byte_tx: check ? 0 : 9,
          syn_count: check ? 1 : 0, synack_count: check ? 1 : 0, tcp_flags_tx: 0x12, rtt: k, srt_sum: k, srt_count: 1, srt_max: k,
        });
      }
      add(flows, metersOf(flows), (T + s + 1) * 1e6);
    }
  }, { l4LogPerSecond: 20, throttleSeed: 11, aggregateHealthChecks: true });
  t.true(r.obj.drops.l4_log_throttled > 0, 'the throttle dropped logs');
  t.true(r.obj.counters.health_checks_merged > 0);
  t.true(r.batches > 10);
  t.deepEqual(r.wireDocs, r.objDocs);
  t.deepEqual(r.wireLogs, r.objLogs);
  t.true(r.wireLogs.some((l) => JSON.parse(l).byte_tx > 2 ** 40), 'uint64 above 2^32 written (and equal to the object path above)');
});

test('wire path: unknown fields are skipped, a truncated body throws, bad records are counted', (t) => {
  const flow: flowtap.IFlow = { flow_id: 1, report_time: 1_700_000_000e6, ip_0: v4(1), ip_1: v4(2), server_port: 80, protocol: 6, packet_tx: 3 };
  const body = Buffer.from(flowtap.FlowBatch.encode({ flows: [flow, { ...flow, flow_id: 2, ip_1: new Uint8Array(4) }] }).finish());
  // Field 99 (varint) and field 98 (bytes) appended inside the first Flow: a newer sender's fields.
  const first = flowtap.Flow.encode(flow).finish();
  const extra = Buffer.concat([Buffer.from(first), Buffer.from([0x98, 0x06, 0x7f, 0x92, 0x06, 0x02, 0xaa, 0xbb])]);
  const withUnknown = Buffer.concat([Buffer.from([0x0a, extra.length]), extra, body.subarray(2 + first.length)]);
  const q = new QuadrupleStage({ batchSize: 10, onDocumentBatch: () => undefined, onL4LogBatch: () => undefined });
  t.is(q.addFlowBatch(withUnknown), 2);
  t.is(q.totals.flows, 1);
  t.is(q.drops.bad_flow, 1, 'a 4-byte address is a bad record');
  t.throws(() => q.addFlowBatch(body.subarray(0, body.length - 3)), { message: /truncated/ });
  t.throws(() => q.addAppMeterBatch(Buffer.from([0x0a, 0x05, 0x08])), { message: /truncated/ });
});
