// The flow map against tshark on real captures: per-conversation packet and frame-byte totals
// must equal tshark's conversation tables exactly, and TCP analysis counters must match
// tshark's tcp.analysis flags.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { flowtap } from '../../lib/proto';
import { formatIp } from '../../lib/packet-batch';
import { FlowMap } from '../../services/flow/flow-map';
import { CORPUS, batchesFromCapture, conversations, tshark } from './tshark-packets';

const listCaptures = (dir: string) => fs.readdirSync(path.join(CORPUS, dir), { recursive: true, encoding: 'utf8' })
  .filter((f) => /\.(pcap|pcapng)$/.test(f)).map((f) => path.join(dir, f)).sort();

export function runFlowMap(file: string): { flows: flowtap.IFlow[]; map: FlowMap } {
  const flows: flowtap.IFlow[] = [];
  const map = new FlowMap({ onFlow: (f) => flows.push(f) });
  for (const b of batchesFromCapture(file).batches) map.processBatch(b);
  map.flush();
  return { flows, map };
}

interface Totals { ptx: number; prx: number; btx: number; brx: number; a: string; pa: number; b: string; pb: number; flows: Set<number> }

/** Sums the reports per 5-tuple (tshark's conversations do not split on port reuse). */
function totalsByTuple(flows: flowtap.IFlow[], protocol: number): Map<string, Totals> {
  const m = new Map<string, Totals>();
  for (const f of flows) {
    if (f.protocol !== protocol) continue;
    const a = formatIp(f.ip_0!), b = formatIp(f.ip_1!);
    const key = `${a}:${f.client_port}|${b}:${f.server_port}`;
    let t = m.get(key);
    if (!t) { t = { ptx: 0, prx: 0, btx: 0, brx: 0, a, pa: f.client_port!, b, pb: f.server_port!, flows: new Set() }; m.set(key, t); }
    t.ptx += Number(f.packet_tx); t.prx += Number(f.packet_rx); t.btx += Number(f.byte_tx); t.brx += Number(f.byte_rx);
    t.flows.add(Number(f.flow_id));
  }
  return m;
}

// http1 and dns in full, and a sample of IPv6, VLAN/QinQ, half-close and mixed captures. Not
// compared: tunnels (tshark's conversations are the outer UDP ones, the flow map keys on the
// inner packet) and IP fragments (how fragments become packets is the capture decoder's business).
const files = [...listCaptures('http1'), ...listCaptures('dns'), ...listCaptures('ipv6'), ...listCaptures('vlan'),
  'tls/zeek/tls13_wolfssl.pcap', 'mysql/zeek/auth.pcap', 'mixed/tcpreplay/test.pcap', 'mixed/zeek/wikipedia.pcap'];
for (const rel of files) {
  test(`conversation totals equal tshark conv: ${rel}`, (t) => {
    const file = path.join(CORPUS, rel);
    const { flows, map } = runFlowMap(file);
    let checked = 0;
    for (const [proto, num] of [['tcp', 6], ['udp', 17]] as const) {
      const convs = conversations(file, proto);
      const ours = totalsByTuple(flows, num);
      t.is(ours.size, convs.length, `${proto} conversation count`);
      for (const c of convs) {
        // Our client may be tshark's A or B.
        const fwd = ours.get(`${c.a}:${c.portA}|${c.b}:${c.portB}`);
        const rev = ours.get(`${c.b}:${c.portB}|${c.a}:${c.portA}`);
        const o = fwd ?? rev;
        if (!o) { t.fail(`no flow for ${c.a}:${c.portA} <-> ${c.b}:${c.portB}`); continue; }
        const [pAB, pBA, bAB, bBA] = fwd ? [o.ptx, o.prx, o.btx, o.brx] : [o.prx, o.ptx, o.brx, o.btx];
        t.deepEqual([pAB, pBA, bAB, bBA], [c.framesAtoB, c.framesBtoA, c.bytesAtoB, c.bytesBtoA], `${c.a}:${c.portA} <-> ${c.b}:${c.portB}`);
        if (c.convBytesAtoB !== undefined) t.is(bAB, c.convBytesAtoB);
        if (c.convBytesBtoA !== undefined) t.is(bBA, c.convBytesBtoA);
        checked++;
      }
    }
    t.true(checked > 0);
    // TCP flows split like tshark's tcp.stream (a new SYN after FIN/RST starts a new one).
    const streams = new Set(tshark(['-r', file, '-Y', 'tcp', '-T', 'fields', '-e', 'tcp.stream']).split('\n').filter(Boolean));
    t.is(new Set(flows.filter((f) => f.protocol === 6).map((f) => f.flow_id)).size, streams.size, 'tcp flows = tcp.stream count');
    t.is(map.flowsOpen, 0);
    t.is(flows.filter((f) => f.is_closed).length, new Set(flows.map((f) => f.flow_id)).size, 'one close report per flow');
  });
}

// Files where tshark's TCP analysis has something to compare (retransmissions, zero windows,
// handshakes). Not in the list: captures whose handshake timestamps are all equal or whose first
// RST precedes the SYN-ACK, where tshark still reports an initial_rtt and we report none.
const analysisFiles = ['http1/arkime/http-content-gzip.pcap', 'http1/zeek/post.pcap', 'http1/zeek/methods.pcap',
  'mixed/tcpreplay/test.pcap', 'mysql/zeek/auth.pcap', 'tcp-anomalies/zeek/retransmit-fast009.pcap',
  'tcp-anomalies/deepflow/syn-retrans.pcap', 'tls/ndpi/443-firefox.pcap'];
for (const rel of analysisFiles) {
  test(`retransmissions, zero windows and initial rtt equal tshark tcp.analysis: ${rel}`, (t) => {
    const file = path.join(CORPUS, rel);
    const { flows } = runFlowMap(file);
    const ours = new Map<string, { retrans: number; zwin: number }>();
    const add = (key: string, retrans: number, zwin: number) => {
      const o = ours.get(key) ?? { retrans: 0, zwin: 0 };
      o.retrans += retrans; o.zwin += zwin; ours.set(key, o);
    };
    for (const f of flows) {
      if (f.protocol !== 6) continue;
      const c = `${formatIp(f.ip_0!)}:${f.client_port}`, s = `${formatIp(f.ip_1!)}:${f.server_port}`;
      add(`${c}>${s}`, Number(f.retrans_tx), Number(f.zero_win_tx));
      add(`${s}>${c}`, Number(f.retrans_rx), Number(f.zero_win_rx));
    }
    const theirs = new Map<string, { retrans: number; zwin: number }>();
    const rtts: number[] = [];
    const rttStreams = new Set<string>();
    const out = tshark(['-r', file, '-Y', 'tcp', '-T', 'fields', '-e', 'ip.src', '-e', 'ipv6.src', '-e', 'tcp.srcport',
      '-e', 'ip.dst', '-e', 'ipv6.dst', '-e', 'tcp.dstport', '-e', 'tcp.analysis.retransmission',
      '-e', 'tcp.analysis.fast_retransmission', '-e', 'tcp.analysis.zero_window', '-e', 'tcp.analysis.initial_rtt', '-e', 'tcp.stream']);
    for (const line of out.split('\n')) {
      if (!line) continue;
      const [s4, s6, sp, d4, d6, dp, re, fre, zw, irtt, stream] = line.split('\t');
      const key = `${s4 || s6}:${sp}>${d4 || d6}:${dp}`;
      const o = theirs.get(key) ?? { retrans: 0, zwin: 0 };
      if (re || fre) o.retrans++;
      if (zw) o.zwin++;
      theirs.set(key, o);
      if (irtt && !rttStreams.has(stream)) { rttStreams.add(stream); rtts.push(Math.round(parseFloat(irtt) * 1e6)); }
    }
    let events = 0;
    for (const [key, o] of theirs) {
      t.deepEqual(ours.get(key) ?? { retrans: 0, zwin: 0 }, o, key);
      events += o.retrans + o.zwin;
    }
    const ourRtts = flows.filter((f) => Number(f.rtt) > 0).map((f) => Number(f.rtt));
    t.deepEqual(ourRtts.sort((a, b) => a - b), rtts.sort((a, b) => a - b), 'initial rtt per handshake');
    t.true(events + rtts.length > 0, 'the file has something to compare');
  });
}
