// tshark's innermost TCP/UDP conversations, computed at test time, per direction:
// - a packet counts in the conversation of its innermost TCP or UDP layer (tunnels);
// - an ICMP error (an icmp layer followed by the IP header it quotes) is ICMP, not the quoted
//   flow's (test/support/tshark.ts's tsharkInnerConversations counts it in the quoted UDP flow);
// - a reassembled datagram counts once, with the frame bytes of all its fragments. A fragment
//   frame tshark leaves out of its reassembly (an overlapping or repeated fragment) still went on
//   the wire for that datagram: its bytes count there too, as the capture decoder counts them.
import { conversationKey, tsharkFields } from '../support/tshark';

export interface Side { packets: number; bytes: number }

const last = (s: string) => s.split(',').pop()!;

export function innerConversations(file: string): Map<string, Side> {
  const rows = tsharkFields(file, ['frame.number', 'frame.len', 'frame.protocols', 'ip.src', 'ipv6.src', 'ip.dst', 'ipv6.dst',
    'tcp.srcport', 'tcp.dstport', 'udp.srcport', 'udp.dstport', 'ip.fragment', 'ipv6.fragment',
    'ip.id', 'ip.flags.mf', 'ip.frag_offset', 'ipv6.fraghdr.ident']);
  const frameLen = new Map<string, number>();
  // Fragment frames by datagram (src, dst, id), and which of them tshark reassembled.
  const fragmentsOf = new Map<string, string[]>();
  const reassembledFrames = new Set<string>();
  const out = new Map<string, Side>();
  const datagramKey = new Map<string, string>(); // datagram -> conversation direction key
  for (const [num, len, protocols, ip4s, ip6s, ip4d, ip6d, tsp, tdp, usp, udp, frag4, frag6, id4, mf, off, id6] of rows) {
    frameLen.set(num, Number(len));
    const layers = protocols.split(':');
    const v6 = layers.lastIndexOf('ipv6') > layers.lastIndexOf('ip');
    const src = last(v6 ? ip6s : ip4s);
    const dst = last(v6 ? ip6d : ip4d);
    const isFragment = v6 ? layers.includes('ipv6.fraghdr') : (last(mf) === '1' || (off !== '' && last(off) !== '0'));
    const dgram = isFragment ? `${src}>${dst}#${last(v6 ? id6 : id4)}` : '';
    if (isFragment) {
      const list = fragmentsOf.get(dgram) ?? [];
      list.push(num);
      fragmentsOf.set(dgram, list);
    }
    const icmpAt = layers.findIndex((l) => l === 'icmp' || l === 'icmpv6');
    const tcpAt = layers.lastIndexOf('tcp'), udpAt = layers.lastIndexOf('udp');
    const innerAt = Math.max(tcpAt, udpAt);
    if (innerAt < 0 || icmpAt >= 0) continue; // ICMP (also inside a tunnel), or an ICMP error quoting TCP/UDP
    const tcp = tcpAt > udpAt;
    const sport = Number(last(tcp ? tsp : usp));
    const dport = Number(last(tcp ? tdp : udp));
    const frags = (frag4 || frag6).split(',').filter(Boolean);
    for (const f of frags) reassembledFrames.add(f);
    const bytes = frags.length > 0 ? frags.reduce((sum, n) => sum + (frameLen.get(n) ?? 0), 0) : Number(len);
    const key = conversationKey(tcp ? 6 : 17, src, sport, dst, dport, src, sport);
    if (dgram) datagramKey.set(dgram, key);
    const side = out.get(key) ?? { packets: 0, bytes: 0 };
    side.packets += 1;
    side.bytes += bytes;
    out.set(key, side);
  }
  for (const [dgram, frames] of fragmentsOf) {
    const key = datagramKey.get(dgram);
    if (!key) continue;
    for (const f of frames) if (!reassembledFrames.has(f)) out.get(key)!.bytes += frameLen.get(f) ?? 0;
  }
  return out;
}
