// l7's hand-written codecs against protobufjs (the generated code every other process uses):
// the AppPayloadBatch reader must read what protobufjs reads, the L7LogBatch / AppMeterBatch
// writers must write the bytes protobufjs writes for the same records with their default fields
// left out, and the service path (L7Input) must produce what the stage's object path produces.
import test from 'ava';
import { flowtap } from '../../lib/proto';
import { XorShift32 } from '../../lib/throttle';
import { Kind } from '../../lib/transport';
import { L7Input } from '../../services/l7/l7-input';
import { DEFAULT_PARSERS } from '../../services/l7/registry';
import { L7Stage } from '../../services/l7/stage';
import { ProtoWireError, ProtoWriter } from '../../lib/proto-wire';
import { AppPayloadBatchReader, AppPayloadRecord, writeAppMeter, writeL7Log } from '../../services/l7/wire';
import { appPayloads, corpusFiles } from './tshark';

const rng = new XorShift32(12345);
const int = (n: number) => rng.below(n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
/** Edge values of unsigned fields: 0, varint length boundaries, 2^32 - 1 and (uint64) up to 2^53. */
const U32 = [0, 1, 127, 128, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 - 1, 2 ** 28, 2 ** 31, 2 ** 32 - 1];
const U64 = [...U32, 2 ** 32, 2 ** 35 + 7, 1_700_000_000_123_456, 2 ** 49 - 1, 2 ** 52 + 3, 2 ** 53 - 1];
const TEXT = ['', 'a', 'HTTP', 'DNS', 'ok', 'x'.repeat(127), 'y'.repeat(128), 'é', 'Grüße /ü?q=1', '日本語', '😀 emoji', 'z'.repeat(20000)];

function randomPayload(): flowtap.IAppPayload {
  const p: flowtap.IAppPayload = {};
  // Each field present or absent, so that defaults and missing fields are both read.
  if (int(4)) p.flow_id = pick(U64);
  if (int(4)) p.timestamp_us = pick(U64);
  if (int(4)) p.ip_version = pick([4, 6, 0, 300]);
  if (int(4)) p.ip_0 = bytes(pick([16, 16, 4, 0]));
  if (int(4)) p.ip_1 = bytes(pick([16, 16, 4, 0]));
  if (int(4)) p.client_port = pick(U32);
  if (int(4)) p.server_port = pick(U32);
  if (int(4)) p.protocol = pick([6, 17, 1, 0]);
  if (int(4)) p.from_client = int(2) === 1;
  if (int(4)) p.l7_protocol = pick(['', 'HTTP', 'DNS', 'MySQL', 'Oracle', 'é']);
  if (int(4)) p.tcp_seq = pick(U32);
  if (int(4)) p.payload_len = pick(U32);
  if (int(4)) p.payload = bytes(pick([0, 1, 60, 1024, 3000]));
  if (int(4)) p.vlan = pick(U32);
  if (int(4)) p.tunnel_type = pick(U32);
  if (int(4)) p.tunnel_id = pick(U32);
  if (int(4)) p.flow_closed = int(2) === 1;
  return p;
}

/** The record's fields under protobufjs's names, as plain values. */
function recordFields(r: AppPayloadRecord): Record<string, unknown> {
  return {
    flow_id: r.flowId, timestamp_us: r.timestampUs, ip_version: r.ipVersion,
    ip_0: r.ipBuf.toString('hex', r.ip0Start, r.ip0End), ip_1: r.ipBuf.toString('hex', r.ip1Start, r.ip1End),
    client_port: r.clientPort, server_port: r.serverPort, protocol: r.protocol, from_client: r.fromClient,
    l7_protocol: r.l7Protocol, tcp_seq: r.tcpSeq, payload_len: r.payloadLen,
    payload: r.payloadBuf.toString('hex', r.payloadStart, r.payloadEnd), vlan: r.vlan,
    tunnel_type: r.tunnelType, tunnel_id: r.tunnelId, flow_closed: r.flowClosed,
  };
}

function protobufjsFields(m: flowtap.IAppPayload): Record<string, unknown> {
  const o = flowtap.AppPayload.toObject(m as flowtap.AppPayload, { defaults: true, longs: Number });
  for (const k of ['ip_0', 'ip_1', 'payload']) o[k] = Buffer.from(o[k] as Uint8Array).toString('hex');
  return o;
}

function readAll(reader: AppPayloadBatchReader, body: Buffer): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  reader.read(body, (r) => out.push(recordFields(r)));
  return out;
}

test('AppPayloadBatchReader reads every field as protobufjs does, defaults and edge values included', (t) => {
  const reader = new AppPayloadBatchReader();
  for (let round = 0; round < 200; round++) {
    const items = Array.from({ length: int(40) }, randomPayload);
    const body = Buffer.from(flowtap.AppPayloadBatch.encode({ items }).finish());
    const want = flowtap.AppPayloadBatch.decode(body).items.map(protobufjsFields);
    t.deepEqual(readAll(reader, body), want);
  }
});

test('AppPayloadBatchReader skips unknown fields and throws ProtoWireError on broken bodies', (t) => {
  const reader = new AppPayloadBatchReader();
  const item = { flow_id: 7, timestamp_us: 1_700_000_000_000_001, protocol: 6, l7_protocol: 'HTTP', payload: Buffer.from('GET / HTTP/1.1\r\n\r\n') };
  const w = flowtap.AppPayloadBatch.encode({ items: [item] });
  // Unknown fields of each wire type, in the batch and inside the item.
  const inner = Buffer.concat([Buffer.from(flowtap.AppPayload.encode(item).finish()),
    Buffer.from([0xc8, 0x01, 0x05, 0xd1, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0xda, 0x01, 2, 0xaa, 0xbb, 0xdd, 0x01, 1, 2, 3, 4])]);
  const withUnknown = Buffer.concat([Buffer.from([0x10, 0x05]), Buffer.from(w.finish()), Buffer.from([0x0a, inner.length]), inner]);
  const got = readAll(reader, withUnknown);
  t.is(got.length, 2);
  t.deepEqual(got, flowtap.AppPayloadBatch.decode(withUnknown).items.map(protobufjsFields));

  // Random corruption: either both decoders fail or both read the same items; never another error.
  const good = Buffer.from(flowtap.AppPayloadBatch.encode({ items: Array.from({ length: 5 }, randomPayload) }).finish());
  let agreedFailures = 0, stricter = 0;
  for (let k = 0; k < 3000; k++) {
    const bad = Buffer.from(good.subarray(0, int(good.length + 1)));
    for (let m = int(3); m > 0 && bad.length > 0; m--) bad[int(bad.length)] = int(256);
    let want: Record<string, unknown>[] | undefined;
    try { want = flowtap.AppPayloadBatch.decode(bad).items.map(protobufjsFields); } catch { want = undefined; }
    try {
      const got2 = readAll(reader, bad);
      // protobufjs skips groups (wire types 3/4), which no flowtap message has; we refuse them.
      if (want !== undefined) t.deepEqual(got2, want);
    } catch (e) {
      if (!(e instanceof ProtoWireError)) t.fail(`unexpected ${String(e)}`);
      if (want === undefined) agreedFailures++; else stricter++;
    }
  }
  t.true(agreedFailures > 100, `malformed bodies seen: ${agreedFailures}`);
  t.log(`refused where protobufjs read something: ${stricter} of 3000`);
});

function randomLog(): flowtap.IL7FlowLog {
  const l: flowtap.IL7FlowLog = {
    flow_id: pick(U64), start_time: pick(U64), end_time: pick(U64), ip_0: pick(['', '10.0.0.1', '2001:db8::1']),
    ip_1: pick(['', '192.0.2.1', '::']), client_port: pick(U32), server_port: pick(U32), protocol: pick([0, 6, 17]),
    l7_protocol: pick(TEXT), version: pick(TEXT), request_type: pick(TEXT), request_domain: pick(TEXT),
    request_resource: pick(TEXT), endpoint: pick(TEXT), response_status: pick(['ok', 'timeout', '', 'client_error']),
    response_exception: pick(TEXT), response_result: pick(TEXT), response_duration: pick(U64),
    request_length: pick(U32), response_length: pick(U32), trace_id: pick(TEXT), span_id: pick(TEXT),
    x_request_id: pick(TEXT), vlan: pick(U32), signal_source: pick(['packet', 'ebpf', '']), sampled: int(2) === 1,
    process_id_0: pick(U32), process_id_1: pick(U32), process_kname_0: pick(TEXT), process_kname_1: pick(TEXT),
    syscall_trace_id_request: pick(U64), syscall_trace_id_response: pick(U64), is_tls: int(2) === 1,
  };
  // response_code has presence: absent, or any int32 including 0 and negatives.
  if (int(3)) l.response_code = pick([0, 1, 200, 404, 127, 128, -1, -(2 ** 31), 2 ** 31 - 1]);
  return l;
}

function randomMeter(): flowtap.IAppMeter {
  return {
    flow_id: pick(U64), time: pick(U64), ip_version: pick([4, 6]), ip_0: bytes(16), ip_1: pick([bytes(16), new Uint8Array(0)]),
    server_port: pick(U32), protocol: pick([6, 17]), l7_protocol: pick(TEXT), endpoint: pick(TEXT),
    request: pick(U32), response: pick(U32), client_error: pick(U32), server_error: pick(U32), timeout: pick(U32),
    rrt_sum: pick(U64), rrt_count: pick(U32), rrt_max: pick(U64),
  };
}

/** The record without its default-valued fields (response_code kept whenever set): what proto3 encoders write. */
function withoutDefaults<T extends object>(r: T): T {
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(r)) {
    if (k !== 'response_code' && (v === 0 || v === '' || v === false || (v instanceof Uint8Array && v.length === 0))) continue;
    if (v !== undefined && v !== null) o[k] = v;
  }
  return o as T;
}

test('writeL7Log and writeAppMeter write the bytes protobufjs writes, default fields left out', (t) => {
  const w = new ProtoWriter(16); // small, so that growing is exercised
  for (let round = 0; round < 100; round++) {
    const logs = Array.from({ length: 1 + int(30) }, randomLog);
    for (const l of logs) writeL7Log(w, l);
    t.true(w.take().equals(flowtap.L7LogBatch.encode({ logs: logs.map(withoutDefaults) }).finish()), `L7 logs, round ${round}`);
    const meters = Array.from({ length: 1 + int(30) }, randomMeter);
    for (const m of meters) writeAppMeter(w, m);
    t.true(w.take().equals(flowtap.AppMeterBatch.encode({ meters: meters.map(withoutDefaults) }).finish()), `meters, round ${round}`);
  }
});

/** Up to three captures of each protocol of the corpus. */
const FILES = ['http1', 'http2', 'dns', 'tls', 'mysql', 'postgresql', 'redis', 'kafka', 'mqtt', 'amqp', 'mongodb', 'memcached', 'vlan']
  .flatMap((d) => corpusFiles(d).slice(0, 3));

test('L7Input (hand-written codecs, reused records) gives exactly what the stage gives as objects', (t) => {
  t.true(FILES.length > 25);
  let totalLogs = 0;
  for (const file of FILES) {
    const items = appPayloads(file);
    const ids = [...new Set(items.map((p) => Number(p.flow_id)))];
    // Half the flows close before the end of the stream, so closeFlow is exercised too.
    const stream = [...items, ...ids.filter((id) => id % 2 === 0).map((id) => ({ flow_id: id, flow_closed: true }))];

    const wantLogs: flowtap.IL7FlowLog[] = [], wantMeters: flowtap.IAppMeter[] = [];
    const stage = new L7Stage((l) => wantLogs.push(l), (m) => wantMeters.push(m));
    for (const p of stream) {
      if (p.flow_closed) stage.closeFlow(Number(p.flow_id));
      else stage.push(p);
    }
    stage.flush();

    const gotLogs: flowtap.IL7FlowLog[] = [], gotMeters: flowtap.IAppMeter[] = [];
    const input = new L7Input({
      l7LogPerSecond: Infinity, maxSessions: 65536, batchSize: 7, defaultSessionTimeoutUs: 120e6,
      sessionTimeoutUs: Object.fromEntries(DEFAULT_PARSERS.map((p) => [p.name, p.sessionTimeoutUs])),
      sendLogs: (body, n) => { const l = flowtap.L7LogBatch.decode(body).logs; t.is(l.length, n); gotLogs.push(...l); },
      sendMeters: (body, n) => { const m = flowtap.AppMeterBatch.decode(body).meters; t.is(m.length, n); gotMeters.push(...m); },
    });
    for (let i = 0; i < stream.length; i += 50) {
      const body = Buffer.from(flowtap.AppPayloadBatch.encode({ items: stream.slice(i, i + 50) }).finish());
      t.is(input.batch(Kind.APP_PAYLOAD_BATCH, body), Math.min(50, stream.length - i));
    }
    input.end();

    // Both sides as the receiving processes see them: decoded, defaults filled in.
    const asLogs = (ls: flowtap.IL7FlowLog[]) => ls.map((l) => flowtap.L7FlowLog.toObject(flowtap.L7FlowLog.fromObject(l), { defaults: true, longs: Number }));
    const asMeters = (ms: flowtap.IAppMeter[]) => ms.map((m) => flowtap.AppMeter.toObject(flowtap.AppMeter.fromObject(m), { defaults: true, longs: Number, bytes: Array }));
    t.deepEqual(asLogs(gotLogs), asLogs(wantLogs), file);
    t.deepEqual(asMeters(gotMeters), asMeters(wantMeters), file);
    totalLogs += wantLogs.length;
  }
  t.true(totalLogs > 500, `logs compared: ${totalLogs}`);
});
