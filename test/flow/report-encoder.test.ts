// The flow process's hand-written FlowBatch / AppPayloadBatch encoders against the generated
// protobufjs code: every report of real captures, encoded from the reused records, must decode
// (with flowtap.FlowBatch.decode / AppPayloadBatch.decode) to the same values as the same report
// encoded by protobufjs from its object copy; and so must reports with awkward values.
import test from 'ava';
import * as path from 'node:path';
import { flowtap } from '../../lib/proto';
import { PacketBatch } from '../../lib/packet-batch';
import { FrameDecoder } from '../../services/capture/decode';
import { pumpCaptureFile } from '../../services/capture/file-pump';
import { FlowMap } from '../../services/flow/flow-map';
import { FlowReport, PayloadReport, toAppPayload, toFlow } from '../../services/flow/flow-report';
import { AppPayloadBatchEncoder, FlowBatchEncoder } from '../../services/flow/report-encoder';
import { ProtocolInference } from '../../services/l7/inference';
import { CORPUS } from './tshark-packets';

const asObject = { defaults: true, arrays: true, bytes: Array } as const;
const flowsOf = (bytes: Uint8Array) => flowtap.FlowBatch.decode(bytes).flows.map((f) => flowtap.Flow.toObject(f as flowtap.Flow, asObject));
const itemsOf = (bytes: Uint8Array) => flowtap.AppPayloadBatch.decode(bytes).items.map((p) => flowtap.AppPayload.toObject(p as flowtap.AppPayload, asObject));

/** Runs a capture with both outputs: our encoders (batches of 50) and protobufjs on the object copies. */
async function bothEncodings(file: string) {
  const flowEnc = new FlowBatchEncoder(50);
  const payloadEnc = new AppPayloadBatchEncoder(50);
  const ours = { flows: [] as Uint8Array[], payloads: [] as Uint8Array[] };
  const objects = { flows: [] as flowtap.IFlow[], payloads: [] as flowtap.IAppPayload[] };
  const inference = new ProtocolInference();
  const map: FlowMap = new FlowMap({
    onFlowReport: (r) => {
      flowEnc.add(r);
      if (r.is_closed) payloadEnc.addFlowClosed(r.flow_id, r.end_time);
      if (flowEnc.count === flowEnc.batchSize) ours.flows.push(flowEnc.take());
    },
    onFlow: (f) => {
      objects.flows.push(f);
      if (f.is_closed) objects.payloads.push({ flow_id: f.flow_id, timestamp_us: f.end_time, flow_closed: true });
    },
    onPayloadReport: (p) => {
      payloadEnc.add(p);
      if (payloadEnc.count >= payloadEnc.batchSize) ours.payloads.push(payloadEnc.take());
    },
    onAppPayload: (p) => objects.payloads.push(p),
  }, (id, p, fc, proto, port) => inference.infer(id, p, fc, proto, port, map.nowUs), { lastPayloadKind: () => inference.lastCheck });
  await pumpCaptureFile(path.join(CORPUS, file), new FrameDecoder(), new PacketBatch(256, 4096), (b) => map.processBatch(b));
  map.flush();
  ours.flows.push(flowEnc.take());
  ours.payloads.push(payloadEnc.take());
  return {
    ourFlows: ours.flows.flatMap(flowsOf),
    theirFlows: flowsOf(flowtap.FlowBatch.encode({ flows: objects.flows }).finish()),
    ourPayloads: ours.payloads.flatMap(itemsOf),
    theirPayloads: itemsOf(flowtap.AppPayloadBatch.encode({ items: objects.payloads }).finish()),
  };
}

for (const file of ['http1/zeek/methods.pcap', 'mixed/zeek/wikipedia.pcap', 'tls/zeek/tls13_wolfssl.pcap', 'dns/deepflow/a-and-ns.pcap',
  'tunnels/deepflow/ip6-vxlan.pcap', 'vlan/zeek/http-qinq-0.pcap', 'tcp-anomalies/zeek/rst-inject-rae.pcap']) {
  test(`every report and payload of ${file} decodes to the same values as protobufjs's encoding`, async (t) => {
    const r = await bothEncodings(file);
    t.true(r.theirFlows.length > 0);
    t.is(r.ourFlows.length, r.theirFlows.length);
    for (let k = 0; k < r.theirFlows.length; k++) t.deepEqual(r.ourFlows[k], r.theirFlows[k], `flow report ${k}`);
    t.is(r.ourPayloads.length, r.theirPayloads.length);
    for (let k = 0; k < r.theirPayloads.length; k++) t.deepEqual(r.ourPayloads[k], r.theirPayloads[k], `payload ${k}`);
  });
}

test('a capture with payloads and L7 names exercises every kind of field', async (t) => {
  const r = await bothEncodings('http1/zeek/methods.pcap');
  t.true(r.ourFlows.some((f) => f.l7_protocol !== '' && f.is_new_flow && Number(f.art_count) > 0 && Number(f.rtt) > 0));
  t.true(r.ourFlows.some((f) => f.is_closed && f.close_type !== ''));
  t.true(r.ourPayloads.some((p) => p.payload.length > 0 && p.l7_protocol !== '' && p.from_client));
  t.true(r.ourPayloads.some((p) => p.flow_closed));
});

test('awkward values: negative, past 2^32 and 2^53, fractional, NaN, large payloads', (t) => {
  const values = [0, 1, 127, 128, 16383, 16384, 2 ** 31, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 1.7e15 + 3, 2 ** 53 - 1, 2 ** 53 + 2,
    2 ** 64 + 4096, -1, -300, -(2 ** 40), 2.5, -2.5, 0.4, Number.NaN, -0];
  const flowEnc = new FlowBatchEncoder(1000);
  const payloadEnc = new AppPayloadBatchEncoder(1000);
  const flows: flowtap.IFlow[] = [];
  const payloads: flowtap.IAppPayload[] = [];
  const ipBytes = new Uint8Array(64).map((_, k) => k * 7);
  for (const v of values) {
    const r = new FlowReport();
    for (const k of Object.keys(r) as Array<keyof FlowReport>) if (typeof r[k] === 'number' && k !== 'ipOffset') (r as unknown as Record<string, number>)[k] = v;
    // uint32 fields take any number too (protobufjs writes value >>> 0).
    r.ipBytes = ipBytes; r.ipOffset = 16; r.l7_protocol = 'HTTP'; r.close_type = 'tcp_server_rst'; r.is_new_flow = true; r.is_closed = v < 0;
    flowEnc.add(r);
    flows.push(toFlow(r));
  }
  for (const len of [1, 100, 16000, 16384, 70_000]) {
    const p = new PayloadReport();
    p.flow_id = 2 ** 40 + len; p.timestamp_us = 1.7e15 + len; p.ip_version = 6; p.ipBytes = ipBytes; p.ipOffset = 32;
    p.client_port = 65535; p.server_port = 443; p.protocol = 6; p.from_client = len % 2 === 0; p.l7_protocol = 'TLS ü';
    p.tcp_seq = 0xffffffff; p.payload_len = len + 5;
    p.payloadBytes = new Uint8Array(len + 10).map((_, k) => k); p.payloadOffset = 7; p.payloadCap = len;
    p.vlan = 4095; p.tunnel_type = 3; p.tunnel_id = 0xfffffff0;
    payloadEnc.add(p);
    payloads.push(toAppPayload(p));
  }
  payloadEnc.addFlowClosed(2 ** 33, 1.7e15);
  payloads.push({ flow_id: 2 ** 33, timestamp_us: 1.7e15, flow_closed: true });
  t.deepEqual(flowsOf(flowEnc.take()), flowsOf(flowtap.FlowBatch.encode({ flows }).finish()));
  t.deepEqual(itemsOf(payloadEnc.take()), itemsOf(flowtap.AppPayloadBatch.encode({ items: payloads }).finish()));
  t.is(flowEnc.count, 0, 'take starts the next batch');
});
