// Compares the decoder's rows with tshark's frames and lists every difference.
import { TsharkFrame } from './tshark-oracle';
import { DecodedFile, DecodedRow } from './decode-file';

const TUNNEL_NAMES: Record<number, string> = { 1: 'vxlan', 2: 'gre', 3: 'erspan', 4: 'geneve', 5: 'ipip', 6: 'gre', 7: 'mpls' };

export function compareWithTshark(expected: TsharkFrame[], got: DecodedFile): string[] {
  const diffs: string[] = [];
  if (got.frames !== expected.length) diffs.push(`frames: read ${got.frames}, tshark ${expected.length}`);
  for (const t of expected) {
    const row = got.rows.get(t.number);
    const where = `frame ${t.number} (${t.protocols.join(':')})`;
    if (!t.ip || t.ip.fragmentPending || t.ip.tunnelledNonIp) {
      if (row) diffs.push(`${where}: decoded a row, tshark has ${t.ip ? 'a pending fragment or non-IP in a tunnel' : 'no IP packet'}`);
      continue;
    }
    if (!row) { diffs.push(`${where}: no row`); continue; }
    diffs.push(...compareRow(t, row).map((d) => `${where}: ${d}`));
  }
  return diffs;
}

function compareRow(t: TsharkFrame, r: DecodedRow): string[] {
  const d: string[] = [];
  const ip = t.ip!;
  const eq = (name: string, want: unknown, have: unknown) => {
    if (want !== undefined && want !== have) d.push(`${name} ${String(have)} != tshark ${String(want)}`);
  };
  eq('timestamp', t.timestampUs, r.timestampUs);
  // A reassembled datagram's row covers all of its frames.
  if (ip.fragment) { if (r.frameLen < t.frameLen) d.push(`frame_len ${r.frameLen} < tshark ${t.frameLen}`); }
  else eq('frame_len', t.frameLen, r.frameLen);
  eq('ip_version', ip.version, r.ipVersion);
  eq('src', ip.src, r.src);
  eq('dst', ip.dst, r.dst);
  eq('protocol', ip.protocol, r.protocol);
  if (ip.transport === 'tcp' || ip.transport === 'udp') {
    eq('src_port', ip.srcPort, r.srcPort);
    eq('dst_port', ip.dstPort, r.dstPort);
  }
  eq('l4_payload_len', ip.l4PayloadLen, r.l4PayloadLen);
  if (ip.transport === 'tcp') {
    eq('tcp_flags', ip.tcpFlags !== undefined ? ip.tcpFlags & 0xff : undefined, r.tcpFlags);
    eq('tcp_seq', ip.tcpSeq, r.tcpSeq);
    eq('tcp_ack', ip.tcpAck, r.tcpAck);
    eq('tcp_window', ip.tcpWindow, r.tcpWindow);
    if (r.tcpFlags & 0x02) eq('tcp_wscale', ip.tcpWscale ?? 255, r.tcpWscale);
    if (ip.tcpPayloadHex !== undefined) {
      const want = ip.tcpPayloadHex.replace(/:/g, '').slice(0, r.payload.length * 2);
      const have = r.payload.toString('hex');
      if (want !== have) d.push(`payload ${have.slice(0, 32)}... != tshark ${want.slice(0, 32)}...`);
      if (r.payload.length === 0 && ip.tcpPayloadHex.length > 0) d.push('payload empty, tshark has bytes');
    }
  }
  if (ip.icmpType !== undefined) eq('icmp_type_code', (ip.icmpType << 8) | (ip.icmpCode ?? 0), r.icmpTypeCode);
  eq('vlan', t.outerVlan ?? 0, r.vlan);
  eq('tunnel', t.tunnel, TUNNEL_NAMES[r.tunnelType] ?? '');
  eq('tunnel_id', t.tunnelId, r.tunnelId);
  return d;
}
