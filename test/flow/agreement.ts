// Agreement of the flow stage with tshark on one capture: the capture goes through the real
// reader and decoder into the FlowMap; tshark's side is its per-packet TCP flags and
// tcp.analysis fields, read from the same file at test time. Flows are paired with tshark's
// tcp.stream by their endpoints (in order of first packet when a 5-tuple was reused).
import { flowtap } from '../../lib/proto';
import { formatIp, PacketBatch } from '../../lib/packet-batch';
import { FrameDecoder } from '../../services/capture/decode';
import { pumpCaptureFile } from '../../services/capture/file-pump';
import { FlowMap } from '../../services/flow/flow-map';
import { FlowMapConfig } from '../../services/flow/flow-config';
import { tshark } from './tshark-packets';

const TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_RST = 0x04, TCP_ACK = 0x10;

/** What a close type says about who ended the flow. */
export type CloseClass = 'finish' | 'rst:client' | 'rst:server' | 'half:client' | 'half:server' | 'timeout';

export function closeClassOf(closeType: string): CloseClass {
  switch (closeType) {
    case 'finish': return 'finish';
    case 'tcp_server_rst': case 'server_reset': case 'server_establish_reset': return 'rst:server';
    case 'tcp_client_rst': case 'client_establish_reset': case 'tcp_fin_client_rst': return 'rst:client';
    case 'client_half_close': return 'half:client';
    case 'server_half_close': return 'half:server';
    default: return 'timeout'; // timeout, *_repeat, server_queue_lack, client_source_port_reuse
  }
}

/** One of our flows, its per-second reports summed. */
export interface OurFlow {
  flowId: number; client: string; server: string; startUs: number; closeType: string;
  retransTx: number; retransRx: number; zwinTx: number; zwinRx: number; rttUs: number;
}

/** One tshark tcp.stream. */
export interface TheirStream {
  stream: number; firstFrame: number;
  endpoints: [string, string];
  /** Sender of the first SYN, else receiver of the first SYN-ACK; '' when the packets do not say. */
  client: string;
  firstRstFrom: string;
  finFrom: Set<string>;
  retrans: Map<string, number>; zwin: Map<string, number>;
  /** tcp.analysis.initial_rtt in µs as tshark printed it (-1: not printed). */
  rttUs: number;
  /**
   * tshark's initial-rtt rule applied to its frame times: latest SYN to the first later segment with
   * ACK and no SYN (-1: no such pair). tshark computes it on that ACK but prints the field only in a
   * non-empty SEQ/ACK analysis subtree, so a stream that ends on that ACK never shows it.
   */
  ackRttUs: number;
}

export interface FlowAgreement {
  stream: TheirStream; ours: OurFlow | undefined;
  /** The close class the packets show (relative to the packets' client, or ours when they do not say). */
  expectedClose: CloseClass; ourClose: CloseClass | '';
  closeOk: boolean; retransOk: boolean; zwinOk: boolean; rttOk: boolean;
  /** Retransmissions equal tshark's exactly in both directions. */
  retransExact: boolean;
  /** Whether tshark has an initial rtt or we have a handshake rtt (else the rtt check is vacuous). */
  hasRtt: boolean;
  /**
   * Why the rtt agrees only by explanation: 'unprinted' (tshark computed it but did not print it,
   * compared with its rule on frame times), 'zero' (the handshake ACK has the SYN's timestamp: we
   * report no rtt, tshark treats 0 as unset and takes the next ACK, data sent later).
   */
  rttNote: '' | 'unprinted' | 'zero';
  /** Whether our client is the packets' client (true when the packets do not say). */
  clientOk: boolean;
}

export interface FileAgreement {
  file: string; streams: number; flows: FlowAgreement[];
  /** Our TCP flows that no tshark stream paired with. */
  unpaired: OurFlow[];
  map: FlowMap;
}

const endpoint = (ip: string, port: string | number) => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);
const last = (v: string) => { const p = v.split(','); return p[p.length - 1]; };
const pairKey = (a: string, b: string) => (a < b ? `${a}|${b}` : `${b}|${a}`);
const inc = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

/** Runs the capture through the real decoder and a FlowMap; returns its TCP flows with their reports summed. */
export async function ourTcpFlows(file: string, config: Partial<FlowMapConfig> = {}): Promise<{ flows: OurFlow[]; map: FlowMap }> {
  const byId = new Map<number, OurFlow>();
  const onFlow = (f: flowtap.IFlow) => {
    if (f.protocol !== 6) return;
    const id = Number(f.flow_id);
    let o = byId.get(id);
    if (!o) {
      o = { flowId: id, client: endpoint(formatIp(f.ip_0!), f.client_port!), server: endpoint(formatIp(f.ip_1!), f.server_port!),
        startUs: Number(f.start_time), closeType: '', retransTx: 0, retransRx: 0, zwinTx: 0, zwinRx: 0, rttUs: 0 };
      byId.set(id, o);
    }
    o.retransTx += Number(f.retrans_tx ?? 0); o.retransRx += Number(f.retrans_rx ?? 0);
    o.zwinTx += Number(f.zero_win_tx ?? 0); o.zwinRx += Number(f.zero_win_rx ?? 0);
    if (Number(f.rtt ?? 0) > 0) o.rttUs = Number(f.rtt);
    if (f.is_closed) o.closeType = f.close_type ?? '';
  };
  const map = new FlowMap({ onFlow }, undefined, config);
  await pumpCaptureFile(file, new FrameDecoder(), new PacketBatch(256), (b) => map.processBatch(b));
  map.flush();
  return { flows: [...byId.values()], map };
}

/** tshark's streams of a capture (empty when it has no TCP). */
export function theirTcpStreams(file: string): TheirStream[] {
  const out = tshark(['-r', file, '-Y', 'tcp && !icmp && !icmpv6', '-T', 'fields', '-e', 'frame.number', '-e', 'frame.time_epoch', '-e', 'tcp.stream',
    '-e', 'ip.src', '-e', 'ipv6.src', '-e', 'tcp.srcport', '-e', 'ip.dst', '-e', 'ipv6.dst', '-e', 'tcp.dstport',
    '-e', 'tcp.flags', '-e', 'tcp.analysis.retransmission', '-e', 'tcp.analysis.fast_retransmission',
    '-e', 'tcp.analysis.zero_window', '-e', 'tcp.analysis.initial_rtt']);
  const streams = new Map<number, TheirStream>();
  const synUs = new Map<number, number>();
  for (const line of out.split('\n')) {
    if (!line) continue;
    const [frame, time, stream, s4, s6, sp, d4, d6, dp, flagsText, re, fre, zw, irtt] = line.split('\t');
    const id = parseInt(last(stream), 10);
    const src = endpoint(last(s6 || s4), last(sp));
    const dst = endpoint(last(d6 || d4), last(dp));
    let st = streams.get(id);
    if (!st) {
      st = { stream: id, firstFrame: parseInt(frame, 10), endpoints: [src, dst], client: '', firstRstFrom: '',
        finFrom: new Set(), retrans: new Map(), zwin: new Map(), rttUs: -1, ackRttUs: -1 };
      streams.set(id, st);
      synUs.set(id, -1);
    }
    const flags = parseInt(last(flagsText), 16);
    const us = Math.round(parseFloat(time) * 1e6);
    if ((flags & (TCP_SYN | TCP_ACK)) === TCP_SYN) synUs.set(id, us);
    else if ((flags & (TCP_SYN | TCP_ACK)) === TCP_ACK && st.ackRttUs < 0 && synUs.get(id)! >= 0) st.ackRttUs = us - synUs.get(id)!;
    if (!st.client && (flags & (TCP_SYN | TCP_ACK)) === TCP_SYN) st.client = src;
    if (!st.client && (flags & (TCP_SYN | TCP_ACK)) === (TCP_SYN | TCP_ACK)) st.client = dst;
    if ((flags & TCP_RST) && !st.firstRstFrom) st.firstRstFrom = src;
    if (flags & TCP_FIN) st.finFrom.add(src);
    if (re || fre) inc(st.retrans, src);
    if (zw) inc(st.zwin, src);
    if (irtt && st.rttUs < 0) st.rttUs = Math.round(parseFloat(irtt) * 1e6);
  }
  return [...streams.values()].sort((a, b) => a.firstFrame - b.firstFrame);
}

/** The close class the packets of a stream show, relative to `client`. */
export function expectedCloseClass(st: TheirStream, client: string): CloseClass {
  if (st.firstRstFrom) return st.firstRstFrom === client ? 'rst:client' : 'rst:server';
  const server = st.endpoints[0] === client ? st.endpoints[1] : st.endpoints[0];
  if (st.finFrom.has(client) && st.finFrom.has(server)) return 'finish';
  if (st.finFrom.has(client)) return 'half:client';
  if (st.finFrom.has(server)) return 'half:server';
  return 'timeout';
}

export async function fileAgreement(file: string, config: Partial<FlowMapConfig> = {}): Promise<FileAgreement> {
  const streams = theirTcpStreams(file);
  const { flows, map } = await ourTcpFlows(file, config);
  // Pair in order of first packet within each endpoint pair.
  const oursByPair = new Map<string, OurFlow[]>();
  for (const f of flows.sort((a, b) => a.startUs - b.startUs || a.flowId - b.flowId)) {
    const k = pairKey(f.client, f.server);
    const list = oursByPair.get(k) ?? [];
    list.push(f); oursByPair.set(k, list);
  }
  const result: FlowAgreement[] = [];
  for (const st of streams) {
    const ours = oursByPair.get(pairKey(st.endpoints[0], st.endpoints[1]))?.shift();
    const client = st.client || ours?.client || st.endpoints[0];
    const server = st.endpoints[0] === client ? st.endpoints[1] : st.endpoints[0];
    const expectedClose = expectedCloseClass(st, client);
    if (!ours) {
      result.push({ stream: st, ours, expectedClose, ourClose: '', closeOk: false, retransOk: false, zwinOk: false,
        rttOk: false, retransExact: false, hasRtt: st.rttUs >= 0, rttNote: '', clientOk: false });
      continue;
    }
    // Per direction, ours seen from the packets' client.
    const flip = ours.client !== client;
    const [oRc, oRs, oZc, oZs] = flip ? [ours.retransRx, ours.retransTx, ours.zwinRx, ours.zwinTx]
      : [ours.retransTx, ours.retransRx, ours.zwinTx, ours.zwinRx];
    const tRc = st.retrans.get(client) ?? 0, tRs = st.retrans.get(server) ?? 0;
    const ourClose = closeClassOf(ours.closeType);
    // Our close class is relative to our client: turn it round when our client is not the packets' one.
    const ourCloseAsTheirs: CloseClass = !flip ? ourClose
      : ourClose.endsWith(':client') ? ourClose.replace(':client', ':server') as CloseClass
        : ourClose.endsWith(':server') ? ourClose.replace(':server', ':client') as CloseClass : ourClose;
    result.push({
      stream: st, ours, expectedClose, ourClose,
      closeOk: ourCloseAsTheirs === expectedClose,
      retransOk: Math.abs(oRc - tRc) <= 1 && Math.abs(oRs - tRs) <= 1,
      retransExact: oRc === tRc && oRs === tRs,
      zwinOk: oZc === (st.zwin.get(client) ?? 0) && oZs === (st.zwin.get(server) ?? 0),
      ...rttAgreement(st, ours.rttUs),
      hasRtt: st.rttUs >= 0 || ours.rttUs > 0,
      clientOk: !st.client || ours.client === st.client,
    });
  }
  const unpaired = [...oursByPair.values()].flat();
  return { file, streams: streams.length, flows: result, unpaired, map };
}

/** Handshake rtt within 1 ms of tshark's, or equal to what its rule gives where it did not print it. */
function rttAgreement(st: TheirStream, oursUs: number): { rttOk: boolean; rttNote: FlowAgreement['rttNote'] } {
  const near = (v: number) => oursUs > 0 && Math.abs(oursUs - v) <= 1000;
  if (st.rttUs >= 0) {
    if (near(st.rttUs)) return { rttOk: true, rttNote: '' };
    if (st.ackRttUs === 0 && oursUs === 0) return { rttOk: true, rttNote: 'zero' };
    return { rttOk: false, rttNote: '' };
  }
  if (st.ackRttUs > 0) return { rttOk: near(st.ackRttUs), rttNote: 'unprinted' };
  return { rttOk: oursUs === 0, rttNote: '' };
}

export function describe(a: FlowAgreement): string {
  const st = a.stream;
  const o = a.ours;
  const dir = (m: Map<string, number>) => [...m].map(([k, v]) => `${k}:${v}`).join(' ');
  return `stream ${st.stream} ${st.endpoints.join(' <-> ')}: client ${st.client || '?'} / ours ${o?.client ?? 'none'}; `
    + `close ${a.expectedClose} / ours ${o?.closeType ?? '-'}; retrans ${dir(st.retrans)} / ours tx ${o?.retransTx} rx ${o?.retransRx}; `
    + `zwin ${dir(st.zwin)} / ours tx ${o?.zwinTx} rx ${o?.zwinRx}; rtt ${st.rttUs} / ours ${o?.rttUs}`;
}
