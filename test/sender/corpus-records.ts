// Records to feed the sinks, built from what tshark reads in corpus captures (not from flowtap's
// own pipeline, so the sinks are tested on their own): one L7 log per HTTP request (with its
// response when tshark pairs one), one L4 log per TCP/UDP conversation, and metric documents
// of both kinds (network and application) derived from those.
import { flowtap } from '../../lib/proto';
import { corpusFile, tsharkConversations, tsharkFields } from '../support/tshark';

export interface CorpusRecords {
  l4: flowtap.IL4FlowLog[];
  l7: flowtap.IL7FlowLog[];
  metrics: flowtap.IDocument[];
}

const us = (epoch: string) => Math.round(Number(epoch) * 1e6);

export function httpLogs(file: string): flowtap.IL7FlowLog[] {
  const rows = tsharkFields(file, [
    'frame.number', 'tcp.stream', 'frame.time_epoch', 'ip.src', 'ip.dst', 'tcp.srcport', 'tcp.dstport',
    'http.request.method', 'http.request.uri', 'http.host', 'http.response.code', 'http.request_in', 'http.request.version',
  ], { filter: 'http' });
  const requests = new Map<string, flowtap.IL7FlowLog>();
  const out: flowtap.IL7FlowLog[] = [];
  for (const [frame, stream, time, src, dst, sport, dport, method, uri, host, code, reqIn, version] of rows) {
    if (method) {
      const log: flowtap.IL7FlowLog = {
        flow_id: Number(stream) + 1, start_time: us(time), end_time: us(time), ip_0: src, ip_1: dst,
        client_port: Number(sport), server_port: Number(dport), protocol: 6, l7_protocol: 'http1',
        version: version.replace('HTTP/', ''), request_type: method, request_domain: host, request_resource: uri,
        endpoint: uri.split('?')[0], response_status: 'timeout', signal_source: 'packet',
        trace_id: `t-${frame}`, sampled: Number(frame) % 7 === 0,
      };
      requests.set(frame, log);
      out.push(log);
    } else if (code && reqIn && requests.has(reqIn.split(',')[0])) {
      const log = requests.get(reqIn.split(',')[0])!;
      const c = Number(code.split(',')[0]);
      log.response_code = c;
      log.end_time = us(time);
      log.response_duration = log.end_time - Number(log.start_time);
      log.response_status = c >= 500 ? 'server_error' : c >= 400 ? 'client_error' : 'ok';
    }
  }
  return out;
}

export function conversationLogs(file: string, firstFlowId: number): flowtap.IL4FlowLog[] {
  const out: flowtap.IL4FlowLog[] = [];
  for (const proto of ['tcp', 'udp'] as const) {
    // Keys are "proto a:port b:port from ip:port"; pair both directions of each conversation.
    const convs = new Map<string, flowtap.IL4FlowLog>();
    for (const [key, side] of tsharkConversations(file, proto)) {
      const [, a, b, , from] = key.split(' ');
      const conv = `${a} ${b}`;
      let log = convs.get(conv);
      if (!log) {
        const split = (ep: string) => [ep.slice(0, ep.lastIndexOf(':')), Number(ep.slice(ep.lastIndexOf(':') + 1))] as const;
        const [ipA, portA] = split(a);
        const [ipB, portB] = split(b);
        // The lower port is the server: good enough for a sink test.
        const [client, server] = portA > portB ? [[ipA, portA], [ipB, portB]] as const : [[ipB, portB], [ipA, portA]] as const;
        log = {
          flow_id: firstFlowId + out.length, start_time: 1_700_000_000_000_000 + out.length * 1000, end_time: 1_700_000_000_000_000 + out.length * 1000 + 5e5,
          ip_0: client[0], ip_1: server[0], client_port: client[1], server_port: server[1],
          protocol: proto === 'tcp' ? 6 : 17, close_type: 'timeout', is_new_flow: true,
          packet_tx: 0, packet_rx: 0, byte_tx: 0, byte_rx: 0,
        };
        convs.set(conv, log);
        out.push(log);
      }
      const fromClient = from === `${log.ip_0}:${log.client_port}`;
      if (fromClient) { log.packet_tx = side.packets; log.byte_tx = side.bytes; }
      else { log.packet_rx = side.packets; log.byte_rx = side.bytes; }
    }
  }
  return out;
}

export function metricDocs(l4: flowtap.IL4FlowLog[], l7: flowtap.IL7FlowLog[]): flowtap.IDocument[] {
  const docs: flowtap.IDocument[] = [];
  for (const f of l4) {
    docs.push({
      table: 'network_map.1m', time: Math.floor(Number(f.start_time) / 60e6) * 60, ip_0: f.ip_0, ip_1: f.ip_1,
      server_port: f.server_port, protocol: f.protocol,
      flow_meter: { packet_tx: f.packet_tx, packet_rx: f.packet_rx, byte_tx: f.byte_tx, byte_rx: f.byte_rx, new_flow: 1 },
    });
    docs.push({ table: 'network.1m', time: Math.floor(Number(f.start_time) / 60e6) * 60, ip: f.ip_1, side: 'server', server_port: f.server_port, protocol: f.protocol, flow_meter: { byte_rx: f.byte_tx } });
  }
  for (const r of l7) {
    docs.push({
      table: 'application.1s', time: Math.floor(Number(r.start_time) / 1e6), ip: r.ip_1, side: 'server', server_port: r.server_port,
      protocol: 6, l7_protocol: r.l7_protocol, endpoint: r.endpoint,
      app_meter: { request: 1, response: r.response_code == null ? 0 : 1, client_error: r.response_status === 'client_error' ? 1 : 0, rrt_sum: r.response_duration ?? 0, rrt_count: 1, rrt_max: r.response_duration ?? 0 },
    });
  }
  return docs;
}

/** HTTP logs of a few corpus files, their conversations and metrics derived from both. */
export function corpusRecords(files = ['http1/zeek/methods.pcap', 'mixed/zeek/wikipedia.pcap', 'http1/zeek/post.pcap']): CorpusRecords {
  const l7: flowtap.IL7FlowLog[] = [];
  const l4: flowtap.IL4FlowLog[] = [];
  for (const rel of files) {
    l7.push(...httpLogs(corpusFile(rel)));
    l4.push(...conversationLogs(corpusFile(rel), 1 + l4.length));
  }
  return { l4, l7, metrics: metricDocs(l4, l7) };
}

/** Many synthetic L7 logs with distinct flow ids, for load. */
export function syntheticL7(n: number, firstId: number): flowtap.IL7FlowLog[] {
  const out: flowtap.IL7FlowLog[] = [];
  for (let i = 0; i < n; i++) {
    const id = firstId + i;
    out.push({
      flow_id: id, start_time: 1_700_000_000_000_000 + id * 1000, end_time: 1_700_000_000_000_000 + id * 1000 + 1500,
      ip_0: `10.0.${(id >> 8) & 255}.${id & 255}`, ip_1: '10.1.0.1', client_port: 30000 + (id % 30000), server_port: 80, protocol: 6,
      l7_protocol: 'http1', version: '1.1', request_type: 'GET', request_domain: 'example.test', request_resource: `/item/${id}`,
      endpoint: '/item', response_code: id % 10 === 0 ? 500 : 200, response_status: id % 10 === 0 ? 'server_error' : 'ok',
      response_duration: 1500, request_length: 80, response_length: 512, signal_source: 'packet',
    });
  }
  return out;
}
