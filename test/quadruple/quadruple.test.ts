// Unit tests of the quadruple stage on hand-built flow reports and a hand-moved clock.
import test from 'ava';
import { flowtap } from '../../lib/proto';
import { PacketBatch } from '../../lib/packet-batch';
import { QuadrupleStage } from '../../services/quadruple/quadruple-stage';

const T = 1_700_000_040; // a minute boundary
const US = 1e6;

function ip(text: string): Uint8Array {
  const b = new Uint8Array(16);
  PacketBatch.setIpv4(b, 0, Uint8Array.from(text.split('.').map(Number)), 0);
  return b;
}

let nextId = 1;
function flow(sec: number, extra: Partial<flowtap.IFlow> = {}): flowtap.IFlow {
  return {
    flow_id: 1, start_time: T * US, end_time: sec * US, report_time: sec * US, ip_version: 4,
    ip_0: ip('10.0.0.1'), ip_1: ip('10.0.0.2'), client_port: 40000, server_port: 80, protocol: 6,
    packet_tx: 1, packet_rx: 2, byte_tx: 100, byte_rx: 1000, l7_protocol: 'HTTP', ...extra,
  };
}

// No L4 log throttle: logs leave FlowAggr at once, so its timing is seen directly.
const UNTHROTTLED = { l4LogPerSecond: Infinity };

function harness(config = {}) {
  const docs: flowtap.IDocument[] = [];
  const logs: flowtap.IL4FlowLog[] = [];
  const q = new QuadrupleStage({ onDocument: (d) => docs.push(d), onL4Log: (l) => logs.push(l) }, config);
  const rows = (table: string, pred: (d: flowtap.IDocument) => boolean = () => true) => docs.filter((d) => d.table === table && pred(d));
  return { q, docs, logs, rows };
}

test('1 s windows close once the clock passes their end by the tolerance; 1 m windows likewise', (t) => {
  const h = harness();
  h.q.addFlows([flow(T, { is_new_flow: true }), flow(T + 1)]);
  h.q.advance((T + 9) * US);
  t.is(h.rows('network_map.1s').length, 0, 'window T is open until T + 1 + 9');
  h.q.advance((T + 10) * US);
  t.deepEqual(h.rows('network_map.1s').map((d) => d.time), [T]);
  h.q.advance((T + 11) * US);
  t.deepEqual(h.rows('network_map.1s').map((d) => d.time), [T, T + 1]);
  t.is(h.rows('network_map.1m').length, 0);
  h.q.advance((T + 60 + 68) * US);
  t.is(h.rows('network_map.1m').length, 0, 'minute T is open until T + 60 + 69');
  h.q.advance((T + 60 + 69) * US);
  const m = h.rows('network_map.1m');
  t.is(m.length, 1);
  t.is(m[0].time, T);
  t.is(m[0].flow_meter!.byte_tx, 200);
  t.is(m[0].flow_meter!.byte_rx, 2000);
  t.is(m[0].flow_meter!.flow_count, 1, 'distinct flows, not reports');
  t.is(m[0].flow_meter!.new_flow, 1);
});

test('data for a closed window is dropped and counted; the open 1 m window still takes it', (t) => {
  const h = harness();
  h.q.addFlows([flow(T + 20, { is_new_flow: true })]);
  h.q.addFlows([flow(T + 5, { flow_id: 2, is_new_flow: true })]);
  t.is(h.q.drops.late_flow_1s, 1);
  t.is(h.q.drops.late_flow_1m, 0);
  h.q.flush();
  t.deepEqual(h.rows('network_map.1s').map((d) => d.time), [T + 20]);
  t.is(h.rows('network_map.1m')[0].flow_meter!.new_flow, 2);
  t.is(h.logs.length, 2);
});

test('concurrent connections are carried through idle windows until the close report', (t) => {
  const h = harness();
  h.q.addFlows([flow(T, { is_new_flow: true })]);
  h.q.addFlows([flow(T + 5, { packet_tx: 0, packet_rx: 0, byte_tx: 0, byte_rx: 0, is_closed: true, close_type: 'tcp_server_rst' })]);
  h.q.addFlows([flow(T + 8, { flow_id: 2, client_port: 40001, is_new_flow: true })]);
  h.q.flush();
  const edge = h.rows('network_map.1s');
  t.deepEqual(edge.map((d) => [d.time, d.flow_meter!.load]),
    [[T, 1], [T + 1, 1], [T + 2, 1], [T + 3, 1], [T + 4, 1], [T + 5, 1], [T + 8, 1]]);
  t.is(edge.find((d) => d.time === T + 5)!.flow_meter!.closed_flow, 1);
  t.is(edge.find((d) => d.time === T + 5)!.flow_meter!.server_rst_flow, 1);
  t.is(edge.find((d) => d.time === T + 2)!.flow_meter!.byte_tx, 0, 'carried rows hold only the load');
  t.is(h.rows('network_map.1m')[0].flow_meter!.load, 2);
  t.is(h.rows('network_map.1m')[0].flow_meter!.flow_count, 2);
});

test('single-side rows: one per side, tx is what that side sent', (t) => {
  const h = harness();
  h.q.addFlows([flow(T, { is_new_flow: true, retrans_tx: 3, retrans_rx: 1, ooo_tx: 2, retrans_syn: 1 })]);
  h.q.flush();
  const client = h.rows('network.1s', (d) => d.side === 'client');
  const server = h.rows('network.1s', (d) => d.side === 'server');
  t.is(client.length, 1);
  t.is(server.length, 1);
  t.is(client[0].ip, '10.0.0.1');
  t.is(server[0].ip, '10.0.0.2');
  t.is(client[0].server_port, 80);
  t.deepEqual([client[0].flow_meter!.byte_tx, client[0].flow_meter!.byte_rx, client[0].flow_meter!.retrans_tx], [100, 1000, 3]);
  t.deepEqual([server[0].flow_meter!.byte_tx, server[0].flow_meter!.byte_rx, server[0].flow_meter!.retrans_tx], [1000, 100, 1]);
  t.deepEqual([client[0].flow_meter!.ooo_tx, server[0].flow_meter!.ooo_rx, server[0].flow_meter!.ooo_tx], [2, 2, 0]);
  t.is(h.logs[0].retrans_syn, 1);
  t.is(h.rows('network_map.1s')[0].ip_0, '10.0.0.1');
  t.is(h.rows('network_map.1s')[0].ip_1, '10.0.0.2');
});

test('FlowAggr: one L4 log per flow per minute, the closing one at once', (t) => {
  const h = harness(UNTHROTTLED); // the throttle holds logs for up to 4 s: see throttle tests
  h.q.addFlows([flow(T + 1, { is_new_flow: true, rtt: 1500, tcp_flags_tx: 2 }), flow(T + 30, { tcp_flags_tx: 16 })]);
  t.is(h.logs.length, 0);
  h.q.addFlows([flow(T + 61)]);
  t.is(h.logs.length, 1, 'the first report of the next minute sends the previous minute');
  const first = h.logs[0];
  t.deepEqual([first.packet_tx, first.packet_rx, first.byte_tx, first.byte_rx], [2, 4, 200, 2000]);
  t.true(first.is_new_flow);
  t.is(first.close_type, 'forced_report', 'the flow was still open');
  t.is(first.rtt, 1500);
  t.is(first.tcp_flags_tx, 18);
  t.is(first.ip_0, '10.0.0.1');
  t.is(first.start_time, T * US);
  t.is(first.end_time, (T + 30) * US);
  t.is(first.l7_protocol, 'HTTP');
  h.q.addFlows([flow(T + 62, { is_closed: true, close_type: 'finish' })]);
  t.is(h.logs.length, 2, 'a close is emitted at once');
  t.is(h.logs[1].close_type, 'finish');
  t.false(h.logs[1].is_new_flow);
  t.is(h.logs[1].packet_tx, 2);
  t.is(h.logs[1].end_time, (T + 62) * US);
  h.q.flush();
  t.is(h.logs.length, 2);
});

test('an open flow idle through a minute has its L4 log emitted when the minute closes', (t) => {
  const h = harness(UNTHROTTLED); // the throttle holds logs for up to 4 s: see throttle tests
  h.q.addFlows([flow(T + 10, { is_new_flow: true })]);
  h.q.advance((T + 128) * US);
  t.is(h.logs.length, 0);
  h.q.advance((T + 129) * US);
  t.is(h.logs.length, 1);
});

test('AppMeters fill application and application_map rows keyed with l7_protocol and endpoint', (t) => {
  const h = harness();
  const meter = (sec: number, endpoint: string, extra: Partial<flowtap.IAppMeter> = {}): flowtap.IAppMeter => ({
    flow_id: nextId++, time: sec, ip_version: 4, ip_0: ip('10.0.0.1'), ip_1: ip('10.0.0.2'), server_port: 80, protocol: 6,
    l7_protocol: 'HTTP', endpoint, request: 1, response: 1, rrt_sum: 500, rrt_count: 1, rrt_max: 500, ...extra,
  });
  h.q.addAppMeters([meter(T, '/a'), meter(T, '/a', { rrt_sum: 900, rrt_max: 900, server_error: 1 }), meter(T + 1, '/b')]);
  h.q.flush();
  const a = h.rows('application_map.1s', (d) => d.endpoint === '/a');
  t.is(a.length, 1);
  t.deepEqual(a[0].app_meter, { request: 2, response: 2, client_error: 0, server_error: 1, timeout: 0, rrt_sum: 1400, rrt_count: 2, rrt_max: 900 });
  t.is(h.rows('application.1s').length, 4);
  t.is(h.rows('application.1s', (d) => d.side === 'server' && d.endpoint === '/a')[0].ip, '10.0.0.2');
  const m = h.rows('application_map.1m');
  t.deepEqual(m.map((d) => [d.endpoint, d.app_meter!.request, d.time]).sort(), [['/a', 2, T], ['/b', 1, T]]);
  t.is(h.rows('application_map.1m')[0].l7_protocol, 'HTTP');
  const net = h.rows('network_map.1s', (d) => d.time === T);
  t.is(net.length, 1, 'the network row of the same endpoints carries the L7 totals');
  t.deepEqual([net[0].flow_meter!.l7_request, net[0].flow_meter!.l7_server_error, net[0].flow_meter!.rrt_max], [2, 1, 900]);
  t.is(h.rows('network.1m', (d) => d.side === 'server')[0].flow_meter!.l7_request, 3);
});

test('rows are told apart by every tag, even where the tags joined with "|" would read the same', (t) => {
  const h = harness();
  const meter = (l7: string, endpoint: string): flowtap.IAppMeter => ({
    flow_id: nextId++, time: T, ip_version: 4, ip_0: ip('10.0.0.1'), ip_1: ip('10.0.0.2'), server_port: 80, protocol: 6,
    l7_protocol: l7, endpoint, request: 1,
  });
  h.q.addAppMeters([meter('HTTP|x', '/a'), meter('HTTP', 'x|/a'), meter('HTTP', 'x|/a')]);
  h.q.flush();
  const rows = h.rows('application_map.1s').map((d) => [d.l7_protocol, d.endpoint, d.app_meter!.request]).sort();
  t.deepEqual(rows, [['HTTP', 'x|/a', 2], ['HTTP|x', '/a', 1]]);
  // AppMeters with no flow slot land on the same network row, found by its tags.
  t.is(h.rows('network_map.1s').length, 1);
  t.is(h.rows('network_map.1s')[0].flow_meter!.l7_request, 3);
});

test('bad records are counted, not thrown', (t) => {
  const h = harness();
  h.q.addFlows([{ flow_id: 1 }, flow(T, { ip_0: new Uint8Array(4) })]);
  h.q.addAppMeters([{ flow_id: 1, time: 0 }]);
  t.is(h.q.drops.bad_flow, 2);
  t.is(h.q.drops.bad_app, 1);
});

test('a close report too late for its window still ends the carry of concurrent connections', (t) => {
  const h = harness({ toleranceSecondSec: 2 });
  h.q.addFlows([flow(T, { is_new_flow: true })]);
  h.q.addFlows([flow(T + 10, { flow_id: 2, client_port: 40001, is_new_flow: true })]);
  // Flow 1 closed at T + 3, but its close report comes after that window closed.
  h.q.addFlows([flow(T + 3, { packet_tx: 0, packet_rx: 0, byte_tx: 0, byte_rx: 0, is_closed: true, close_type: 'finish' })]);
  t.is(h.q.drops.late_flow_1s, 1);
  h.q.addFlows([flow(T + 20, { flow_id: 2, client_port: 40001, is_closed: true, close_type: 'finish' })]);
  h.q.flush();
  const loadAt = (sec: number) => h.rows('network.1s', (d) => d.side === 'server' && d.time === sec)[0]?.flow_meter!.load ?? 0;
  // Windows closed before the late close arrived (T .. T+7 with tolerance 2 and clock T+10) carried flow 1.
  t.is(loadAt(T + 5), 1);
  // After it, only flow 2 is alive: the key no longer carries flow 1.
  t.is(loadAt(T + 12), 1);
  t.is(loadAt(T + 20), 1);
  t.is(h.rows('network.1s', (d) => d.side === 'server' && Number(d.time) > T + 20).length, 0, 'nothing carried after the last close');
});

test('a flow whose close never comes stops being carried after carryIdleLimitSec', (t) => {
  const h = harness({ carryIdleLimitSec: 30 });
  h.q.addFlows([flow(T, { is_new_flow: true })]);
  h.q.advance((T + 100) * US);
  h.q.flush();
  const loads = h.rows('network_map.1s').map((d) => Number(d.time) - T);
  t.is(Math.max(...loads), 30, 'carried through T + 30 (last report + limit), not later');
  t.is(h.q.counters.carry_expired_1s, 1);
});

test('health-check flows (client RST right after the handshake, no payload) merge into one L4 log per server when switched on', (t) => {
  const check = (id: number, port: number, sec: number, extra: Partial<flowtap.IFlow> = {}) => flow(sec, {
    flow_id: id, client_port: port, start_time: sec * US, is_new_flow: true, is_closed: true, close_type: 'tcp_client_rst',
    syn_count: 1, synack_count: 1, packet_tx: 3, packet_rx: 1, byte_tx: 180, byte_rx: 60, l4_byte_tx: 0, l4_byte_rx: 0, ...extra,
  });
  const input = () => [check(1, 50001, T + 1), check(2, 50002, T + 2), check(3, 50003, T + 3),
    check(4, 50004, T + 4, { l4_byte_tx: 10 }), // payload: not a health check
    check(5, 50005, T + 5, { ip_1: ip('10.0.0.3') })]; // another server
  const off = harness(UNTHROTTLED);
  off.q.addFlows(input());
  off.q.flush();
  t.is(off.logs.length, 5, 'off by default: one log per flow');
  const on = harness({ ...UNTHROTTLED, aggregateHealthChecks: true });
  on.q.addFlows(input());
  on.q.flush();
  t.is(on.logs.length, 3);
  const merged = on.logs.find((l) => l.ip_1 === '10.0.0.2' && l.flow_id === 0)!;
  t.truthy(merged);
  t.deepEqual([merged.client_port, merged.syn_count, merged.packet_tx, merged.byte_tx, merged.byte_rx], [0, 3, 9, 540, 180]);
  t.is(merged.start_time, (T + 1) * US);
  t.is(merged.end_time, (T + 3) * US);
  t.is(merged.close_type, 'tcp_client_rst');
  t.is(on.q.counters.health_checks_merged, 4);
  t.is(on.logs.filter((l) => l.ip_1 === '10.0.0.3').length, 1);
  // The metrics are unchanged by the switch.
  const bytes = (h: typeof on) => h.rows('network_map.1m').reduce((a, d) => a + Number(d.flow_meter!.byte_tx), 0);
  t.is(bytes(on), bytes(off));
  t.is(bytes(on), on.logs.reduce((a, l) => a + Number(l.byte_tx), 0));
});

test('AppMeters do not move the clock: flow reports still on their way are not made late', (t) => {
  const h = harness();
  h.q.addFlows([flow(T, { is_new_flow: true })]);
  h.q.addAppMeters([{ flow_id: 1, time: T + 100, ip_version: 4, ip_0: ip('10.0.0.1'), ip_1: ip('10.0.0.2'), server_port: 80, protocol: 6, l7_protocol: 'HTTP', endpoint: '', request: 1 }]);
  h.q.addFlows([flow(T + 1)]);
  t.is(h.q.drops.late_flow_1s, 0);
  t.is(h.rows('network_map.1s').length, 0, 'no window closed by the AppMeter');
  h.q.flush();
  t.is(h.rows('application_map.1s').length, 1);
});
