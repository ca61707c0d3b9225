// Unit tests of the flow map on hand-built packets and a hand-moved clock.
import test from 'ava';
import { flowtap } from '../../lib/proto';
import { formatIp, PacketBatch } from '../../lib/packet-batch';
import { FlowMap, InferL7 } from '../../services/flow/flow-map';
import { ACK, FIN, PacketSpec, RST, SYN, SYNACK, addPacket, batchOf, conn } from './packet-builder';

const T = 1_700_000_000; // a whole second, so T + 0.5 is mid-second
const US = 1e6;

function harness(config: ConstructorParameters<typeof FlowMap>[2] = {}, infer?: InferL7) {
  const flows: flowtap.IFlow[] = [];
  const payloads: flowtap.IAppPayload[] = [];
  const map = new FlowMap({ onFlow: (f) => flows.push(f), onAppPayload: (p) => payloads.push(p) }, infer, config);
  const feed = (specs: PacketSpec[]) => map.processBatch(batchOf(specs));
  const closed = () => flows.filter((f) => f.is_closed);
  return { map, flows, payloads, feed, closed };
}

const sum = (flows: flowtap.IFlow[], k: keyof flowtap.IFlow) => flows.reduce((a, f) => a + Number(f[k] ?? 0), 0);

test('handshake, data and FINs: client from the SYN, per-second deltas, rtt, finish', (t) => {
  const h = harness();
  const k = conn('10.0.0.1', 40000, '10.0.0.2', 8080);
  h.feed([
    k.c(T + 0.100, SYN, { seq: 1000 }),
    k.s(T + 0.110, SYNACK, { seq: 5000, ack: 1001 }),
    k.c(T + 0.112, ACK, { seq: 1001, ack: 5001 }),
    k.c(T + 0.200, ACK, { seq: 1001, ack: 5001, len: 100 }),
    k.s(T + 1.300, ACK, { seq: 5001, ack: 1101, len: 300 }),
    k.c(T + 2.500, FIN, { seq: 1101, ack: 5301 }),
    k.s(T + 2.600, FIN, { seq: 5301, ack: 1102 }),
    k.c(T + 2.700, ACK, { seq: 1102, ack: 5302 }),
  ]);
  h.map.advance((T + 3) * US);
  t.deepEqual(h.flows.map((f) => f.report_time), [T * US, (T + 1) * US, (T + 2) * US]);
  const [r0, r1, r2] = h.flows;
  t.is(formatIp(r0.ip_0!), '10.0.0.1');
  t.is(formatIp(r0.ip_1!), '10.0.0.2');
  t.is(r0.client_port, 40000);
  t.is(r0.server_port, 8080);
  t.true(r0.is_new_flow);
  t.false(r1.is_new_flow);
  t.deepEqual([r0.packet_tx, r0.packet_rx, r1.packet_tx, r1.packet_rx, r2.packet_tx, r2.packet_rx], [3, 1, 0, 1, 2, 1]);
  t.is(r0.l4_byte_tx, 100);
  t.is(r1.l4_byte_rx, 300);
  t.is(r0.byte_tx, 54 + 54 + 154);
  t.is(r0.syn_count, 1);
  t.is(r0.synack_count, 1);
  t.is(r2.fin_count, 2);
  t.is(r0.rtt_server_sum, 10_000);
  t.is(r0.rtt_client_sum, 2_000);
  t.is(r0.rtt, 12_000);
  t.is(r1.rtt, 0, 'handshake rtt is reported once');
  t.is(r0.art_count, 0);
  t.is(r1.art_count, 1);
  t.is(r1.art_sum, 1_100_000);
  t.is(h.closed().length, 0, 'closing linger not over yet');
  h.map.advance((T + 2.7 + 5) * US);
  t.is(h.closed().length, 1);
  t.is(h.closed()[0].close_type, 'finish');
  t.is(h.map.flowsOpen, 0);
});

test('SYN-less flows: well-known port is the server, configured ports too, else the first sender', (t) => {
  const h = harness({ serverPorts: new Set([9000]) });
  h.feed([
    { t: T + 0.1, src: '10.0.0.2', sport: 80, dst: '10.0.0.1', dport: 40001, len: 10 },
    { t: T + 0.2, src: '10.0.0.3', sport: 9000, dst: '10.0.0.1', dport: 40002, len: 10 },
    { t: T + 0.3, src: '10.0.0.4', sport: 50000, dst: '10.0.0.1', dport: 40003, len: 10 },
    { t: T + 0.4, src: '10.0.0.5', sport: 53, dst: '10.0.0.1', dport: 33333, proto: 17, len: 10 },
    { t: T + 0.5, src: '10.0.0.1', sport: 40004, dst: '10.0.0.6', dport: 443, flags: SYNACK },
  ]);
  h.map.flush();
  const byPort = new Map(h.closed().map((f) => [f.client_port, f]));
  t.is(byPort.get(40001)?.server_port, 80);
  t.is(sum(h.flows.filter((f) => f.client_port === 40001), 'packet_rx'), 1, 'the packet from port 80 is the server\'s');
  t.is(byPort.get(40002)?.server_port, 9000);
  t.is(byPort.get(50000)?.server_port, 40003, 'no hint: the first sender is the client');
  t.is(byPort.get(33333)?.server_port, 53);
  t.is(h.closed().find((f) => f.server_port === 40004)?.client_port, 443, 'SYN-ACK sender is the server');
  t.true(h.closed().every((f) => f.close_type === 'timeout'));
});

test('UDP idle timeout is 5 s by default and configurable', (t) => {
  for (const udpUs of [5e6, 2e6]) {
    const h = harness({ timeouts: { udpUs } });
    h.feed([{ t: T + 0.5, src: '10.0.0.1', sport: 5000, dst: '10.0.0.2', dport: 53, proto: 17, len: 30 }]);
    h.map.advance(T * US + 0.5e6 + udpUs - 1);
    t.is(h.closed().length, 0);
    h.map.advance(T * US + 0.5e6 + udpUs);
    t.is(h.closed().length, 1);
    t.is(h.closed()[0].close_type, 'timeout');
    t.is(h.closed()[0].report_time, Math.floor(T + 0.5 + udpUs / US) * US);
  }
});

const rstCases: Array<[string, (k: ReturnType<typeof conn>) => PacketSpec[]]> = [
  ['server_reset', (k) => [k.c(T, SYN, { seq: 1 }), k.s(T + 0.01, RST, { ack: 2 })]],
  ['client_establish_reset', (k) => [k.c(T, SYN, { seq: 1 }), k.s(T + 0.01, SYNACK, { seq: 9, ack: 2 }), k.c(T + 0.02, RST, { seq: 2 })]],
  ['server_establish_reset', (k) => [k.c(T, SYN, { seq: 1 }), k.s(T + 0.01, SYNACK, { seq: 9, ack: 2 }), k.s(T + 0.02, RST, { seq: 10 })]],
  ['tcp_client_rst', (k) => [k.c(T, SYN, { seq: 1 }), k.s(T + 0.01, SYNACK, { seq: 9, ack: 2 }), k.c(T + 0.02, ACK, { seq: 2, ack: 10 }), k.c(T + 0.03, RST, { seq: 2 })]],
  ['tcp_server_rst', (k) => [k.c(T, ACK, { seq: 2, ack: 10, len: 5 }), k.s(T + 0.03, RST, { seq: 10 })]],
  ['tcp_fin_client_rst', (k) => [k.c(T, ACK, { seq: 2, ack: 10 }), k.c(T + 0.01, FIN, { seq: 2, ack: 10 }), k.c(T + 0.03, RST, { seq: 3 })]],
];
// A RST during the handshake lingers 1 s (opening_rst), one after it 35 s (rst).
const openingRsts = new Set(['server_reset', 'client_establish_reset', 'server_establish_reset']);
for (const [name, packets] of rstCases) {
  const linger = openingRsts.has(name) ? 1 : 35;
  test(`RST close type ${name}, reported after the ${linger} s RST linger`, (t) => {
    const h = harness();
    h.feed(packets(conn('10.1.0.1', 40000, '10.1.0.2', 80)));
    h.map.advance((T + linger - 0.5) * US);
    t.is(h.closed().length, 0);
    h.map.advance((T + linger + 0.1) * US);
    t.deepEqual(h.closed().map((f) => f.close_type), [name]);
  });
}

test('handshake timeouts: client_syn_repeat, server_syn_ack_repeat, plain timeout', (t) => {
  const h = harness();
  const a = conn('10.2.0.1', 40000, '10.2.0.2', 80);
  const b = conn('10.2.0.1', 40001, '10.2.0.2', 80);
  const c = conn('10.2.0.1', 40002, '10.2.0.2', 80);
  h.feed([
    a.c(T, SYN, { seq: 7 }), a.c(T + 1, SYN, { seq: 7 }), a.c(T + 3, SYN, { seq: 7 }),
    b.c(T, SYN, { seq: 7 }), b.s(T + 0.1, SYNACK, { seq: 70, ack: 8 }), b.s(T + 1.1, SYNACK, { seq: 70, ack: 8 }),
    c.c(T, SYN, { seq: 7 }),
  ]);
  h.map.advance((T + 4.9) * US);
  t.deepEqual(h.closed().map((f) => f.client_port), []);
  h.map.advance((T + 10) * US);
  const types = new Map(h.closed().map((f) => [f.client_port, f.close_type]));
  t.is(types.get(40000), 'client_syn_repeat');
  t.is(types.get(40001), 'server_syn_ack_repeat');
  t.is(types.get(40002), 'timeout');
  const a1 = h.flows.filter((f) => f.client_port === 40000);
  t.is(sum(a1, 'retrans_syn'), 2);
  t.is(sum(a1, 'syn_count'), 3);
  t.is(sum(h.flows.filter((f) => f.client_port === 40001), 'retrans_synack'), 1);
});

test('server_queue_lack: SYN-ACK repeated after the client ACK, then idle past 300 s', (t) => {
  const h = harness();
  const k = conn('10.3.0.1', 40000, '10.3.0.2', 80);
  h.feed([k.c(T, SYN, { seq: 1 }), k.s(T + 0.1, SYNACK, { seq: 9, ack: 2 }), k.c(T + 0.2, ACK, { seq: 2, ack: 10 }),
    k.s(T + 1.2, SYNACK, { seq: 9, ack: 2 })]);
  h.map.advance((T + 300) * US);
  t.is(h.closed().length, 0, 'established timeout is 300 s');
  h.map.advance((T + 302) * US);
  t.deepEqual(h.closed().map((f) => f.close_type), ['server_queue_lack']);
});

test('half close: one FIN then idle gives client_half_close / server_half_close (timeout configurable)', (t) => {
  const h = harness({ timeouts: { closingUs: 5e6 } });
  const a = conn('10.4.0.1', 40000, '10.4.0.2', 80);
  const b = conn('10.4.0.1', 40001, '10.4.0.2', 80);
  h.feed([a.c(T, ACK, { seq: 5, len: 10 }), a.c(T + 0.1, FIN, { seq: 15 }), b.c(T, ACK, { seq: 5, len: 10 }), b.s(T + 0.1, FIN, { seq: 99 })]);
  h.map.advance((T + 5) * US);
  t.is(h.closed().length, 0);
  h.map.advance((T + 5.2) * US);
  const types = new Map(h.closed().map((f) => [f.client_port, f.close_type]));
  t.is(types.get(40000), 'client_half_close');
  t.is(types.get(40001), 'server_half_close');
});

test('a SYN on a finished 5-tuple, or with a new ISN on an established one, starts a new flow', (t) => {
  const h = harness();
  const k = conn('10.5.0.1', 40000, '10.5.0.2', 80);
  h.feed([
    k.c(T, SYN, { seq: 100 }), k.s(T + 0.01, SYNACK, { seq: 900, ack: 101 }), k.c(T + 0.02, ACK, { seq: 101, ack: 901 }),
    k.c(T + 0.03, FIN, { seq: 101 }), k.s(T + 0.04, FIN, { seq: 901 }), k.c(T + 0.05, ACK, { seq: 102 }),
    k.c(T + 0.50, SYN, { seq: 5000 }), k.s(T + 0.51, SYNACK, { seq: 7000, ack: 5001 }), k.c(T + 0.52, ACK, { seq: 5001 }),
    k.c(T + 0.60, SYN, { seq: 8000 }),
  ]);
  const closedNow = h.closed();
  t.deepEqual(closedNow.map((f) => f.close_type), ['finish', 'client_source_port_reuse']);
  t.is(closedNow[0].packet_tx, 4);
  t.is(closedNow[0].packet_rx, 2);
  t.is(closedNow[1].packet_tx, 2);
  t.is(closedNow[1].packet_rx, 1);
  t.true(closedNow[1].is_new_flow);
  h.map.flush();
  const ids = new Set(h.flows.map((f) => f.flow_id));
  t.is(ids.size, 3);
  t.is(h.closed()[2].close_type, 'timeout', 'the third flow ends in SYN_SENT at flush');
  t.is(sum(h.flows.filter((f) => f.flow_id === h.closed()[2].flow_id), 'packet_tx'), 1);
});

test('the flow limit drops new flows and counts them', (t) => {
  const h = harness({ maxFlows: 2 });
  h.feed([
    { t: T, src: '10.6.0.1', sport: 1, dst: '10.6.0.2', dport: 53, proto: 17 },
    { t: T, src: '10.6.0.1', sport: 2, dst: '10.6.0.2', dport: 53, proto: 17 },
    { t: T, src: '10.6.0.1', sport: 3, dst: '10.6.0.2', dport: 53, proto: 17 },
    { t: T, src: '10.6.0.2', sport: 53, dst: '10.6.0.1', dport: 1, proto: 17 },
  ]);
  t.is(h.map.drops.flow_map_full, 1);
  t.is(h.map.flowsOpen, 2);
  h.map.flush();
  t.is(h.closed().length, 2);
  t.is(sum(h.flows, 'packet_tx') + sum(h.flows, 'packet_rx'), 3);
});

test('many concurrent flows: tables grow past their first size and every packet lands in its flow', (t) => {
  const h = harness();
  const b = new PacketBatch(256);
  const n = 5000;
  for (let round = 0; round < 3; round++) {
    for (let k = 0; k < n; k++) {
      if (b.full) { h.map.processBatch(b); b.reset(); }
      addPacket(b, { t: T + round, src: `10.${k >> 8}.${k & 255}.1`, sport: 1024 + k, dst: '10.200.0.1', dport: 80, len: k % 7, frameLen: 100 + k });
    }
  }
  h.map.processBatch(b);
  t.is(h.map.flowsOpen, n);
  h.map.flush();
  t.is(h.closed().length, n);
  t.is(new Set(h.flows.map((f) => f.flow_id)).size, n);
  const perFlow = new Map<number, number>();
  for (const f of h.flows) perFlow.set(f.client_port!, (perFlow.get(f.client_port!) ?? 0) + Number(f.byte_tx));
  for (let k = 0; k < n; k++) if (perFlow.get(1024 + k) !== 3 * (100 + k)) return t.fail(`flow ${k}`);
  t.is(h.flows.filter((f) => f.report_time === (T + 1) * US).length, n, 'one report per flow per active second');
});

test('infer is called on payloads until it names the protocol; payloads carry flow context', (t) => {
  const calls: string[] = [];
  const infer: InferL7 = (_id, payload, fromClient) => {
    calls.push(`${fromClient ? 'c' : 's'}:${Buffer.from(payload).toString()}`);
    return Buffer.from(payload).toString().startsWith('GET') ? 'HTTP' : '';
  };
  const h = harness({}, infer);
  const k = conn('10.7.0.1', 40000, '10.7.0.2', 80);
  h.feed([k.c(T, ACK, { seq: 1, payload: 'hello' }), k.c(T + 0.1, ACK, { seq: 6, payload: 'GET / HTTP/1.1' }),
    k.s(T + 0.2, ACK, { seq: 1, payload: 'HTTP/1.1 200 OK' }), k.c(T + 0.3, ACK, { seq: 20 })]);
  h.map.flush();
  t.deepEqual(calls, ['c:hello', 'c:GET / HTTP/1.1']);
  t.deepEqual(h.payloads.map((p) => [p.from_client, p.l7_protocol, Buffer.from(p.payload!).toString()]),
    [[true, '', 'hello'], [true, 'HTTP', 'GET / HTTP/1.1'], [false, 'HTTP', 'HTTP/1.1 200 OK']]);
  t.is(h.payloads[2].server_port, 80);
  t.true(h.flows.every((f) => f.l7_protocol === 'HTTP'));
});

test('sequence analysis: retransmission, keep-alive, out of order, zero window, srt', (t) => {
  const h = harness();
  const k = conn('10.8.0.1', 40000, '10.8.0.2', 80);
  h.feed([
    k.c(T, ACK, { seq: 1000, len: 100 }),
    k.c(T + 0.01, ACK, { seq: 1000, len: 100 }),   // retransmission
    k.s(T + 0.02, ACK, { seq: 1, ack: 1100 }),      // acks all client data: srt 10 ms from the latest
    k.c(T + 0.03, ACK, { seq: 1099, len: 1 }),     // keep-alive: not a retransmission
    k.c(T + 0.04, ACK, { seq: 1300, len: 50 }),    // gap (1100..1300 not seen)
    k.c(T + 0.041, ACK, { seq: 1100, len: 200 }),  // fills the gap 1 ms later (< 3 ms): out of order
    k.c(T + 0.05, ACK, { seq: 1100, len: 100 }),   // 9 ms after the highest seq advanced: retransmission
    k.s(T + 0.06, ACK, { seq: 1, ack: 1350, win: 0 }),
    k.s(T + 0.07, RST, { seq: 1, win: 0 }),        // a RST with zero window is not a zero-window
  ]);
  h.map.flush();
  t.is(sum(h.flows, 'retrans_tx'), 2);
  t.is(sum(h.flows, 'retrans_rx'), 0);
  t.is(sum(h.flows, 'ooo_tx'), 1, 'the gap itself is not counted; the late segment filling it is');
  t.is(sum(h.flows, 'zero_win_rx'), 1);
  t.is(sum(h.flows, 'srt_count'), 2);
  t.is(h.flows[0].srt_max, 10_000);
});

test('bad rows are counted by reason, not thrown', (t) => {
  const h = harness();
  const b = batchOf([{ t: T, src: '10.0.0.1', sport: 1, dst: '10.0.0.2', dport: 2 }, { t: T, src: '10.0.0.1', sport: 1, dst: '10.0.0.2', dport: 2 }]);
  b.ipVersion[0] = 0;
  b.timestampUs[1] = NaN;
  h.map.processBatch(b);
  t.deepEqual(h.map.drops, { flow_map_full: 0, non_ip: 1, bad_timestamp: 1 });
  t.is(h.map.flowsOpen, 0);
});

test('timer wheel: long gaps and timeouts longer than one wheel turn expire exactly once, on time', (t) => {
  const h = harness({ timeouts: { establishedUs: 2000e6 } });
  const k = conn('10.9.0.1', 40000, '10.9.0.2', 80);
  const u = conn('10.9.0.1', 40001, '10.9.0.2', 80);
  h.feed([k.c(T, ACK, { seq: 1, len: 10 }), { t: T, src: '10.9.0.1', sport: 5353, dst: '10.9.0.3', dport: 53, proto: 17 }]);
  h.map.advance((T + 1999) * US);
  t.deepEqual(h.closed().map((f) => f.protocol), [17], 'UDP gone after 5 s, TCP still open');
  h.feed([u.c(T + 1999.5, ACK, { seq: 1, len: 10 })]);
  h.map.advance((T + 2000) * US);
  t.deepEqual(h.closed().map((f) => f.client_port), [5353, 40000]);
  h.map.advance((T + 100_000) * US); // a gap of many wheel turns
  t.deepEqual(h.closed().map((f) => f.client_port), [5353, 40000, 40001]);
  t.is(h.map.flowsOpen, 0);
  h.map.flush();
  t.is(h.closed().length, 3, 'flush after everything expired closes nothing twice');
});

test('flush closes each flow with the close type its timeout would give', (t) => {
  const h = harness();
  const a = conn('10.10.0.1', 40000, '10.10.0.2', 80);
  const b = conn('10.10.0.1', 40001, '10.10.0.2', 80);
  const c = conn('10.10.0.1', 40002, '10.10.0.2', 80);
  h.feed([a.c(T, SYN, { seq: 1 }), a.c(T + 1, SYN, { seq: 1 }),
    b.c(T, ACK, { seq: 1 }), b.c(T + 0.1, FIN, { seq: 1 }), b.s(T + 0.2, FIN, { seq: 1 }),
    c.c(T, ACK, { seq: 1 }), c.s(T + 0.1, RST, { seq: 1 })]);
  h.map.flush();
  const types = new Map(h.closed().map((f) => [f.client_port, f.close_type]));
  t.deepEqual([types.get(40000), types.get(40001), types.get(40002)], ['client_syn_repeat', 'finish', 'tcp_server_rst']);
  t.true(h.closed().every((f) => f.report_time === (T + 1) * US), 'closed in the last second seen');
});

test('a half-closed flow stays one flow while the other side keeps sending (closing: 300 s by default)', (t) => {
  const packets = (k: ReturnType<typeof conn>) => [k.c(T, SYN, { seq: 1 }), k.s(T + 0.01, SYNACK, { seq: 9, ack: 2 }), k.c(T + 0.02, ACK, { seq: 2 }),
    k.c(T + 0.03, FIN, { seq: 2 }), k.s(T + 10, ACK, { seq: 10, len: 500 }), k.s(T + 20, FIN, { seq: 510 }), k.c(T + 20.1, ACK, { seq: 3 })];
  const d = harness({ timeouts: { closingUs: 5e6 } }); // the answer 10 s after the FIN comes too late
  d.feed(packets(conn('10.11.0.1', 40000, '10.11.0.2', 9090)));
  d.map.advance((T + 25.2) * US);
  t.is(d.closed()[0].close_type, 'client_half_close');
  const h = harness(); // default 300 s
  const k = conn('10.11.0.1', 40000, '10.11.0.2', 9090);
  h.feed(packets(k));
  h.map.advance((T + 25.2) * US);
  t.deepEqual(h.closed().map((f) => f.close_type), ['finish']);
  t.is(new Set(h.flows.map((f) => f.flow_id)).size, 1);
  t.is(sum(h.flows, 'packet_tx') + sum(h.flows, 'packet_rx'), 7);
});

test('per-second counters stay with their flow when another flow active in the same second closes', (t) => {
  const h = harness();
  const a = conn('10.9.0.1', 41000, '10.9.0.9', 80);
  const b = conn('10.9.0.2', 41001, '10.9.0.9', 80);
  const c = conn('10.9.0.3', 41002, '10.9.0.9', 80);
  // a, b and c become active in that order; a is reset, and a new SYN on its 5-tuple closes it
  // mid-second (its counters are reported, c's move to its freed row), then b and c send more.
  h.feed([
    a.c(T + 0.1, ACK, { seq: 1, ack: 1, len: 10 }),
    b.c(T + 0.2, ACK, { seq: 1, ack: 1, len: 20 }),
    c.c(T + 0.3, ACK, { seq: 1, ack: 1, len: 30 }),
    a.s(T + 0.4, RST, { seq: 1, ack: 11 }),
    a.c(T + 0.45, SYN, { seq: 9000 }),
    b.s(T + 0.5, ACK, { seq: 1, ack: 21, len: 200 }),
    c.s(T + 0.6, ACK, { seq: 1, ack: 31, len: 300 }),
    c.c(T + 1.2, ACK, { seq: 31, ack: 301, len: 7 }),
  ]);
  h.map.advance((T + 2) * US);
  const byPort = (port: number) => h.flows.filter((f) => f.client_port === port);
  t.deepEqual(byPort(41000).map((f) => [f.report_time, f.l4_byte_tx, f.packet_tx, f.packet_rx, f.syn_count, f.is_closed]),
    [[T * US, 10, 1, 1, 0, true], [T * US, 0, 1, 0, 1, false]]);
  t.deepEqual(byPort(41001).map((f) => [f.report_time, f.l4_byte_tx, f.l4_byte_rx]), [[T * US, 20, 200]]);
  t.deepEqual(byPort(41002).map((f) => [f.report_time, f.l4_byte_tx, f.l4_byte_rx]), [[T * US, 30, 300], [(T + 1) * US, 7, 0]]);
  t.is(h.map.flowsOpen, 3);
});
