// What tshark says each frame of a capture holds, computed at test time: the oracle the capture
// decoder is compared with. For tunnels the innermost packet is taken; IP headers quoted inside
// ICMP errors are not packets and are skipped.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

export const CORPUS = path.resolve(__dirname, '../../../../shared/corpus');

const FIELDS = [
  'frame.number', 'frame.time_epoch', 'frame.len', 'frame.protocols',
  'ip.src', 'ip.dst', 'ip.proto', 'ipv6.src', 'ipv6.dst',
  'tcp.srcport', 'tcp.dstport', 'tcp.flags', 'tcp.seq', 'tcp.ack', 'tcp.len', 'tcp.window_size_value',
  'udp.srcport', 'udp.dstport', 'udp.length',
  'icmp.type', 'icmp.code', 'icmpv6.type', 'icmpv6.code',
  'vlan.id', 'ip.flags.mf', 'ip.frag_offset', 'ipv6.fraghdr.more', 'ipv6.fraghdr.offset',
  'vxlan.vni', 'geneve.vni', 'gre.key', 'erspan.spanid', 'mpls.label', 'tcp.options.wscale.shift', 'tcp.payload',
] as const;
type Field = typeof FIELDS[number];

/** One frame as tshark decodes it; `ip` undefined when the frame holds no IP packet. */
export interface TsharkFrame {
  number: number;
  timestampUs: number;
  frameLen: number;
  protocols: string[];
  ip?: {
    version: 4 | 6;
    src: string;
    dst: string;
    /** Transport layer name after the innermost IP (tcp, udp, icmp, icmpv6, ...), or ''. */
    transport: string;
    protocol?: number;
    srcPort?: number;
    dstPort?: number;
    tcpFlags?: number;
    tcpSeq?: number;
    tcpAck?: number;
    tcpWindow?: number;
    tcpWscale?: number;
    l4PayloadLen?: number;
    icmpType?: number;
    icmpCode?: number;
    /** Hex of the TCP payload bytes tshark shows (TCP only). */
    tcpPayloadHex?: string;
    /** The frame is an IP fragment. */
    fragment: boolean;
    /** A fragment whose datagram is not complete at this frame: tshark shows no transport. */
    fragmentPending: boolean;
    /**
     * The innermost IP carries a tunnel whose payload is not IP (e.g. LLDP in GRE/TEB): the
     * decoder reports only IP packets found inside tunnels, so it gives no row.
     */
    tunnelledNonIp: boolean;
    /** Number of tunnel layers around it (IP layers before the innermost). */
    ipLayers: number;
  };
  outerVlan?: number;
  tunnel: string;
  tunnelId?: number;
}

export function tsharkFrames(file: string, extraArgs: string[] = []): TsharkFrame[] {
  const args = ['-r', file, '-o', 'tcp.relative_sequence_numbers:FALSE', ...extraArgs, '-T', 'fields',
    '-E', 'separator=|', '-E', 'aggregator=;', '-E', 'occurrence=a'];
  for (const f of FIELDS) args.push('-e', f);
  const out = execFileSync('tshark', args, { maxBuffer: 512 * 1024 * 1024, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  const lines = out.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map(parseLine);
}

function parseLine(line: string): TsharkFrame {
  const cols = line.split('|');
  const all = (f: Field): string[] => {
    const v = cols[FIELDS.indexOf(f)];
    return v === undefined || v === '' ? [] : v.split(';');
  };
  const num = (f: Field, k: number): number | undefined => {
    const v = all(f)[k];
    return v === undefined || v === '' ? undefined : Number(v);
  };
  const protocols = all('frame.protocols')[0].split(':');
  const frame: TsharkFrame = {
    number: Number(all('frame.number')[0]),
    timestampUs: epochToMicros(all('frame.time_epoch')[0]),
    frameLen: Number(all('frame.len')[0]),
    protocols,
    tunnel: '',
  };
  const vlans = all('vlan.id');
  if (vlans.length > 0) frame.outerVlan = Number(vlans[0]);
  // The innermost IP layer that is a packet, not a header quoted by an ICMP error.
  let ipAt = -1;
  for (let k = 0; k < protocols.length; k++) {
    const p = protocols[k];
    if (p === 'icmp' || p === 'icmpv6') break;
    if (p === 'ip' || p === 'ipv6') ipAt = k;
  }
  const tunnels = ['vxlan', 'geneve', 'erspan', 'gre', 'mpls'];
  for (const t of tunnels) if (protocols.slice(0, Math.max(ipAt, 0)).includes(t)) { frame.tunnel = t; break; }
  if (frame.tunnel === 'vxlan') frame.tunnelId = num('vxlan.vni', 0);
  if (frame.tunnel === 'geneve') frame.tunnelId = num('geneve.vni', 0);
  // GRE and ERSPAN: the key when there is one; ERSPAN without a key: its session (span) id.
  if (frame.tunnel === 'gre') frame.tunnelId = num('gre.key', 0) ?? 0;
  if (frame.tunnel === 'erspan') frame.tunnelId = num('gre.key', 0) ?? num('erspan.spanid', 0) ?? 0;
  if (frame.tunnel === 'mpls') frame.tunnelId = num('mpls.label', 0);
  if (ipAt < 0) return frame;
  const before = (name: string, at: number) => protocols.slice(0, at).filter((p) => p === name).length;
  const version = protocols[ipAt] === 'ip' ? 4 : 6;
  const vk = before(protocols[ipAt], ipAt);
  if (frame.tunnel === '' && ipAt > 0 && before('ip', ipAt) + before('ipv6', ipAt) > 0) frame.tunnel = 'ipip';
  let t = ipAt + 1;
  while (t < protocols.length && protocols[t].startsWith('ipv6.')) t++;
  const transport = protocols[t] ?? '';
  const ip: NonNullable<TsharkFrame['ip']> = {
    version,
    src: all(version === 4 ? 'ip.src' : 'ipv6.src')[vk],
    dst: all(version === 4 ? 'ip.dst' : 'ipv6.dst')[vk],
    transport,
    fragment: false,
    fragmentPending: false,
    tunnelledNonIp: protocols.slice(ipAt + 1).some((p) => ['gre', 'vxlan', 'geneve', 'erspan'].includes(p))
      && protocols.slice(ipAt + 1).includes('eth'),
    ipLayers: before('ip', ipAt) + before('ipv6', ipAt) + 1,
  };
  const tk = before(transport, t);
  if (transport === 'tcp') {
    ip.protocol = 6;
    ip.srcPort = num('tcp.srcport', tk);
    ip.dstPort = num('tcp.dstport', tk);
    ip.tcpFlags = num('tcp.flags', tk);
    ip.tcpSeq = num('tcp.seq', tk);
    ip.tcpAck = num('tcp.ack', tk);
    ip.tcpWindow = num('tcp.window_size_value', tk);
    ip.l4PayloadLen = num('tcp.len', tk);
    ip.tcpWscale = num('tcp.options.wscale.shift', tk);
    ip.tcpPayloadHex = all('tcp.payload')[tk];
  } else if (transport === 'udp') {
    ip.protocol = 17;
    ip.srcPort = num('udp.srcport', tk);
    ip.dstPort = num('udp.dstport', tk);
    const ulen = num('udp.length', tk);
    if (ulen !== undefined) ip.l4PayloadLen = ulen - 8;
  } else if (transport === 'icmp' || transport === 'icmpv6') {
    ip.protocol = transport === 'icmp' ? 1 : 58;
    ip.icmpType = num(transport === 'icmp' ? 'icmp.type' : 'icmpv6.type', tk);
    ip.icmpCode = num(transport === 'icmp' ? 'icmp.code' : 'icmpv6.code', tk);
  } else if (version === 4) {
    ip.protocol = num('ip.proto', vk);
  }
  if (version === 4) {
    ip.fragment = num('ip.flags.mf', vk) === 1 || (num('ip.frag_offset', vk) ?? 0) > 0;
  } else {
    const more = all('ipv6.fraghdr.more')[0];
    ip.fragment = protocols.includes('ipv6.fraghdr') &&
      (more === '1' || more === 'True' || (num('ipv6.fraghdr.offset', 0) ?? 0) > 0);
  }
  ip.fragmentPending = ip.fragment && (transport === 'data' || transport === '');
  frame.ip = ip;
  return frame;
}

/** "1234567890.123456789" to µs, floored, exactly (no float rounding). */
export function epochToMicros(s: string): number {
  const [sec, frac = ''] = s.split('.');
  return Number(sec) * 1e6 + Number((frac + '000000').slice(0, 6));
}

/** tshark's address text to ours (formatIp prints v4 dotted and v6 in RFC 5952 form, as tshark does). */
export function normaliseIp(s: string): string {
  return s.toLowerCase();
}
