// Stage mechanics: timeouts on packet time, flush, per-second meters, bounds and their counters.
import test from 'ava';
import { flowtap } from '../../lib/proto';
import { L7Stage, L7StageOptions } from '../../services/l7/stage';
import { ipToBytes } from './tshark';

const T0 = 1_700_000_000_000_000;

class Conn {
  private seq = [1000, 9000];
  constructor(readonly flowId: number, readonly protocol = 6, readonly serverPort = 80, readonly l7 = '') {}

  payload(tUs: number, fromClient: boolean, text: string | Buffer, wireLen?: number): flowtap.IAppPayload {
    const data = typeof text === 'string' ? Buffer.from(text, 'latin1') : text;
    const d = fromClient ? 0 : 1;
    const seq = this.seq[d];
    this.seq[d] += wireLen ?? data.length;
    return {
      flow_id: this.flowId, timestamp_us: tUs, ip_version: 4, ip_0: ipToBytes('192.0.2.1'), ip_1: ipToBytes('192.0.2.2'),
      client_port: 50000 + this.flowId, server_port: this.serverPort, protocol: this.protocol, from_client: fromClient,
      l7_protocol: this.l7, tcp_seq: seq, payload_len: wireLen ?? data.length, payload: data, vlan: 0,
    };
  }
}

function newStage(opts: L7StageOptions = {}) {
  const logs: flowtap.IL7FlowLog[] = [];
  const meters: flowtap.IAppMeter[] = [];
  const stage = new L7Stage((l) => logs.push(l), (m) => meters.push(m), opts);
  return { stage, logs, meters };
}

const GET = (p: string) => `GET ${p} HTTP/1.1\r\nHost: a\r\n\r\n`;
const OK = 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n';

test('an unanswered HTTP request times out after 120 s of packet time, DNS after 15 s', (t) => {
  const { stage, logs, meters } = newStage();
  const http = new Conn(1);
  stage.push(http.payload(T0, true, GET('/slow')));
  const q = Buffer.from('abcd01000001000000000000016103636f6d0000010001', 'hex');
  const dns = new Conn(2, 17, 53);
  stage.push(dns.payload(T0, true, q));
  t.is(stage.sessionCount, 2);
  stage.tick(T0 + 14_999_999);
  t.is(logs.length, 0);
  stage.tick(T0 + 15_000_000);
  t.is(logs.length, 1);
  t.is(logs[0].l7_protocol, 'DNS');
  t.is(logs[0].request_domain, 'a.com');
  t.is(logs[0].response_status, 'timeout');
  stage.tick(T0 + 119_000_000);
  t.is(logs.length, 1);
  stage.tick(T0 + 120_000_000);
  t.is(logs.length, 2);
  t.is(logs[1].request_resource, '/slow');
  t.is(logs[1].response_status, 'timeout');
  t.is(logs[1].response_code, undefined);
  t.is(stage.sessionCount, 0);
  stage.tick(T0 + 121_000_000); // closes the second the last timeout fell in
  const timeouts = meters.reduce((s, m) => s + (m.timeout ?? 0), 0);
  t.is(timeouts, 2);
});

test('per-second meters: requests, responses, errors and response times', (t) => {
  const { stage, meters } = newStage();
  const c = new Conn(1);
  stage.push(c.payload(T0 + 100, true, GET('/1')));
  stage.push(c.payload(T0 + 300, false, OK));
  stage.push(c.payload(T0 + 400, true, GET('/2')));
  stage.push(c.payload(T0 + 1400, false, 'HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n'));
  stage.push(c.payload(T0 + 1_000_500, true, GET('/3')));
  t.is(meters.length, 1); // the first second closed when the flow moved on
  t.like(meters[0], { time: T0 / 1e6, request: 2, response: 2, client_error: 1, rrt_count: 2, rrt_sum: 1200, rrt_max: 1000 });
  stage.push(c.payload(T0 + 1_000_600, false, 'HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n'));
  stage.tick(T0 + 2_000_000);
  t.is(meters.length, 2);
  t.like(meters[1], { time: T0 / 1e6 + 1, request: 1, response: 1, server_error: 1, l7_protocol: 'HTTP', server_port: 80 });
});

test('flush reports every open request as a timeout and empties the stage', (t) => {
  const { stage, logs } = newStage();
  const c = new Conn(1);
  stage.push(c.payload(T0, true, GET('/a')));
  stage.push(c.payload(T0 + 10, true, 'GET /b HTTP/1.1\r\nHo')); // partial headers stay buffered
  t.true(stage.bufferedBytes > 0);
  stage.flush();
  t.deepEqual(logs.map((l) => [l.request_resource, l.response_status]), [['/a', 'timeout']]);
  t.is(stage.sessionCount, 0);
  t.is(stage.bufferedBytes, 0);
  t.is(stage.flowCount, 0);
});

test('open sessions are bounded; the oldest is evicted and counted', (t) => {
  const { stage } = newStage({ maxSessions: 10 });
  for (let i = 0; i < 25; i++) stage.push(new Conn(i + 1).payload(T0 + i, true, GET(`/${i}`)));
  t.is(stage.sessionCount, 10);
  t.is(stage.drops.session_evicted, 15);
});

test('buffers are bounded per direction and in total', (t) => {
  const { stage } = newStage({ maxBufferPerDirection: 64, maxBufferTotal: 100 });
  const a = new Conn(1);
  stage.push(a.payload(T0, true, 'GET /long HTTP/1.1\r\nX-A: ' + 'a'.repeat(40)));
  stage.push(a.payload(T0 + 1, true, 'b'.repeat(40)));
  t.is(stage.drops.buffer_flow_full, 1);
  t.is(stage.bufferedBytes, 0);
  for (let i = 2; i < 6; i++) stage.push(new Conn(i).payload(T0 + i, true, 'GET /x HTTP/1.1\r\nX-B: ' + 'c'.repeat(20)));
  t.true(stage.drops.buffer_total_full >= 1);
  t.true(stage.bufferedBytes <= 100);
});

test('retransmissions are ignored, overlaps trimmed, unknown and unsupported traffic counted', (t) => {
  const { stage, logs } = newStage();
  const c = new Conn(1);
  const req = c.payload(T0, true, GET('/r'));
  stage.push(req);
  stage.push({ ...req, timestamp_us: T0 + 5 });
  t.is(stage.drops.tcp_retransmission, 1);
  stage.push(c.payload(T0 + 10, false, OK));
  t.is(logs.length, 1);
  stage.push(new Conn(2).payload(T0, true, 'random bytes that are not a protocol'));
  t.is(stage.drops.no_protocol, 1);
  stage.push(new Conn(3, 6, 1521, 'Oracle').payload(T0, true, 'x')); // a protocol with no parser here
  t.is(stage.drops.unsupported_protocol, 1);
});

test('l7_protocol from the flow stage is used as given; closeFlow times out what is open', (t) => {
  const { stage, logs } = newStage();
  const c = new Conn(7, 6, 8888, 'HTTP');
  stage.push(c.payload(T0, true, GET('/x')));
  t.is(stage.flowCount, 1);
  stage.closeFlow(7);
  t.is(logs[0].response_status, 'timeout');
  t.is(stage.flowCount, 0);
});

test('flows are bounded; the oldest is evicted and counted', (t) => {
  const { stage } = newStage({ maxFlows: 4 });
  for (let i = 0; i < 6; i++) stage.push(new Conn(i + 1).payload(T0, false, OK));
  t.is(stage.flowCount, 4);
  t.is(stage.drops.flow_evicted, 2);
});

test('records encode with the schema; response_code is absent on the wire when there is none', (t) => {
  const { stage, logs, meters } = newStage();
  const c = new Conn(1);
  stage.push(c.payload(T0, true, GET('/a')));
  stage.push(c.payload(T0 + 250, false, OK));
  stage.push(c.payload(T0 + 300, true, GET('/b')));
  stage.flush();
  const wire = flowtap.L7LogBatch.decode(flowtap.L7LogBatch.encode({ logs }).finish());
  t.is(wire.logs.length, 2);
  const [a, b] = wire.logs;
  t.true(Object.prototype.hasOwnProperty.call(a, 'response_code'));
  t.is(a.response_code, 200);
  t.is(a.start_time, T0);
  t.is(a.end_time, T0 + 250);
  t.is(a.response_duration, 250);
  t.is(a.ip_0, '192.0.2.1');
  t.is(a.signal_source, 'packet');
  t.false(Object.prototype.hasOwnProperty.call(b, 'response_code'));
  t.is(b.response_status, 'timeout');
  const m = flowtap.AppMeterBatch.decode(flowtap.AppMeterBatch.encode({ meters }).finish()).meters;
  t.is(m.reduce((s, x) => s + (x.request ?? 0), 0), 2);
  t.is(m.reduce((s, x) => s + (x.timeout ?? 0), 0), 1);
});
