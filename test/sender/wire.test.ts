// The sender prints JSON lines straight from the protobuf bytes (wire-batch.ts, wire-rows.ts,
// json-writer.ts). The reference is what it printed before: protobufjs decodes the batch, records.ts
// makes the rows and JSON.stringify prints them. Every test here compares the two byte for byte,
// on corpus records and on hostile input (escapes, non-ASCII, invalid UTF-8, extreme integers,
// fields out of order, repeated or unknown), and checks that malformed bytes are an error.
import test from 'ava';
import protobuf from 'protobufjs/minimal';
import { flowtap } from '../../lib/proto';
import { ProtoWireError } from '../../lib/proto-wire';
import type { RecordType } from '../../services/sender/columns';
import { JsonWriter, printNumber } from '../../services/sender/json-writer';
import { DecodeScratch, SinkBatch } from '../../services/sender/sink';
import { corpusRecords, syntheticL7 } from './corpus-records';

/** The lines as the sender printed them before: protobufjs objects, records.ts rows, JSON.stringify. */
function referenceText(type: RecordType, body: Uint8Array): string {
  const buf = Buffer.from(body);
  const records = type === 'l4' ? flowtap.L4LogBatch.decode(buf).logs
    : type === 'l7' ? flowtap.L7LogBatch.decode(buf).logs : flowtap.DocumentBatch.decode(buf).documents;
  return new SinkBatch(type, body, records).rows().map((r) => JSON.stringify(r) + '\n').join('');
}

function wireText(type: RecordType, body: Uint8Array, chunkBytes?: number): string {
  const out = new JsonWriter(chunkBytes);
  SinkBatch.decode(type, Buffer.from(body)).writeJsonLines(out);
  return out.take().toString('utf8');
}

function encode(type: RecordType, records: SinkBatch['records']): Uint8Array {
  return SinkBatch.fromRecords(type, records).body;
}

const HOSTILE = [
  '', 'plain', 'quote " and backslash \\ and slash /', 'tab\tnewline\nreturn\r', '\u0000\u0001\u001f\u007f',
  '\b\f\v', 'é ü ß', '中文字符', 'emoji 😀 pair', 'line sep \u2028 para sep \u2029', 'lone high \ud800 x',
  'lone low \udfff', '\ufeff bom', '"'.repeat(300), 'x'.repeat(5000), '<script>alert("x")</script>',
];

test('corpus records print the same JSON lines from the wire as through protobufjs and records.ts', (t) => {
  const r = corpusRecords();
  const noCode = syntheticL7(3, 1).map((l, i) => ({ ...l, response_code: i === 0 ? undefined : i === 1 ? 0 : -1 }));
  for (const [type, records] of [['l4', r.l4], ['l7', [...r.l7, ...syntheticL7(50, 9), ...noCode]], ['metrics', r.metrics]] as const) {
    const body = encode(type, records);
    const text = wireText(type, body);
    t.is(text.split('\n').length - 1, records.length);
    t.is(text, referenceText(type, body), `${type} lines`);
  }
});

test('rows() from the wire are the objects records.ts makes', (t) => {
  const r = corpusRecords();
  for (const [type, records] of [['l4', r.l4], ['l7', r.l7], ['metrics', r.metrics]] as const) {
    const body = encode(type, records);
    const reference = new SinkBatch(type, body, SinkBatch.decode(type, body).records).rows();
    t.deepEqual(SinkBatch.decode(type, body).rows(), reference, `${type} rows`);
  }
});

test('hostile strings are escaped exactly as JSON.stringify escapes them', (t) => {
  const logs: flowtap.IL7FlowLog[] = HOSTILE.map((s, i) => ({
    flow_id: i + 1, ip_0: s, request_resource: s, response_exception: HOSTILE[HOSTILE.length - 1 - i], endpoint: s.slice(0, 3),
  }));
  const body = encode('l7', logs);
  // A small chunk makes the writer move lines between buffers mid-line.
  for (const chunk of [64, 4096, 1 << 20]) t.is(wireText('l7', body, chunk), referenceText('l7', body), `chunk ${chunk}`);
  for (const s of HOSTILE) {
    const out = new JsonWriter(16);
    out.string(s);
    t.is(out.take().toString('utf8'), JSON.stringify(s));
  }
});

test('invalid UTF-8 is decoded as protobufjs decodes it (U+FFFD) before escaping', (t) => {
  const bad = [[0x80], [0xc0, 0x80], [0xe2, 0x82], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x61, 0xff, 0x22, 0x0a], [0xf0, 0x9f, 0x98]];
  const w = protobuf.Writer.create();
  for (const bytes of bad) {
    const rec = protobuf.Writer.create();
    rec.uint32((1 << 3) | 0).uint64(7);
    rec.uint32((4 << 3) | 2).bytes(Uint8Array.from(bytes)); // ip_0: a string field carrying raw bytes
    rec.uint32((12 << 3) | 2).bytes(Uint8Array.from([...bytes, 0x41]));
    w.uint32((1 << 3) | 2).bytes(rec.finish());
  }
  const body = w.finish();
  t.is(wireText('l7', body), referenceText('l7', body));
});

test('integers print as JSON.stringify prints them, up to 2^64 and down to -2^31', (t) => {
  const values = [0, 1, 9, 10, 99, 100, 101, 999_999_999, 1e9, 1e9 + 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1, 2 ** 32,
    1_700_000_000_000_060, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, 2 ** 63, 2 ** 64 - 2048, 1e21, -1, -9, -10, -(2 ** 31), NaN, 0.5, -0];
  const buf = Buffer.alloc(64);
  for (const v of values) t.is(buf.toString('latin1', 0, printNumber(buf, 0, v)), JSON.stringify(v), String(v));
  // Through the wire: varints of every length, including uint64 max and negative int32s (10 bytes).
  const w = protobuf.Writer.create();
  const maxVarint = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  for (const v of [0, 127, 128, 16383, 16384, 2 ** 28, 2 ** 35, 2 ** 42, 2 ** 49, 2 ** 53 - 1, 2 ** 56]) {
    const rec = protobuf.Writer.create();
    rec.uint32((1 << 3) | 0).uint64(v).uint32((6 << 3) | 0).uint32(v % 2 ** 32);
    w.uint32((1 << 3) | 2).bytes(rec.finish());
  }
  for (const code of [-1, -(2 ** 31), 2 ** 31 - 1, 0]) {
    const rec = protobuf.Writer.create();
    rec.uint32((15 << 3) | 0).int32(code); // response_code
    w.uint32((1 << 3) | 2).bytes(rec.finish());
  }
  const raw = Buffer.concat([Buffer.from([(2 << 3) | 0]), maxVarint, Buffer.from([0x98, 0x01]), maxVarint]); // tag of field 19: two bytes
  w.uint32((1 << 3) | 2).bytes(raw); // start_time and response_duration: 2^64 - 1
  const body = w.finish();
  const text = wireText('l7', body);
  t.is(text, referenceText('l7', body));
  t.true(text.includes('"start_time":18446744073709552000'));
  t.true(text.includes('"response_code":-2147483648'));
});

test('fields in any order, repeated, or unknown to the schema print as protobufjs reads them', (t) => {
  const w = protobuf.Writer.create();
  // Reversed order; flow_id twice (the last wins); unknown fields of every wire type are skipped.
  const rec = protobuf.Writer.create();
  rec.uint32((99 << 3) | 0).uint32(5);
  rec.uint32((98 << 3) | 1).fixed64(12345);
  rec.uint32((97 << 3) | 5).fixed32(7);
  rec.uint32((96 << 3) | 2).string('future field');
  rec.uint32((42 << 3) | 0).uint32(3);
  rec.uint32((10 << 3) | 2).string('finish');
  rec.uint32((4 << 3) | 2).string('10.0.0.1');
  rec.uint32((1 << 3) | 0).uint64(1);
  rec.uint32((24 << 3) | 0).bool(true);
  rec.uint32((1 << 3) | 0).uint64(2);
  w.uint32((1 << 3) | 2).bytes(rec.finish());
  w.uint32((1 << 3) | 2).bytes(new Uint8Array(0)); // an empty record: every default
  w.uint32((7 << 3) | 0).uint32(1); // an unknown field of the batch itself
  const body = w.finish();
  const text = wireText('l4', body);
  t.is(text, referenceText('l4', body));
  t.true(text.startsWith('{"flow_id":2,'));

  // A nested meter seen twice replaces the first, as protobufjs does; tags by table kind.
  const docs = protobuf.Writer.create();
  for (const table of ['network.1s', 'network_map.1m', 'application.1s', 'application_map.1m', '', 'x_map.application']) {
    const doc = protobuf.Writer.create();
    doc.uint32((20 << 3) | 2).bytes(flowtap.FlowMeter.encode({ packet_tx: 5, syn: 2 }).finish());
    doc.uint32((21 << 3) | 2).bytes(flowtap.AppMeterValues.encode({ request: 3 }).finish());
    doc.uint32((1 << 3) | 2).string(table).uint32((2 << 3) | 0).uint64(1_700_000_000);
    doc.uint32((3 << 3) | 2).string('10.0.0.1').uint32((5 << 3) | 2).string('10.0.0.2').uint32((10 << 3) | 2).string('/x');
    doc.uint32((20 << 3) | 2).bytes(flowtap.FlowMeter.encode({ byte_tx: 9 }).finish());
    docs.uint32((1 << 3) | 2).bytes(doc.finish());
  }
  const docBody = docs.finish();
  t.is(wireText('metrics', docBody), referenceText('metrics', docBody));
});

test('malformed bytes are an error, never rows', (t) => {
  const good = Buffer.from(encode('l7', syntheticL7(3, 1)));
  const cases: Array<[string, Uint8Array]> = [
    ['truncated', good.subarray(0, good.length - 5)],
    ['record length past the end', Buffer.from([0x0a, 0x50, 0x08, 0x01])],
    ['truncated varint', Buffer.from([0x0a, 0x02, 0x08, 0xff])],
    ['string field as a varint', Buffer.from([0x0a, 0x02, (4 << 3) | 0, 0x01])],
    ['number field as bytes', Buffer.from([0x0a, 0x03, (1 << 3) | 2, 0x01, 0x41])],
    ['batch field 1 as a varint', Buffer.from([0x08, 0x01])],
    ['varint of 11 bytes', Buffer.from([0x0a, 0x0c, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])],
    ['group wire type', Buffer.from([0x0a, 0x02, 0xe3, 0x03])], // field 60, wire type 3
  ];
  for (const [name, body] of cases) {
    t.throws(() => SinkBatch.decode('l7', body), { instanceOf: ProtoWireError }, name);
  }
  t.is(SinkBatch.decode('l7', new Uint8Array(0)).count, 0);
});

test('batches decoded into the columns of the one before print what fresh decodes print', (t) => {
  const r = corpusRecords();
  // Big, small, empty, big again, and each type in turn, so that a table is refilled with
  // fewer rows than it holds (stale rows past the end) and with more (it grows).
  const bodies: Array<[RecordType, Uint8Array]> = [];
  for (const [type, records] of [['l4', r.l4], ['l7', [...r.l7, ...syntheticL7(40, 3)]], ['metrics', r.metrics]] as const) {
    bodies.push([type, encode(type, records)], [type, encode(type, records.slice(0, 3))], [type, encode(type, [])],
      [type, encode(type, records.slice(1))]);
  }
  const scratch = new DecodeScratch();
  for (const [type, body] of [...bodies, ...bodies.reverse()]) {
    const out = new JsonWriter();
    SinkBatch.decode(type, Buffer.from(body), scratch).writeJsonLines(out);
    t.is(out.take().toString('utf8'), referenceText(type, body), `${type} lines`);
  }
  t.is(scratch.tables.size, 3);
});

test('lent text keeps its bytes until given back; only then is its chunk reused', (t) => {
  const out = new JsonWriter(64);
  const held: Array<[Buffer, string]> = [];
  // Fill several chunks; give back every lend of the first chunk, hold the rest.
  for (let i = 0; i < 40; i++) {
    out.text(JSON.stringify({ line: i, pad: 'x'.repeat(i % 7) }));
    const text = out.lend();
    held.push([text, text.toString('utf8')]);
  }
  const firstChunk = held[0][0].buffer;
  for (const [text] of held.filter(([b]) => b.buffer === firstChunk)) out.giveBack(text);
  const kept = held.filter(([b]) => b.buffer !== firstChunk);
  // More text now reuses the first chunk, and must leave every held text as it was.
  const taken: Array<[Buffer, string]> = [];
  for (let i = 0; i < 40; i++) {
    out.text(JSON.stringify({ again: i }));
    const text = out.take();
    taken.push([text, text.toString('utf8')]);
  }
  t.true(taken.some(([b]) => b.buffer === firstChunk), 'the given-back chunk is reused');
  for (const [text, was] of [...kept, ...taken]) t.is(text.toString('utf8'), was);
});
