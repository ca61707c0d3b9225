// Dubbo 2 parser. No capture of Dubbo is in the corpus and tshark has no Dubbo dissector (checked
// with `tshark -G protocols`), so these tests build frames from the protocol description.
import test from 'ava';
import { runMessaging, tcpFlow } from './messaging-compare';

/** Hessian2 compact string (< 32 chars) or 'S' + 16-bit length. */
function hstr(s: string): Buffer {
  const chars = [...s].length;
  const b = Buffer.from(s, 'utf8');
  return chars < 32 ? Buffer.concat([Buffer.from([chars]), b]) : Buffer.concat([Buffer.from([0x53, chars >> 8, chars & 255]), b]);
}
function dubbo(flag: number, status: number, id: number, body: Buffer): Buffer {
  const h = Buffer.alloc(16);
  h[0] = 0xda; h[1] = 0xbb; h[2] = flag; h[3] = status;
  h.writeUInt32BE(Math.floor(id / 4294967296), 4); h.writeUInt32BE(id >>> 0, 8); h.writeInt32BE(body.length, 12);
  return Buffer.concat([h, body]);
}
const HESSIAN = 2;
function request(id: number, service: string, method: string, twoWay = true): Buffer {
  const body = Buffer.concat([hstr('2.0.2'), hstr(service), hstr('0.0.0'), hstr(method), hstr('Ljava/lang/String;'), hstr('arg')]);
  return dubbo(0x80 | (twoWay ? 0x40 : 0) | HESSIAN, 0, id, body);
}
function response(id: number, status: number, body: Buffer = Buffer.from([0x91, 0x01])): Buffer {
  return dubbo(HESSIAN, status, id, body);
}

function logsOf(segments: [boolean, Buffer][]) {
  const run = runMessaging('Dubbo', tcpFlow(segments));
  return { run, logs: run.logs.filter((l) => l.l7_protocol === 'Dubbo') };
}

test('a call: service and method from the Hessian2 body, status 20 is ok', (t) => {
  const { logs } = logsOf([[true, request(1, 'org.demo.GreetingService', 'sayHello')], [false, response(1, 20)]]);
  t.is(logs.length, 1);
  t.is(logs[0].request_resource, 'org.demo.GreetingService');
  t.is(logs[0].request_type, 'sayHello');
  t.is(logs[0].endpoint, 'org.demo.GreetingService/sayHello');
  t.is(logs[0].version, '2.0.2');
  t.is(logs[0].response_code, 20);
  t.is(logs[0].response_status, 'ok');
  t.true((logs[0].response_duration ?? 0) > 0);
});

test('answers out of order pair by the 64-bit request id', (t) => {
  const big = 2 ** 40 + 5;
  const { logs } = logsOf([[true, Buffer.concat([request(big, 'A', 'a'), request(6, 'B', 'b')])], [false, response(6, 60, hstr('no provider'))], [false, response(big, 20)]]);
  const got = logs.map((l) => `${l.request_type} ${l.response_code} ${l.response_status} ${l.response_exception}`).sort();
  t.deepEqual(got, ['a 20 ok ', 'b 60 client_error no provider']);
});

test('a server error carries its message; a long service name (S-string) and a split frame', (t) => {
  const svc = 'com.example.very.long.service.name.OrderQueryService';
  const req = request(9, svc, 'query');
  const { logs } = logsOf([[true, req.subarray(0, 20)], [true, req.subarray(20, 50)], [true, req.subarray(50)], [false, response(9, 70, hstr('java.lang.NullPointerException'))]]);
  t.is(logs.length, 1);
  t.is(logs[0].request_resource, svc);
  t.is(logs[0].response_status, 'server_error');
  t.is(logs[0].response_exception, 'java.lang.NullPointerException');
});

test('heartbeat events pair by id; one-way calls are ok at once', (t) => {
  const hb = dubbo(0x80 | 0x40 | 0x20 | HESSIAN, 0, 77, Buffer.from([0x4e]));
  const hbr = dubbo(0x20 | HESSIAN, 20, 77, Buffer.from([0x4e]));
  const { logs } = logsOf([[true, Buffer.concat([hb, request(3, 'S', 'fire', false)])], [false, hbr]]);
  const got = logs.map((l) => `${l.request_type} ${l.response_status} ${l.response_duration! > 0}`).sort();
  t.deepEqual(got, ['fire ok false', 'heartbeat ok true']);
});

test('bad magic or a lying body length: counted, never thrown', (t) => {
  const bad = request(1, 'X', 'y');
  bad[1] = 0;
  const liar = request(2, 'X', 'z');
  liar.writeInt32BE(-5, 12);
  const { run, logs } = logsOf([[true, request(0, 'X', 'ok')], [true, bad], [true, liar], [true, request(4, 'X', 'w')]]);
  t.true(run.stage.drops.parse_error >= 1);
  t.deepEqual(logs.map((l) => l.request_type).sort(), ['ok', 'w']);
});

test('trace context from the attachments: traceparent and x-request-id', (t) => {
  const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const attachments = Buffer.concat([Buffer.from([0x48]), hstr('path'), hstr('org.demo.S'), hstr('traceparent'), hstr(tp),
    hstr('x-request-id'), hstr('r-1'), Buffer.from([0x5a])]);
  const body = Buffer.concat([hstr('2.0.2'), hstr('org.demo.S'), hstr('0.0.0'), hstr('m'), hstr(''), attachments]);
  const { logs } = logsOf([[true, dubbo(0xc2, 0, 1, body)], [false, response(1, 20)]]);
  t.is(logs[0].trace_id, '0af7651916cd43dd8448eb211c80319c');
  t.is(logs[0].span_id, 'b7ad6b7169203331');
  t.is(logs[0].x_request_id, 'r-1');
});
