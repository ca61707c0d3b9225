// MQTT parser: the corpus against tshark's dissection, then edge cases on built packets.
import test from 'ava';
import * as path from 'node:path';
import { MQTT_TYPE_NAMES } from '../../services/l7/parsers/mqtt';
import { agreement, field, pdmlMessages, runFile, runMessaging, tableRow, tcpFlow } from './messaging-compare';
import { CORPUS, corpusFiles } from './tshark';

const FILES = corpusFiles('mqtt');
const RESPONSE_TYPES = new Set([2, 4, 5, 7, 9, 11, 13]);

test('the MQTT corpus is there', (t) => { t.true(FILES.length >= 6); });

for (const file of FILES) {
  test(`MQTT equals tshark: ${path.relative(CORPUS, file)}`, (t) => {
    const want = pdmlMessages(file, 'mqtt');
    const wantReq: string[] = [], wantResp: string[] = [];
    for (const m of want) {
      const type = Number(field(m, 'mqtt.msgtype'));
      const topics = m.fields.filter((f) => f[0] === 'mqtt.topic').map((f) => f[2]).join(',');
      const code = m.fields.find((f) => f[0] === 'mqtt.conack.val' || f[0].endsWith('.reason_code') || f[0] === 'mqtt.suback.qos')?.[2];
      if (RESPONSE_TYPES.has(type)) wantResp.push(`${type} ${code ?? ''}`);
      else wantReq.push(`${type} ${topics}`);
    }
    const run = runFile('MQTT', file);
    const typeOf = (name: string) => MQTT_TYPE_NAMES.indexOf(name);
    const gotReq = run.messages.filter((m) => m.kind === 'request').map((m) => `${typeOf(m.requestType)} ${m.requestResource}`);
    const gotResp = run.messages.filter((m) => m.kind === 'response').map((m) => `${typeOf(m.requestType)} ${m.responseCode ?? ''}`);
    const rel = path.relative(CORPUS, file);
    const a = agreement(gotReq, wantReq), b = agreement(gotResp, wantResp);
    t.log(tableRow(rel, 'requests (type, topic)', a));
    t.log(tableRow(rel, 'responses (type, code)', b));
    t.deepEqual([a.missing, a.extra], [[], []], 'requests: type and topics');
    t.deepEqual([b.missing, b.extra], [[], []], 'responses: type and return/reason code');
    t.true(wantReq.length > 0);
    // One log per request (one-way ones included); answers never outnumber their asks here.
    const logs = run.logs.filter((l) => l.l7_protocol === 'MQTT');
    t.is(logs.length, gotReq.length);
    for (const l of logs.filter((x) => x.request_type === 'PUBLISH' && (x.response_duration ?? 0) === 0)) t.is(l.response_status, 'ok');
    t.is(run.stage.sessionCount, 0);
  });
}

/** An MQTT packet: first byte, then the body with its remaining length. */
function pkt(first: number, body: number[] | Buffer): Buffer {
  const b = Buffer.from(body);
  const len: number[] = [];
  let n = b.length;
  do { let x = n % 128; n = Math.floor(n / 128); if (n > 0) x |= 128; len.push(x); } while (n > 0);
  return Buffer.concat([Buffer.from([first, ...len]), b]);
}
function str(s: string): Buffer { const b = Buffer.from(s); return Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]); }
function connect(level: number, clientId: string): Buffer {
  return pkt(0x10, Buffer.concat([str('MQTT'), Buffer.from([level, 2, 0, 60]), level === 5 ? Buffer.from([0]) : Buffer.alloc(0), str(clientId)]));
}

// (The first segment must hold the protocol name: inference looks at it alone.)
test('a CONNECT split over three segments, then a refused CONNACK (3.1.1 code 5)', (t) => {
  const c = connect(4, 'client-1');
  const run = runMessaging('MQTT', tcpFlow([[true, c.subarray(0, 9)], [true, c.subarray(9, 14)], [true, c.subarray(14)], [false, pkt(0x20, [0, 5])]]));
  const logs = run.logs.filter((l) => l.l7_protocol === 'MQTT');
  t.is(logs.length, 1);
  t.is(logs[0].request_type, 'CONNECT');
  t.is(logs[0].request_domain, 'client-1');
  t.is(logs[0].version, '3.1.1');
  t.is(logs[0].response_code, 5);
  t.is(logs[0].response_status, 'client_error');
});

test('mid-stream start: PUBLISH QoS 1 and QoS 2 with their acks, no CONNECT seen', (t) => {
  const pub1 = pkt(0x32, Buffer.concat([str('a/b'), Buffer.from([0, 7]), Buffer.from('x')]));
  const pub2 = pkt(0x34, Buffer.concat([str('c/d'), Buffer.from([0, 8]), Buffer.from('y')]));
  const run = runMessaging('MQTT', tcpFlow([
    [true, Buffer.concat([pub1, pub2])], [false, pkt(0x40, [0, 7])], [false, pkt(0x50, [0, 8])],
    [true, pkt(0x62, [0, 8])], [false, pkt(0x70, [0, 8])],
  ]));
  const logs = run.logs.filter((l) => l.l7_protocol === 'MQTT').map((l) => `${l.request_type} ${l.request_resource} ${l.response_status}`);
  t.deepEqual(logs.sort(), ['PUBLISH a/b ok', 'PUBLISH c/d ok', 'PUBREL  ok']);
  t.is(run.stage.sessionCount, 0);
});

test('QoS 0 PUBLISH is one-way: logged "ok" with no duration, no timeout later', (t) => {
  const run = runMessaging('MQTT', tcpFlow([[true, connect(4, 'c')], [false, pkt(0x20, [0, 0])], [true, pkt(0x30, Buffer.concat([str('t'), Buffer.from('payload')]))]]));
  const pub = run.logs.filter((l) => l.request_type === 'PUBLISH');
  t.is(pub.length, 1);
  t.is(pub[0].response_status, 'ok');
  t.is(pub[0].response_duration, 0);
  t.is(pub[0].request_resource, 't');
});

test('MQTT 5: properties skipped, SUBACK failure reason 0x87 is a client error', (t) => {
  const sub = pkt(0x82, Buffer.concat([Buffer.from([0, 3, 0]), str('s/#'), Buffer.from([1])]));
  const run = runMessaging('MQTT', tcpFlow([[true, connect(5, 'v5')], [false, pkt(0x20, [0, 0, 0])], [true, sub], [false, pkt(0x90, [0, 3, 0, 0x87])]]));
  const s = run.logs.find((l) => l.request_type === 'SUBSCRIBE');
  t.truthy(s);
  t.is(s!.request_resource, 's/#');
  t.is(s!.response_code, 0x87);
  t.is(s!.response_status, 'client_error');
  t.is(s!.version, '5.0');
});

test('bad input: a reserved type resynchronises, never throws, and is counted', (t) => {
  const run = runMessaging('MQTT', tcpFlow([[true, connect(4, 'c')], [true, Buffer.from([0x00, 0x05, 1, 2, 3, 4, 5])], [true, pkt(0xc0, [])], [false, pkt(0xd0, [])]]));
  t.true(run.stage.drops.parse_error >= 1);
  t.true(run.logs.some((l) => l.request_type === 'CONNECT'));
});

test('MQTT 5 user properties carry trace context; a reason string becomes the exception', (t) => {
  const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const userProp = (k: string, v: string) => Buffer.concat([Buffer.from([0x26]), str(k), str(v)]);
  const props = Buffer.concat([Buffer.from([0x01, 1]), userProp('traceparent', tp), userProp('x-request-id', 'req-9')]);
  const pub = pkt(0x32, Buffer.concat([str('orders/new'), Buffer.from([0, 5, props.length]), props, Buffer.from('{}')]));
  const reason = Buffer.concat([Buffer.from([0x1f]), str('not authorized for topic')]);
  const ack = pkt(0x40, Buffer.concat([Buffer.from([0, 5, 0x87, reason.length]), reason]));
  const run = runMessaging('MQTT', tcpFlow([[true, connect(5, 'c5')], [false, pkt(0x20, [0, 0, 0])], [true, pub], [false, ack]]));
  const l = run.logs.find((x) => x.request_type === 'PUBLISH');
  t.is(l?.request_resource, 'orders/new');
  t.is(l?.trace_id, '4bf92f3577b34da6a3ce929d0e0e4736');
  t.is(l?.span_id, '00f067aa0ba902b7');
  t.is(l?.x_request_id, 'req-9');
  t.is(l?.response_code, 0x87);
  t.is(l?.response_status, 'client_error');
  t.is(l?.response_exception, 'not authorized for topic');
});
