// Kafka parser: the corpus against tshark's dissection, then edge cases on built messages.
import test from 'ava';
import * as path from 'node:path';
import { agreement, field, pdmlMessages, runFile, runMessaging, tableRow, tcpFlow } from './messaging-compare';
import { CORPUS, corpusFiles } from './tshark';

const FILES = corpusFiles('kafka');
// The corpus README's decode-as rule (01-fetch-v12-ok.pcap sits on port 36333).
const DECODE_AS = ['-d', 'tcp.port==36333,kafka'];

test('the Kafka corpus is there', (t) => { t.true(FILES.length >= 4); });

for (const file of FILES) {
  test(`Kafka equals tshark: ${path.relative(CORPUS, file)}`, (t) => {
    const want = pdmlMessages(file, 'kafka', DECODE_AS);
    const wantReq: string[] = [];
    const wantCode = new Map<number, string>();
    for (const m of want) {
      const key = m.fields.find((f) => f[0] === 'kafka.request_key');
      const corr = Number(field(m, 'kafka.correlation_id'));
      if (key !== undefined) {
        // showname "API Key: Produce (0)": tshark's own name for the API.
        const name = /: (\w+) \(/.exec(key[1])?.[1] ?? key[2];
        wantReq.push(`${corr} ${name} ${field(m, 'kafka.topic_name') ?? ''}`);
      } else {
        const err = field(m, 'kafka.error');
        if (err !== undefined) wantCode.set(corr, err);
      }
    }
    const run = runFile('Kafka', file);
    const gotReq = run.messages.filter((m) => m.kind === 'request').map((m) => `${m.pairId} ${m.requestType} ${m.requestResource}`);
    const rel = path.relative(CORPUS, file);
    // tshark gives up on a request whose version it does not know (Fetch v12/v13 marked malformed
    // here) before its topics: there only the API and correlation id are compared.
    const malformed = new Set(want.filter((m) => m.malformed).map((m) => Number(field(m, 'kafka.correlation_id'))));
    const norm = (s: string) => (malformed.has(Number(s.split(' ')[0])) ? s.split(' ').slice(0, 2).join(' ') : s);
    const a = agreement(gotReq.map(norm), wantReq.map(norm));
    t.log(tableRow(rel, 'requests (correlation id, API, topic)', a));
    t.deepEqual([a.missing, a.extra], [[], []]);
    const gotCode = run.messages.filter((m) => m.kind === 'response' && wantCode.has(m.pairId)).map((m) => `${m.pairId} ${m.responseCode}`);
    const b = agreement(gotCode, [...wantCode].map(([c, e]) => `${c} ${e}`));
    t.log(tableRow(rel, 'response error codes', b));
    t.deepEqual([b.missing, b.extra], [[], []]);
    // Every response pairs with its request (none is left open, none is lone).
    const logs = run.logs.filter((l) => l.l7_protocol === 'Kafka');
    t.is(logs.length, wantReq.length);
    for (const l of logs) t.true(l.response_status !== 'timeout' && (l.response_duration ?? 0) > 0);
  });
}

function kstr(s: string): Buffer { const b = Buffer.from(s); const h = Buffer.alloc(2); h.writeInt16BE(b.length); return Buffer.concat([h, b]); }
function frame(body: Buffer): Buffer { const h = Buffer.alloc(4); h.writeInt32BE(body.length); return Buffer.concat([h, body]); }
function header(key: number, ver: number, corr: number, client: string): Buffer {
  const h = Buffer.alloc(8); h.writeInt16BE(key); h.writeInt16BE(ver, 2); h.writeInt32BE(corr, 4);
  return Buffer.concat([h, kstr(client)]);
}
/** Metadata v1 request for one topic. */
function metadata(corr: number, topic: string): Buffer {
  return frame(Buffer.concat([header(3, 1, corr, 'cli'), Buffer.from([0, 0, 0, 1]), kstr(topic)]));
}
/** Heartbeat v1 response: correlation id, throttle, error code. */
function heartbeatResp(corr: number, err: number): Buffer {
  const b = Buffer.alloc(10); b.writeInt32BE(corr); b.writeInt16BE(err, 8); return frame(b);
}

test('responses answered out of order pair by correlation id; the API is kept from the request', (t) => {
  const hb = (corr: number) => frame(Buffer.concat([header(12, 1, corr, 'cli'), kstr('g'), Buffer.from([0, 0, 0, 1]), kstr('m')]));
  const run = runMessaging('Kafka', tcpFlow([[true, Buffer.concat([hb(7), hb(8)])], [false, heartbeatResp(8, 27)], [false, heartbeatResp(7, 0)]]));
  const logs = run.logs.filter((l) => l.l7_protocol === 'Kafka').map((l) => `${l.request_type} ${l.response_code} ${l.response_status}`);
  t.deepEqual(logs.sort(), ['Heartbeat 0 ok', 'Heartbeat 27 server_error']);
});

test('a request split across segments, with its topic', (t) => {
  const m = metadata(42, 'orders');
  const run = runMessaging('Kafka', tcpFlow([[true, m.subarray(0, 16)], [true, m.subarray(16)], [false, frame(Buffer.from([0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 0]))]]));
  const l = run.logs.filter((x) => x.l7_protocol === 'Kafka');
  t.is(l.length, 1);
  t.is(l[0].request_type, 'Metadata');
  t.is(l[0].request_resource, 'orders');
  t.is(l[0].request_domain, 'cli');
  t.is(l[0].response_status, 'ok');
});

test('mid-stream: a response whose request was not seen is reported alone, not thrown', (t) => {
  const run = runMessaging('Kafka', tcpFlow([[true, metadata(5, 'x')], [false, heartbeatResp(99, 0)], [false, heartbeatResp(5, 0)]]));
  t.is(run.logs.filter((l) => l.l7_protocol === 'Kafka').length, 2);
  t.is(run.stage.sessionCount, 0);
});

test('a size field that cannot be is a parse error and a resync', (t) => {
  const bad = Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 1, 0, 0, 0, 9, 0, 0]);
  const run = runMessaging('Kafka', tcpFlow([[true, metadata(1, 'a')], [true, bad], [true, metadata(2, 'b')]]));
  t.true(run.stage.drops.parse_error >= 1);
  t.true(run.logs.some((l) => l.request_resource === 'a'));
});
