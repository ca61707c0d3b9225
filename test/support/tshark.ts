// tshark as the oracle: what it reads in a capture file, computed at test time.
import { execFileSync } from 'node:child_process';
import path from 'node:path';

export const CORPUS = path.resolve(__dirname, '..', '..', '..', '..', 'shared', 'corpus');

export function corpusFile(rel: string): string {
  return path.join(CORPUS, rel);
}

/** Rows of the requested fields, one row per packet that matches `filter`. */
export function tsharkFields(file: string, fields: string[], opts: { filter?: string; decodeAs?: string[]; prefs?: string[] } = {}): string[][] {
  const args = ['-r', file, '-n', '-T', 'fields', '-E', 'separator=\t', '-E', 'occurrence=a', '-E', 'aggregator=,'];
  for (const f of fields) args.push('-e', f);
  if (opts.filter) args.push('-Y', opts.filter);
  for (const d of opts.decodeAs ?? []) args.push('-d', d);
  for (const p of opts.prefs ?? []) args.push('-o', p);
  const out = execFileSync('tshark', args, { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
  return out.split('\n').filter((l) => l.length > 0).map((l) => l.split('\t'));
}

export interface ConversationSide {
  packets: number;
  bytes: number;
}

/**
 * tshark's conversations, exact: frames and frame bytes sent by each endpoint of each
 * (address, port) pair, keyed "proto a:port b:port" with the endpoints in sorted order, then
 * the sending endpoint. This is what `-z conv,tcp|udp` shows, without its rounding to kB.
 */
export function tsharkConversations(file: string, proto: 'tcp' | 'udp'): Map<string, ConversationSide> {
  const rows = tsharkFields(file, ['ip.src', 'ipv6.src', 'ip.dst', 'ipv6.dst', `${proto}.srcport`, `${proto}.dstport`, 'frame.len'], {
    filter: `${proto} && !icmp && !icmpv6`,
  });
  const out = new Map<string, ConversationSide>();
  for (const [ip4s, ip6s, ip4d, ip6d, sport, dport, len] of rows) {
    // Tunnelled packets carry several addresses; the innermost (last) is the conversation's.
    const last = (s: string) => s.split(',').pop()!;
    const src = last(ip6s || ip4s);
    const dst = last(ip6d || ip4d);
    const key = conversationKey(proto === 'tcp' ? 6 : 17, src, Number(last(sport)), dst, Number(last(dport)), src, Number(last(sport)));
    const side = out.get(key) ?? { packets: 0, bytes: 0 };
    side.packets += 1;
    side.bytes += Number(len);
    out.set(key, side);
  }
  return out;
}

/**
 * The innermost transport of a packet from tshark's protocol chain: TCP, or ICMP (whatever it
 * quotes), or UDP unless a tunnel inside it carries another IP packet.
 */
function innermostTransport(protocols: string): { l4: string; v6: boolean } {
  let l4 = '';
  let v6 = false;
  for (const layer of protocols.split(':')) {
    if (layer === 'ip' || layer === 'ipv6') {
      v6 = layer === 'ipv6';
      l4 = '';
    } else if (layer === 'icmp' || layer === 'icmpv6' || layer === 'tcp') {
      return { l4: layer, v6 };
    } else if (layer === 'udp') {
      l4 = 'udp';
    }
  }
  return { l4, v6 };
}

/**
 * tshark's innermost conversations, for tunnelled and fragmented captures: each packet counts in
 * the conversation of its innermost TCP or UDP layer, and a reassembled datagram counts once with
 * the frame bytes of every fragment that carried its IP id (overlapping copies too), which is what
 * was on the wire for that flow. (`-z conv` credits the other fragments to no UDP/TCP conversation.)
 */
export function tsharkInnerConversations(file: string): Map<string, ConversationSide> {
  const last = (s: string) => s.split(',').pop()!;
  // Every fragment's frame bytes, by datagram: (source, destination, IP id), and a new datagram
  // with the same id once the previous one was reassembled.
  const fragmentBytes = new Map<string, number>();
  const datagramOf = new Map<string, string>();
  const generation = new Map<string, number>();
  const fragments = tsharkFields(file, ['frame.number', 'frame.len', 'ip.src', 'ipv6.src', 'ip.dst', 'ipv6.dst', 'ip.id',
    'ipv6.fraghdr.ident', 'ip.fragment', 'ipv6.fragment'], { filter: 'ip.flags.mf == 1 || ip.frag_offset > 0 || ipv6.fraghdr' });
  for (const [n, len, ip4s, ip6s, ip4d, ip6d, id4, id6, done4, done6] of fragments) {
    const id = `${last(ip6s || ip4s)} ${last(ip6d || ip4d)} ${last(id6 || id4)}`;
    const key = `${id} #${generation.get(id) ?? 0}`;
    fragmentBytes.set(key, (fragmentBytes.get(key) ?? 0) + Number(len));
    datagramOf.set(n, key);
    if (done4 || done6) generation.set(id, (generation.get(id) ?? 0) + 1);
  }
  const rows = tsharkFields(file, ['frame.len', 'frame.protocols', 'ip.src', 'ipv6.src', 'ip.dst', 'ipv6.dst',
    'tcp.srcport', 'tcp.dstport', 'udp.srcport', 'udp.dstport', 'ip.fragment', 'ipv6.fragment'], { filter: 'tcp || udp' });
  const out = new Map<string, ConversationSide>();
  for (const [len, protocols, ip4s, ip6s, ip4d, ip6d, tsp, tdp, usp, udp, frag4, frag6] of rows) {
    const { l4, v6 } = innermostTransport(protocols);
    if (l4 !== 'tcp' && l4 !== 'udp') continue;
    const src = last(v6 ? ip6s : ip4s);
    const dst = last(v6 ? ip6d : ip4d);
    const sport = Number(last(l4 === 'tcp' ? tsp : usp));
    const dport = Number(last(l4 === 'tcp' ? tdp : udp));
    const firstFragment = (frag4 || frag6).split(',').filter(Boolean)[0];
    const bytes = firstFragment ? fragmentBytes.get(datagramOf.get(firstFragment) ?? '') ?? Number(len) : Number(len);
    const key = conversationKey(l4 === 'tcp' ? 6 : 17, src, sport, dst, dport, src, sport);
    const side = out.get(key) ?? { packets: 0, bytes: 0 };
    side.packets += 1;
    side.bytes += bytes;
    out.set(key, side);
  }
  return out;
}

/** Packets whose innermost transport is ICMP or ICMPv6, as tshark reads them. */
export function tsharkInnerIcmpPackets(file: string): number {
  return tsharkFields(file, ['frame.protocols'], { filter: 'icmp || icmpv6' })
    .filter(([protocols]) => innermostTransport(protocols).l4.startsWith('icmp')).length;
}

/** Key of one direction of a conversation: both endpoints sorted, then the sender. */
export function conversationKey(proto: number, a: string, aPort: number, b: string, bPort: number, fromIp: string, fromPort: number): string {
  const ea = `${a}:${aPort}`;
  const eb = `${b}:${bPort}`;
  const [x, y] = ea < eb ? [ea, eb] : [eb, ea];
  return `${proto} ${x} ${y} from ${fromIp}:${fromPort}`;
}
