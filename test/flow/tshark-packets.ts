// Test input built from tshark's own dissection of a capture: one PacketBatch row per IP
// packet, filled from tshark's per-packet fields, so the flow stage is tested independently of
// our capture decoder. Also parsers for tshark's conversation tables.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { PacketBatch } from '../../lib/packet-batch';

export const CORPUS = path.resolve(__dirname, '../../../../shared/corpus');

const FIELDS = [
  'frame.time_epoch', 'frame.len', 'ip.src', 'ip.dst', 'ipv6.src', 'ipv6.dst', 'ip.proto', 'ip.len',
  'ipv6.plen', 'tcp.srcport', 'tcp.dstport', 'udp.srcport', 'udp.dstport', 'tcp.flags', 'tcp.seq_raw',
  'tcp.ack_raw', 'tcp.len', 'udp.length', 'tcp.window_size_value', 'vlan.id', 'tcp.payload', 'udp.payload',
  'frame.number',
];

export function tshark(args: string[]): string {
  return execFileSync('tshark', ['-n', ...args], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
}

/** Parses IPv6 text into 16 bytes at dst[off]. */
export function parseIpv6(text: string, dst: Uint8Array, off: number): void {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const words = (s: string | undefined) => (s ? s.split(':').filter((w) => w !== '').map((w) => parseInt(w, 16)) : []);
  const h = words(head);
  const t = tail === undefined ? [] : words(tail);
  const all = tail === undefined ? h : [...h, ...new Array(8 - h.length - t.length).fill(0), ...t];
  for (let k = 0; k < 8; k++) { dst[off + 2 * k] = all[k] >> 8; dst[off + 2 * k + 1] = all[k] & 0xff; }
}

const last = (v: string) => { const parts = v.split(','); return parts[parts.length - 1]; };
const first = (v: string) => v.split(',')[0];

export interface CaptureRows {
  batches: PacketBatch[];
  /** tshark frame number of each row, in order. */
  frameNumbers: number[];
}

/** Reads a capture with tshark and returns its IP packets as PacketBatches of `batchSize` rows. */
export function batchesFromCapture(file: string, batchSize = 64, displayFilter = 'ip || ipv6'): CaptureRows {
  const args = ['-r', file, '-Y', displayFilter, '-T', 'fields', '-E', 'separator=\t'];
  for (const f of FIELDS) args.push('-e', f);
  const text = tshark(args);
  const batches: PacketBatch[] = [];
  const frameNumbers: number[] = [];
  let b = new PacketBatch(batchSize);
  const addr4 = new Uint8Array(4);
  for (const line of text.split('\n')) {
    if (!line) continue;
    const c = line.split('\t');
    const [time, frameLen, ipSrc, ipDst, ip6Src, ip6Dst, ipProto, ipLen, ip6Plen, tSport, tDport, uSport, uDport,
      tFlags, tSeq, tAck, tLen, uLen, tWin, vlan, tPayload, uPayload, frameNo] = c;
    // An ICMP error quotes another packet's headers: count it as ICMP, not as the quoted flow.
    const icmpError = ipProto !== '' && (first(ipProto) === '1' || first(ipProto) === '58') && ipProto.includes(',');
    if (b.full) { batches.push(b); b = new PacketBatch(batchSize); }
    const i = b.begin();
    b.timestampUs[i] = Math.round(parseFloat(time) * 1e6);
    b.frameLen[i] = parseInt(frameLen, 10);
    if (ipSrc) {
      const useInner = !icmpError;
      const s = useInner ? last(ipSrc) : first(ipSrc);
      const d = useInner ? last(ipDst) : first(ipDst);
      s.split('.').forEach((x, k) => { addr4[k] = parseInt(x, 10); });
      PacketBatch.setIpv4(b.ipSrc, i, addr4, 0);
      d.split('.').forEach((x, k) => { addr4[k] = parseInt(x, 10); });
      PacketBatch.setIpv4(b.ipDst, i, addr4, 0);
      b.ipVersion[i] = 4;
      b.l3Len[i] = parseInt(useInner ? last(ipLen) : first(ipLen), 10);
    } else {
      parseIpv6(last(ip6Src), b.ipSrc, i * 16);
      parseIpv6(last(ip6Dst), b.ipDst, i * 16);
      b.ipVersion[i] = 6;
      b.l3Len[i] = parseInt(last(ip6Plen), 10) + 40;
    }
    if (tSport && !icmpError) {
      b.protocol[i] = 6;
      b.portSrc[i] = parseInt(last(tSport), 10);
      b.portDst[i] = parseInt(last(tDport), 10);
      b.tcpFlags[i] = parseInt(last(tFlags), 16);
      b.tcpSeq[i] = Number(last(tSeq)) >>> 0;
      b.tcpAck[i] = Number(last(tAck)) >>> 0;
      b.tcpWindow[i] = parseInt(last(tWin), 10);
      b.l4PayloadLen[i] = parseInt(last(tLen), 10);
      if (tPayload) { const p = Buffer.from(last(tPayload), 'hex'); b.setPayload(i, p, 0, p.length); }
    } else if (uSport && !icmpError) {
      b.protocol[i] = 17;
      b.portSrc[i] = parseInt(last(uSport), 10);
      b.portDst[i] = parseInt(last(uDport), 10);
      b.l4PayloadLen[i] = Math.max(0, parseInt(last(uLen), 10) - 8);
      if (uPayload) { const p = Buffer.from(last(uPayload), 'hex'); b.setPayload(i, p, 0, p.length); }
    } else {
      b.protocol[i] = parseInt(first(ipProto || '0'), 10) || (ip6Src ? 58 : 0);
    }
    b.vlan[i] = vlan ? parseInt(first(vlan), 10) : 0;
    b.commit();
    frameNumbers.push(parseInt(frameNo, 10));
  }
  if (b.count > 0) batches.push(b);
  return { batches, frameNumbers };
}

export interface Conversation {
  a: string; portA: number; b: string; portB: number;
  framesAtoB: number; framesBtoA: number;
  /** Exact byte totals (from tshark io,stat sums over frame.len, as conv's columns round to kB). */
  bytesAtoB: number; bytesBtoA: number;
  /** The byte columns as conv printed them, when printed in exact bytes (else undefined). */
  convBytesAtoB?: number; convBytesBtoA?: number;
}

const splitHostPort = (s: string): [string, number] => {
  const k = s.lastIndexOf(':');
  return [s.slice(0, k), parseInt(s.slice(k + 1), 10)];
};

/** tshark -z conv,tcp|udp, with exact byte totals per direction from -z io,stat. */
export function conversations(file: string, proto: 'tcp' | 'udp'): Conversation[] {
  const text = tshark(['-r', file, '-q', '-z', `conv,${proto}`]);
  const convs: Conversation[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+(\d+) (bytes|kB|MB)\s+(\d+)\s+(\d+) (bytes|kB|MB)/.exec(line);
    if (!m) continue;
    const [a, portA] = splitHostPort(m[1]);
    const [bb, portB] = splitHostPort(m[2]);
    // Columns: "<-" is B to A, "->" is A to B.
    convs.push({
      a, portA, b: bb, portB,
      framesBtoA: parseInt(m[3], 10), framesAtoB: parseInt(m[6], 10),
      convBytesBtoA: m[5] === 'bytes' ? parseInt(m[4], 10) : undefined,
      convBytesAtoB: m[8] === 'bytes' ? parseInt(m[7], 10) : undefined,
      bytesAtoB: 0, bytesBtoA: 0,
    });
  }
  if (convs.length === 0) return convs;
  const ipField = (ip: string) => (ip.includes(':') ? 'ipv6' : 'ip');
  const dirFilter = (src: string, sp: number, dst: string, dp: number) =>
    `SUM(frame.len)frame.len && ${ipField(src)}.src==${src} && ${proto}.srcport==${sp} && ${ipField(dst)}.dst==${dst} && ${proto}.dstport==${dp}`
    + (proto === 'udp' ? ' && !icmp && !icmpv6' : '');
  const cols: string[] = [];
  for (const c of convs) cols.push(dirFilter(c.a, c.portA, c.b, c.portB), dirFilter(c.b, c.portB, c.a, c.portA));
  const io = tshark(['-r', file, '-q', '-z', `io,stat,0,${cols.join(',')}`]);
  const row = io.split('\n').find((l) => /^\|\s*[\d.]+\s*<>\s*[\d.]+\s*\|/.test(l));
  if (!row) throw new Error(`no io,stat row for ${file}`);
  const values = row.split('|').slice(2).map((s) => s.trim()).filter((s) => s !== '').map(Number);
  convs.forEach((c, k) => { c.bytesAtoB = values[2 * k]; c.bytesBtoA = values[2 * k + 1]; });
  return convs;
}
