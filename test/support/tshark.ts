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

/** Key of one direction of a conversation: both endpoints sorted, then the sender. */
export function conversationKey(proto: number, a: string, aPort: number, b: string, bPort: number, fromIp: string, fromPort: number): string {
  const ea = `${a}:${aPort}`;
  const eb = `${b}:${bPort}`;
  const [x, y] = ea < eb ? [ea, eb] : [eb, ea];
  return `${proto} ${x} ${y} from ${fromIp}:${fromPort}`;
}
