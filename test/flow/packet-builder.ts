// Hand-built MetaPackets for unit tests: one call per packet, addresses as text.
import { PacketBatch, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from '../../lib/packet-batch';
import { parseIpv6 } from './tshark-packets';

export const SYN = TCP_SYN;
export const SYNACK = TCP_SYN | TCP_ACK;
export const ACK = TCP_ACK;
export const FIN = TCP_FIN | TCP_ACK;
export const RST = TCP_RST | TCP_ACK;

export interface PacketSpec {
  /** Seconds (float) since the epoch. */
  t: number;
  src: string; sport: number;
  dst: string; dport: number;
  proto?: number;
  flags?: number;
  seq?: number; ack?: number;
  /** L4 payload length (a payload of that many 'x' bytes is attached). */
  len?: number;
  frameLen?: number;
  win?: number;
  vlan?: number;
  payload?: string;
}

function setIp(dst: Uint8Array, i: number, text: string): number {
  if (text.includes(':')) { parseIpv6(text, dst, i * 16); return 6; }
  PacketBatch.setIpv4(dst, i, Uint8Array.from(text.split('.').map(Number)), 0);
  return 4;
}

export function addPacket(b: PacketBatch, p: PacketSpec): void {
  const i = b.begin();
  b.timestampUs[i] = Math.round(p.t * 1e6);
  b.ipVersion[i] = setIp(b.ipSrc, i, p.src);
  setIp(b.ipDst, i, p.dst);
  b.portSrc[i] = p.sport;
  b.portDst[i] = p.dport;
  b.protocol[i] = p.proto ?? 6;
  b.tcpFlags[i] = p.flags ?? (b.protocol[i] === 6 ? TCP_ACK : 0);
  b.tcpSeq[i] = (p.seq ?? 0) >>> 0;
  b.tcpAck[i] = (p.ack ?? 0) >>> 0;
  b.tcpWindow[i] = p.win ?? 1000;
  b.vlan[i] = p.vlan ?? 0;
  const payload = p.payload !== undefined ? Buffer.from(p.payload) : Buffer.alloc(p.len ?? 0, 'x');
  b.l4PayloadLen[i] = payload.length;
  const l4Header = b.protocol[i] === 6 ? 20 : 8;
  b.l3Len[i] = 20 + l4Header + payload.length;
  b.frameLen[i] = p.frameLen ?? b.l3Len[i] + 14;
  if (payload.length) b.setPayload(i, payload, 0, payload.length);
  b.commit();
}

export function batchOf(specs: PacketSpec[]): PacketBatch {
  const b = new PacketBatch(Math.max(1, specs.length));
  for (const p of specs) addPacket(b, p);
  return b;
}

/** A client/server pair with helpers for the two directions of one TCP connection. */
export function conn(client: string, cport: number, server: string, sport: number) {
  return {
    c: (t: number, flags: number, extra: Partial<PacketSpec> = {}): PacketSpec => ({ t, src: client, sport: cport, dst: server, dport: sport, flags, ...extra }),
    s: (t: number, flags: number, extra: Partial<PacketSpec> = {}): PacketSpec => ({ t, src: server, sport, dst: client, dport: cport, flags, ...extra }),
  };
}
