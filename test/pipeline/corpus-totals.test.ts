// Pipeline-wide totals on EVERY corpus file, through capture -> flow -> l7 -> quadruple chained in
// one process (test/support/pipeline.ts): summed over the run,
// - byte_tx / byte_rx of network_map.1m = those of the L4 flow logs (and the same for packets),
// - their TCP+UDP byte total = tshark's innermost conversation totals, per direction of each
//   conversation (tunnels: the inner 5-tuple; fragments: every fragment's frame bytes),
// - new_flow of network_map.1m = the number of flows (distinct flow ids in the L4 logs, each with
//   exactly one closing log), and the TCP+UDP flows = tshark's conversations,
// - application.1m requests (server-side rows) = L7 logs holding a request, per l7_protocol, and
//   responses likewise.
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { flowtap } from '../../lib/proto';
import { runPipeline } from '../support/pipeline';
import { CORPUS } from '../support/tshark';
import { innerConversations } from './tshark-oracle';

const files = (fs.readdirSync(CORPUS, { recursive: true, encoding: 'utf8' }) as string[])
  .filter((f) => /\.(pcap|pcapng|pcap\.gz)$/.test(f)).sort();

/**
 * Files where our flows and tshark's conversations are known to differ in number (not in bytes),
 * with the reason. Bytes and packets are still compared on them.
 */
const UDP_SPLIT = 'a UDP 5-tuple used again after the UDP idle timeout (5 s) is a new flow; tshark keeps one conversation per 5-tuple';
const FLOW_COUNT_DIFFERS: Record<string, string> = {
  'ip-fragments/ndpi/dns_fragmented.pcap': UDP_SPLIT,
  'tunnels/deepflow/vmware-gre-teb.pcap': UDP_SPLIT,
  'tunnels/zeek/gre-sample.pcap': UDP_SPLIT,
  'tcp-anomalies/zeek/rst-inject-rae.pcap': 'the 5-tuple is used again after the server reset the SYN: the flow map starts a new flow',
  'tcp-anomalies/suricata-verify/syn_retransmit_with_ts.pcap':
    'the flow map splits this connection into two one-way flows (client_half_close + server_half_close): a flow-stage issue, reported',
};

/** tshark names gRPC calls gRPC in logs; the l7 stage's AppMeters name the parser (HTTP2). Reported to l7. */
const METER_PROTOCOL_OF_LOG: Record<string, string> = { gRPC: 'HTTP2' };

test('the corpus has its 90 files', (t) => {
  t.is(files.length, 90);
});

/**
 * An L7 log is a session (request and response), a request alone (timeout, or one-way), or a
 * response alone (its request not seen). request_length is the body length (0 for a GET), so a
 * lone response is told by: no request body, no duration, not a timeout, and a response length,
 * a response code or no request type (a lone TLS record names no request).
 */
function responseOnly(l: flowtap.IL7FlowLog): boolean {
  return num(l.request_length) === 0 && num(l.response_duration) === 0 && l.response_status !== 'timeout'
    && (num(l.response_length) > 0 || l.response_code != null || !l.request_type);
}
const hasRequest = (l: flowtap.IL7FlowLog) => !responseOnly(l);
const hasResponse = (l: flowtap.IL7FlowLog) => responseOnly(l)
  || (l.response_status !== 'timeout' && (num(l.response_length) > 0 || num(l.response_duration) > 0 || l.response_code != null));

/**
 * Files where the l7 stage names a request's protocol differently in the AppMeter and in the log,
 * so only the totals over protocols are compared. Reported to l7.
 */
const L7_LABEL_DIFFERS: Record<string, string> = {
  'http2/suricata-verify/http2-range.pcap': 'h2c upgrade: the upgraded request is an HTTP log but counted in the HTTP2 meter of its second',
};

const logProto = (l: flowtap.IL7FlowLog) => METER_PROTOCOL_OF_LOG[l.l7_protocol ?? ''] ?? l.l7_protocol ?? '';

const sum = <T>(xs: T[], f: (x: T) => number) => xs.reduce((a, x) => a + f(x), 0);
const num = (v: unknown) => Number(v ?? 0);

for (const rel of files) {
  test(`pipeline totals = L4 logs = tshark: ${rel}`, async (t) => {
    const file = path.join(CORPUS, rel);
    const r = await runPipeline(file);
    const q = r.drops.quadruple;
    t.is(q.late_flow_1m + q.bad_flow + q.l4_log_throttled, 0, 'nothing of the L4 path dropped');
    t.is(r.drops.l7LogThrottled, 0);

    const net1m = r.documents.filter((d) => d.table === 'network_map.1m');
    const meter = (d: flowtap.IDocument, k: keyof flowtap.IFlowMeter) => num(d.flow_meter?.[k]);
    const tcpUdp = (p: unknown) => p === 6 || p === 17;

    // Metrics = L4 logs.
    for (const k of ['byte_tx', 'byte_rx', 'packet_tx', 'packet_rx'] as const) {
      t.is(sum(net1m, (d) => meter(d, k)), sum(r.l4Logs, (l) => num(l[k])), `network_map.1m ${k} = l4_flow_log ${k}`);
    }

    // Metrics = tshark, per direction: client-to-server bytes of each conversation.
    const theirs = innerConversations(file);
    let theirBytes = 0, theirPackets = 0;
    for (const side of theirs.values()) { theirBytes += side.bytes; theirPackets += side.packets; }
    const ourTcpUdp = net1m.filter((d) => tcpUdp(d.protocol));
    t.is(sum(ourTcpUdp, (d) => meter(d, 'byte_tx') + meter(d, 'byte_rx')), theirBytes, 'TCP+UDP bytes = tshark');
    t.is(sum(ourTcpUdp, (d) => meter(d, 'packet_tx') + meter(d, 'packet_rx')), theirPackets, 'TCP+UDP packets = tshark');
    // Direction by direction: our L4 logs, keyed as tshark's conversations.
    const ours = new Map<string, number>();
    for (const l of r.l4Logs) {
      if (!tcpUdp(l.protocol)) continue;
      const a = `${l.ip_0}:${l.client_port}`, b = `${l.ip_1}:${l.server_port}`;
      const [x, y] = a < b ? [a, b] : [b, a];
      const add = (from: string, bytes: number) => {
        if (bytes === 0) return;
        const key = `${l.protocol} ${x} ${y} from ${from}`;
        ours.set(key, (ours.get(key) ?? 0) + bytes);
      };
      add(a, num(l.byte_tx));
      add(b, num(l.byte_rx));
    }
    const theirsBytes = new Map([...theirs].map(([k, v]) => [k, v.bytes] as const).filter(([, v]) => v > 0));
    t.deepEqual(Object.fromEntries([...ours].sort()), Object.fromEntries([...theirsBytes].sort()), 'bytes per conversation direction = tshark');

    // new_flow = flows.
    const flowIds = new Set(r.l4Logs.map((l) => num(l.flow_id)));
    t.is(sum(net1m, (d) => meter(d, 'new_flow')), flowIds.size, 'network_map.1m new_flow = flows');
    t.is(sum(net1m, (d) => meter(d, 'closed_flow')), flowIds.size, 'network_map.1m closed_flow = flows');
    t.is(r.l4Logs.filter((l) => l.close_type !== 'forced_report').length, flowIds.size, 'one closing L4 log per flow');
    const convs = new Set([...theirs.keys()].map((k) => k.replace(/ from .*$/, '')));
    const ourFlows = r.l4Logs.filter((l) => tcpUdp(l.protocol));
    const ourConvs = new Set(ourFlows.map((l) => {
      const a = `${l.ip_0}:${l.client_port}`, b = `${l.ip_1}:${l.server_port}`;
      return `${l.protocol} ${a < b ? a : b} ${a < b ? b : a}`;
    }));
    t.deepEqual([...ourConvs].sort(), [...convs].sort(), 'TCP+UDP 5-tuples = tshark conversations');
    const ourFlowCount = new Set(ourFlows.map((l) => num(l.flow_id))).size;
    if (FLOW_COUNT_DIFFERS[rel]) t.true(ourFlowCount > convs.size, FLOW_COUNT_DIFFERS[rel]);
    else t.is(ourFlowCount, convs.size, 'TCP+UDP flows = tshark conversations');

    // application.1m = L7 logs, per protocol.
    const app1m = r.documents.filter((d) => d.table === 'application.1m' && d.side === 'server');
    const perProto = (xs: Array<[string, number]>) => {
      const m: Record<string, number> = {};
      for (const [p, v] of xs) if (v > 0) m[p] = (m[p] ?? 0) + v;
      return m;
    };
    const label = L7_LABEL_DIFFERS[rel] ? () => '*' : (p: string) => p;
    t.deepEqual(perProto(app1m.map((d) => [label(d.l7_protocol ?? ''), num(d.app_meter?.request)])),
      perProto(r.l7Logs.map((l) => [label(logProto(l)), hasRequest(l) ? 1 : 0])), 'application.1m request = L7 logs with a request');
    t.deepEqual(perProto(app1m.map((d) => [label(d.l7_protocol ?? ''), num(d.app_meter?.response)])),
      perProto(r.l7Logs.map((l) => [label(logProto(l)), hasResponse(l) ? 1 : 0])), 'application.1m response = L7 logs with a response');
    t.is(sum(r.documents.filter((d) => d.table === 'application_map.1m'), (d) => num(d.app_meter?.request)),
      sum(app1m, (d) => num(d.app_meter?.request)), 'application_map.1m = application.1m server side');
  });
}
