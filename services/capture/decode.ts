// Decodes one captured frame into one row of a PacketBatch: link layer, VLAN tags, MPLS, IPv4/IPv6
// (options, extension headers, fragments), TCP/UDP/ICMP, and tunnels (VXLAN, Geneve, GRE/TEB,
// ERSPAN I/II/III, IP-in-IP, MPLS), whose innermost packet is the row. The frame is read in place
// and the decoder keeps its state in fields, so the hot path allocates nothing.
import {
  IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, PacketBatch, TCP_SYN,
} from '../../lib/packet-batch';
import { flowtap } from '../../lib/proto';
import {
  DEFAULT_REASSEMBLY_LIMITS, FRAGMENT_COMPLETE, FRAGMENT_HELD, FragmentDropReason, IpReassembler, ReassemblyLimits,
} from './ip-reassembly';

/** LINKTYPE_* values (tcpdump.org link-layer header types) the decoder understands. */
export const LINKTYPE_NULL = 0;
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW_BSD = 12;
export const LINKTYPE_RAW_BSD_ALT = 14;
export const LINKTYPE_RAW = 101;
export const LINKTYPE_LOOP = 108;
export const LINKTYPE_LINUX_SLL = 113;
export const LINKTYPE_IPV4 = 228;
export const LINKTYPE_IPV6 = 229;
export const LINKTYPE_LINUX_SLL2 = 276;

/**
 * Frames that give no row, by reason:
 * - unsupported_link_type: a link type not listed above
 * - truncated_l2: captured bytes end inside the link header, a VLAN tag, an MPLS label or a tunnel header
 * - non_ip: the frame carries something other than IP (ARP, LLDP, STP, IPX, ...), also inside a tunnel
 * - truncated_ip: captured bytes end inside the IPv4 header or IPv6 header/extension headers
 * - bad_ip_header: wrong version, header length < 20, total length shorter than the header,
 *   extension headers running past the packet (a total length longer than the frame is cut to
 *   the frame, as tshark does, and counted in `clampedLengths`)
 * - truncated_l4: captured bytes end inside the TCP, UDP or ICMP header
 * - bad_tcp_header: TCP data offset < 5 words or past the end of the IP packet
 * - fragment_held: a fragment kept for reassembly (not lost: its datagram gives a row later)
 * - batch_full: the caller passed a full batch (it must flush first)
 * plus the reassembler's reasons (fragment_timeout, fragment_overflow, fragment_bad, fragment_unfinished).
 */
export type DecodeDropReason = 'unsupported_link_type' | 'truncated_l2' | 'non_ip' | 'truncated_ip'
  | 'bad_ip_header' | 'truncated_l4' | 'bad_tcp_header' | 'fragment_held' | 'batch_full';

export interface FrameDecoderOptions {
  /** Decapsulate tunnels and report the inner packet (default true). */
  decapsulate?: boolean;
  /** Reassemble IP fragments (default true). Off: a first fragment is decoded as is, later ones give a row without ports. */
  reassemble?: boolean;
  reassemblyLimits?: ReassemblyLimits;
}

const ETH_IPV4 = 0x0800;
const ETH_IPV6 = 0x86dd;
const ETH_VLAN = 0x8100;
const ETH_QINQ = 0x88a8;
const ETH_QINQ_OLD = 0x9100;
const ETH_MPLS = 0x8847;
const ETH_MPLS_MC = 0x8848;
const ETH_PPPOE_SESSION = 0x8864;
const ETH_TEB = 0x6558;
const ETH_ERSPAN_1_2 = 0x88be;
const ETH_ERSPAN_3 = 0x22eb;
const IPPROTO_IPIP = 4;
const IPPROTO_IPV6 = 41;
const IPPROTO_GRE = 47;
const UDP_VXLAN = 4789;
const UDP_VXLAN_LINUX = 8472;
const UDP_GENEVE = 6081;
/** Tunnels inside tunnels are followed this deep; deeper layers are left as payload. */
const MAX_TUNNEL_DEPTH = 4;
const MAX_IPV6_EXTENSIONS = 16;
/** Bytes 8..11 of a v4-mapped address (00 00 ff ff) as a little-endian word. */
const V4_MAPPED_WORD = 0xffff0000;

export class FrameDecoder {
  readonly drops: Record<DecodeDropReason | FragmentDropReason, number>;
  /** Rows committed, and frames in which a tunnel was entered (outermost counted once). */
  decoded = 0;
  decapsulated = 0;
  /** IP or UDP lengths that claimed more bytes than the frame (or outer layer) had; cut to fit. */
  clampedLengths = 0;
  readonly decapsulate: boolean;
  readonly reassemble: boolean;
  readonly reassembler: IpReassembler;

  // Per-frame state, in fields so that nothing is allocated per frame.
  private batch!: PacketBatch;
  private row = 0;
  private buf!: Buffer;
  /** End of the captured bytes of the current layer. */
  private end = 0;
  /** End of the current layer on the wire (may be past `end` when the capture was cut). */
  private wireEnd = 0;
  private vlanSet = false;
  private depth = 0;
  private frameTs = 0;
  private frameLen = 0;
  // DataViews for copyPayload, remade only when the source or destination buffer changes.
  private srcViewOf: Uint8Array | undefined;
  private srcView!: DataView;
  private dstViewOf: Uint8Array | undefined;
  private dstView!: DataView;

  constructor(opts: FrameDecoderOptions = {}) {
    this.decapsulate = opts.decapsulate ?? true;
    this.reassemble = opts.reassemble ?? true;
    this.reassembler = new IpReassembler(opts.reassemblyLimits ?? DEFAULT_REASSEMBLY_LIMITS);
    // The reassembler's counters are shared with ours, so one object goes to Prometheus.
    this.drops = Object.assign(this.reassembler.drops, {
      unsupported_link_type: 0, truncated_l2: 0, non_ip: 0, truncated_ip: 0, bad_ip_header: 0,
      truncated_l4: 0, bad_tcp_header: 0, fragment_held: 0, batch_full: 0,
    });
  }

  /**
   * Decodes `buf[off .. off + capLen)`, a frame of `linkType` that was `origLen` bytes on the
   * wire, into the next row of `batch`. Returns true if a row was committed; otherwise the frame
   * was counted in `drops`. The caller flushes the batch when `batch.full`.
   */
  decode(batch: PacketBatch, buf: Buffer, off: number, capLen: number, origLen: number,
    timestampUs: number, linkType: number, ifindex = 0): boolean {
    return this.run(batch, buf, off, capLen, origLen, timestampUs, linkType, ifindex, -1);
  }

  /**
   * Live capture: like `decode`, for a frame whose outer VLAN tag the kernel removed and reported
   * separately (`vlanTci` >= 0; -1: no tag). The tag's 4 bytes count in the frame length.
   */
  decodeLive(batch: PacketBatch, buf: Buffer, off: number, capLen: number, origLen: number,
    timestampUs: number, linkType: number, ifindex: number, vlanTci: number): boolean {
    return this.run(batch, buf, off, capLen, vlanTci >= 0 ? origLen + 4 : origLen, timestampUs, linkType, ifindex, vlanTci);
  }

  private run(batch: PacketBatch, buf: Buffer, off: number, capLen: number, origLen: number,
    timestampUs: number, linkType: number, ifindex: number, vlanTci: number): boolean {
    if (batch.count >= batch.capacity) { this.drops.batch_full++; return false; }
    // A frame outside the buffer is treated as empty (counted as truncated), never read past.
    if (!(off >= 0 && off <= buf.length)) { off = 0; capLen = 0; }
    if (!(capLen >= 0)) capLen = 0;
    if (off + capLen > buf.length) capLen = buf.length - off;
    const row = batch.begin();
    this.batch = batch;
    this.row = row;
    this.buf = buf;
    this.end = off + capLen;
    this.wireEnd = off + Math.max(origLen, capLen);
    this.depth = 0;
    this.frameTs = timestampUs;
    this.frameLen = origLen;
    this.vlanSet = vlanTci >= 0;
    batch.timestampUs[row] = timestampUs;
    batch.frameLen[row] = origLen;
    batch.ifindex[row] = ifindex;
    if (this.vlanSet) batch.vlan[row] = vlanTci & 0xfff;
    let ok: boolean;
    switch (linkType) {
      case LINKTYPE_ETHERNET: ok = this.ethernet(off); break;
      case LINKTYPE_LINUX_SLL: ok = this.sll(off); break;
      case LINKTYPE_LINUX_SLL2: ok = this.sll2(off); break;
      case LINKTYPE_RAW: case LINKTYPE_RAW_BSD: case LINKTYPE_RAW_BSD_ALT: ok = this.rawIp(off); break;
      case LINKTYPE_IPV4: ok = this.ipv4(off); break;
      case LINKTYPE_IPV6: ok = this.ipv6(off); break;
      case LINKTYPE_NULL: ok = this.loopback(off, false); break;
      case LINKTYPE_LOOP: ok = this.loopback(off, true); break;
      default: this.drops.unsupported_link_type++; ok = false;
    }
    if (ok) { batch.commit(); this.decoded++; }
    return ok;
  }

  private ethernet(p: number): boolean {
    if (this.end - p < 14) { this.drops.truncated_l2++; return false; }
    return this.etherType((this.buf[p + 12] << 8) | this.buf[p + 13], p + 14);
  }

  /** Linux cooked v1: 16-byte header, protocol (an EtherType) in its last two bytes. */
  private sll(p: number): boolean {
    if (this.end - p < 16) { this.drops.truncated_l2++; return false; }
    return this.etherType(this.buf.readUInt16BE(p + 14), p + 16);
  }

  /** Linux cooked v2: 20-byte header, protocol first. */
  private sll2(p: number): boolean {
    if (this.end - p < 20) { this.drops.truncated_l2++; return false; }
    return this.etherType(this.buf.readUInt16BE(p), p + 20);
  }

  private rawIp(p: number): boolean {
    if (this.end - p < 1) { this.drops.truncated_ip++; return false; }
    const v = this.buf[p] >> 4;
    if (v === 4) return this.ipv4(p);
    if (v === 6) return this.ipv6(p);
    this.drops.bad_ip_header++;
    return false;
  }

  /**
   * BSD loopback: a 4-byte address family, in the capturing host's byte order for NULL and
   * big-endian for LOOP. AF_INET is 2 everywhere; AF_INET6 is 10, 24, 28 or 30 by OS.
   */
  private loopback(p: number, bigEndian: boolean): boolean {
    if (this.end - p < 4) { this.drops.truncated_l2++; return false; }
    const buf = this.buf;
    // Families are small numbers, so the zero half tells the byte order of a NULL header:
    // little-endian hosts write f 0 0 0, big-endian ones 0 0 0 f.
    const hi = (buf[p] << 8) | buf[p + 1];
    const lo = (buf[p + 2] << 8) | buf[p + 3];
    let family = -1;
    if (bigEndian) { if (hi === 0) family = lo; }
    else if (lo === 0) family = (buf[p + 1] << 8) | buf[p];
    else if (hi === 0) family = lo;
    if (family === 2) return this.ipv4(p + 4);
    if (family === 10 || family === 24 || family === 28 || family === 30) return this.ipv6(p + 4);
    this.drops.non_ip++;
    return false;
  }

  /** Follows VLAN tags, PPPoE, LLC/SNAP and MPLS to the IP header. */
  private etherType(type: number, p: number): boolean {
    const buf = this.buf;
    for (;;) {
      if (type === ETH_IPV4) return this.ipv4(p);
      if (type === ETH_IPV6) return this.ipv6(p);
      if (type === ETH_VLAN || type === ETH_QINQ || type === ETH_QINQ_OLD) {
        if (this.end - p < 4) { this.drops.truncated_l2++; return false; }
        if (!this.vlanSet) {
          this.batch.vlan[this.row] = buf.readUInt16BE(p) & 0xfff;
          this.vlanSet = true;
        }
        type = buf.readUInt16BE(p + 2);
        p += 4;
      } else if (type === ETH_MPLS || type === ETH_MPLS_MC) {
        return this.mpls(p);
      } else if (type === ETH_PPPOE_SESSION) {
        if (this.end - p < 8) { this.drops.truncated_l2++; return false; }
        const ppp = buf.readUInt16BE(p + 6);
        if (ppp === 0x0021) return this.ipv4(p + 8);
        if (ppp === 0x0057) return this.ipv6(p + 8);
        this.drops.non_ip++;
        return false;
      } else if (type < 0x0600) {
        // 802.3 length field: only LLC/SNAP carries an EtherType on.
        if (this.end - p >= 8 && buf[p] === 0xaa && buf[p + 1] === 0xaa && buf[p + 2] === 0x03) {
          type = buf.readUInt16BE(p + 6);
          p += 8;
        } else { this.drops.non_ip++; return false; }
      } else { this.drops.non_ip++; return false; }
    }
  }

  /** MPLS label stack; after the bottom label the payload is IPv4, IPv6 or (control word 0) Ethernet. */
  private mpls(p: number): boolean {
    const buf = this.buf;
    let first = true;
    for (;;) {
      if (this.end - p < 4) { this.drops.truncated_l2++; return false; }
      if (first) {
        this.setTunnel(flowtap.TunnelType.TUNNEL_MPLS, (buf[p] << 12) | (buf[p + 1] << 4) | (buf[p + 2] >> 4));
        first = false;
      }
      const bottom = buf[p + 2] & 0x01;
      p += 4;
      if (bottom) break;
    }
    if (this.end - p < 1) { this.drops.truncated_l2++; return false; }
    const nibble = buf[p] >> 4;
    if (nibble === 4) return this.ipv4(p);
    if (nibble === 6) return this.ipv6(p);
    if (nibble === 0) return this.ethernet(p + 4); // pseudowire control word, then Ethernet
    this.drops.non_ip++;
    return false;
  }

  /** Records the outermost tunnel on the row; inner ones only count towards depth. */
  private setTunnel(type: number, id: number): void {
    if (this.batch.tunnelType[this.row] === 0) {
      this.batch.tunnelType[this.row] = type;
      this.batch.tunnelId[this.row] = id; // an int32 here is stored as its uint32 bits
      this.decapsulated++;
    }
  }

  private ipv4(p: number): boolean {
    const buf = this.buf;
    if (this.end - p < 20) { this.drops.truncated_ip++; return false; }
    const vihl = buf[p];
    const ihl = (vihl & 0x0f) << 2;
    if (vihl >> 4 !== 4 || ihl < 20) { this.drops.bad_ip_header++; return false; }
    if (this.end - p < ihl) { this.drops.truncated_ip++; return false; }
    let totalLen = (buf[p + 2] << 8) | buf[p + 3];
    const wireLeft = this.wireEnd - p;
    // Total length 0: a TCP-segmentation-offload frame captured on the sender; trust the frame.
    if (totalLen === 0) totalLen = wireLeft;
    if (totalLen < ihl) { this.drops.bad_ip_header++; return false; }
    if (totalLen > wireLeft) {
      if (wireLeft < ihl) { this.drops.bad_ip_header++; return false; }
      totalLen = wireLeft;
      this.clampedLengths++;
    }
    const batch = this.batch;
    // v4-mapped (::ffff:a.b.c.d) written as four words each; the columns are little-endian.
    const w = this.row * 4;
    const src = batch.ipSrc32, dst = batch.ipDst32;
    src[w] = 0; src[w + 1] = 0; src[w + 2] = V4_MAPPED_WORD;
    dst[w] = 0; dst[w + 1] = 0; dst[w + 2] = V4_MAPPED_WORD;
    src[w + 3] = buf[p + 12] | (buf[p + 13] << 8) | (buf[p + 14] << 16) | (buf[p + 15] << 24);
    dst[w + 3] = buf[p + 16] | (buf[p + 17] << 8) | (buf[p + 18] << 16) | (buf[p + 19] << 24);
    const proto = buf[p + 9];
    batch.ipVersion[this.row] = 4;
    batch.protocol[this.row] = proto;
    batch.l3Len[this.row] = totalLen;
    const ipEnd = p + totalLen;
    const frag = (buf[p + 6] << 8) | buf[p + 7];
    if (frag & 0x3fff) {
      // MF set or a non-zero offset: a fragment.
      const offset = (frag & 0x1fff) << 3;
      const more = (frag & 0x2000) !== 0;
      if (this.reassemble) {
        return this.fragment(4, buf.readUInt16BE(p + 4), proto, offset, more, p + ihl, ipEnd, ihl);
      }
      if (offset !== 0) return this.opaque(p + ihl, ipEnd, Math.min(ipEnd, this.end));
    }
    return this.transport(proto, p + ihl, ipEnd);
  }

  private ipv6(p: number): boolean {
    const buf = this.buf;
    if (this.end - p < 40) { this.drops.truncated_ip++; return false; }
    if (buf[p] >> 4 !== 6) { this.drops.bad_ip_header++; return false; }
    const payloadLen = buf.readUInt16BE(p + 4);
    const wireLeft = this.wireEnd - p;
    // Payload length 0: a jumbogram or an offloaded segment; trust the frame.
    let totalLen = payloadLen === 0 ? wireLeft : 40 + payloadLen;
    if (totalLen > wireLeft) {
      if (wireLeft < 40) { this.drops.bad_ip_header++; return false; }
      totalLen = wireLeft;
      this.clampedLengths++;
    }
    const batch = this.batch;
    const w = this.row * 4;
    const src = batch.ipSrc32, dst = batch.ipDst32;
    for (let k = 0; k < 4; k++) {
      const s = p + 8 + 4 * k, d = p + 24 + 4 * k;
      src[w + k] = buf[s] | (buf[s + 1] << 8) | (buf[s + 2] << 16) | (buf[s + 3] << 24);
      dst[w + k] = buf[d] | (buf[d + 1] << 8) | (buf[d + 2] << 16) | (buf[d + 3] << 24);
    }
    batch.ipVersion[this.row] = 6;
    batch.l3Len[this.row] = totalLen;
    return this.ipv6Extensions(buf[p + 6], p + 40, p + totalLen, p);
  }

  /**
   * Walks IPv6 extension headers from `q` (next header `next`) to the transport header. `p` is
   * the IPv6 header, or -1 inside a reassembled payload (where a fragment header is bad).
   */
  private ipv6Extensions(next: number, q: number, ipEnd: number, p: number): boolean {
    const buf = this.buf;
    const batch = this.batch;
    for (let n = 0; ; n++) {
      if (next !== 0 && next !== 43 && next !== 60 && next !== 44 && next !== 51 && next !== 135) break;
      if (n >= MAX_IPV6_EXTENSIONS) { this.drops.bad_ip_header++; return false; }
      if (this.end - q < 8) { this.drops.truncated_ip++; return false; }
      const hdrNext = buf[q];
      if (next === 44) {
        if (p < 0) { this.drops.bad_ip_header++; return false; }
        const fo = buf.readUInt16BE(q + 2);
        const offset = fo & 0xfff8;
        const more = (fo & 1) !== 0;
        if (offset !== 0 || more) {
          batch.protocol[this.row] = hdrNext;
          if (this.reassemble) {
            return this.fragment(6, buf.readUInt32BE(q + 4), hdrNext, offset, more, q + 8, ipEnd, q + 8 - p);
          }
          if (offset !== 0) return this.opaque(q + 8, ipEnd, Math.min(ipEnd, this.end));
        }
        q += 8;
      } else {
        q += next === 51 ? (buf[q + 1] + 2) << 2 : (buf[q + 1] + 1) << 3;
      }
      next = hdrNext;
      if (q > ipEnd) { this.drops.bad_ip_header++; return false; }
    }
    batch.protocol[this.row] = next;
    return this.transport(next, q, ipEnd);
  }

  /**
   * Hands a fragment to the reassembler. When it completes a datagram, the rest of the decode
   * reads the reassembled payload; the row then covers all of the datagram's frames.
   */
  private fragment(version: number, id: number, proto: number, offset: number, more: boolean,
    payloadStart: number, ipEnd: number, headerLen: number): boolean {
    const capEnd = Math.min(ipEnd, this.end);
    if (capEnd < ipEnd) { this.drops.truncated_ip++; return false; } // a cut fragment cannot be rebuilt
    const o = this.row * 16;
    const b = this.batch;
    let key = `${version}:${proto}:${id}:`;
    for (let k = 0; k < 16; k++) key += b.ipSrc[o + k].toString(16) + '.';
    for (let k = 0; k < 16; k++) key += b.ipDst[o + k].toString(16) + '.';
    const r = this.reassembler;
    const state = r.add(key, offset, more, this.buf, payloadStart, ipEnd - payloadStart, this.frameTs, this.frameLen);
    if (state !== FRAGMENT_COMPLETE) {
      if (state === FRAGMENT_HELD) this.drops.fragment_held++;
      return false;
    }
    b.frameLen[this.row] = r.outFrameLenSum;
    b.l3Len[this.row] = headerLen + r.outLen;
    this.buf = r.out;
    this.end = r.outLen;
    this.wireEnd = r.outLen;
    // IPv6: destination options (or others) may sit between the fragment header and transport.
    return version === 6 ? this.ipv6Extensions(proto, 0, r.outLen, -1) : this.transport(proto, 0, r.outLen);
  }

  /** The L4 header at `p`; the IP packet ends at `ipEnd` on the wire. */
  private transport(proto: number, p: number, ipEnd: number): boolean {
    const buf = this.buf;
    const batch = this.batch;
    const row = this.row;
    const capEnd = ipEnd < this.end ? ipEnd : this.end;
    if (proto === IPPROTO_TCP) {
      if (capEnd - p < 20) { this.drops.truncated_l4++; return false; }
      const doff = (buf[p + 12] >> 4) << 2;
      if (doff < 20 || p + doff > ipEnd) { this.drops.bad_tcp_header++; return false; }
      const flags = buf[p + 13];
      batch.portSrc[row] = (buf[p] << 8) | buf[p + 1];
      batch.portDst[row] = (buf[p + 2] << 8) | buf[p + 3];
      // Big-endian words assembled as int32 (stored as uint32 bits): Buffer#readUInt32BE returns
      // a boxed number above 2^30 when V8 does not inline it, i.e. an allocation per packet.
      batch.tcpSeq[row] = (buf[p + 4] << 24) | (buf[p + 5] << 16) | (buf[p + 6] << 8) | buf[p + 7];
      batch.tcpAck[row] = (buf[p + 8] << 24) | (buf[p + 9] << 16) | (buf[p + 10] << 8) | buf[p + 11];
      batch.tcpFlags[row] = flags;
      batch.tcpWindow[row] = (buf[p + 14] << 8) | buf[p + 15];
      if (flags & TCP_SYN) this.windowScale(p + 20, Math.min(p + doff, capEnd));
      batch.l4PayloadLen[row] = ipEnd - p - doff;
      this.copyPayload(p + doff, capEnd);
      return true;
    }
    if (proto === IPPROTO_UDP) {
      if (capEnd - p < 8) { this.drops.truncated_l4++; return false; }
      const sport = (buf[p] << 8) | buf[p + 1];
      const dport = (buf[p + 2] << 8) | buf[p + 3];
      // The UDP length bounds the datagram when it is shorter than the IP payload (trailing
      // bytes are padding); a longer one is cut to the IP payload.
      const udpLen = (buf[p + 4] << 8) | buf[p + 5];
      if (udpLen >= 8 && p + udpLen !== ipEnd) {
        if (p + udpLen < ipEnd) ipEnd = p + udpLen;
        else this.clampedLengths++;
      }
      if (this.decapsulate && this.depth < MAX_TUNNEL_DEPTH &&
        (dport === UDP_VXLAN || dport === UDP_VXLAN_LINUX || dport === UDP_GENEVE)) {
        const r = dport === UDP_GENEVE ? this.geneve(p + 8, ipEnd) : this.vxlan(p + 8, ipEnd);
        if (r !== undefined) return r;
      }
      batch.portSrc[row] = sport;
      batch.portDst[row] = dport;
      batch.l4PayloadLen[row] = ipEnd - p - 8;
      this.copyPayload(p + 8, ipEnd < capEnd ? ipEnd : capEnd);
      return true;
    }
    if (proto === IPPROTO_ICMP || proto === IPPROTO_ICMPV6) {
      if (capEnd - p < 4) { this.drops.truncated_l4++; return false; }
      batch.icmpTypeCode[row] = (buf[p] << 8) | buf[p + 1];
      // Payload: what follows the 8-byte header (type, code, checksum, rest of header).
      const start = ipEnd - p >= 8 ? p + 8 : ipEnd;
      batch.l4PayloadLen[row] = ipEnd - start;
      this.copyPayload(start, capEnd);
      return true;
    }
    if (this.decapsulate && this.depth < MAX_TUNNEL_DEPTH) {
      if (proto === IPPROTO_GRE) {
        const r = this.gre(p, ipEnd);
        if (r !== undefined) return r;
      } else if (proto === IPPROTO_IPIP || proto === IPPROTO_IPV6) {
        this.enterTunnel(flowtap.TunnelType.TUNNEL_IPIP, 0, ipEnd);
        return proto === IPPROTO_IPIP ? this.ipv4(p) : this.ipv6(p);
      }
    }
    return this.opaque(p, ipEnd, capEnd);
  }

  /** A protocol without ports: all of the IP payload is L4 payload. */
  private opaque(p: number, ipEnd: number, capEnd: number): boolean {
    this.batch.l4PayloadLen[this.row] = Math.max(0, ipEnd - p);
    this.copyPayload(p, capEnd);
    return true;
  }

  /** Narrows the frame to the tunnel's payload and records the tunnel. */
  private enterTunnel(type: number, id: number, innerEnd: number): void {
    this.setTunnel(type, id);
    this.depth++;
    this.wireEnd = innerEnd;
    if (this.end > innerEnd) this.end = innerEnd;
  }

  /** VXLAN (RFC 7348): 8-byte header with the I flag, then Ethernet. Undefined: not VXLAN. */
  private vxlan(p: number, ipEnd: number): boolean | undefined {
    if (this.end - p < 8 || (this.buf[p] & 0x08) === 0) return undefined;
    const b = this.buf;
    this.enterTunnel(flowtap.TunnelType.TUNNEL_VXLAN, (b[p + 4] << 16) | (b[p + 5] << 8) | b[p + 6], ipEnd);
    return this.ethernet(p + 8);
  }

  /** Geneve (RFC 8926): 8-byte header + options, protocol type as an EtherType. */
  private geneve(p: number, ipEnd: number): boolean | undefined {
    if (this.end - p < 8 || this.buf[p] >> 6 !== 0) return undefined;
    const optLen = (this.buf[p] & 0x3f) << 2;
    const type = this.buf.readUInt16BE(p + 2);
    const vni = (this.buf[p + 4] << 16) | (this.buf[p + 5] << 8) | this.buf[p + 6];
    const inner = p + 8 + optLen;
    if (inner > ipEnd) return undefined;
    this.enterTunnel(flowtap.TunnelType.TUNNEL_GENEVE, vni, ipEnd);
    if (type === ETH_TEB) return this.ethernet(inner);
    return this.etherType(type, inner);
  }

  /**
   * GRE (RFC 2784/2890): optional checksum, key, sequence; then IP, Ethernet (TEB) or ERSPAN.
   * ERSPAN type I has no header, type II (0x88be with S) 8 bytes, type III (0x22eb) 12 bytes
   * plus an 8-byte platform subheader when its O flag is set. Undefined: leave as plain GRE.
   */
  private gre(p: number, ipEnd: number): boolean | undefined {
    const buf = this.buf;
    if (this.end - p < 4) return undefined;
    const flags = buf.readUInt16BE(p);
    if ((flags & 0x7) !== 0 || (flags & 0x4000) !== 0) return undefined; // version 1 (PPTP) or routing
    const type = buf.readUInt16BE(p + 2);
    let q = p + 4;
    if (flags & 0x8000) q += 4;
    let key = 0;
    if (flags & 0x2000) {
      if (this.end - q < 4) return undefined;
      key = (buf[q] << 24) | (buf[q + 1] << 16) | (buf[q + 2] << 8) | buf[q + 3]; // int32 bits
      q += 4;
    }
    const hasSeq = (flags & 0x1000) !== 0;
    if (hasSeq) q += 4;
    if (q > this.end) return undefined;
    if (type === ETH_IPV4 || type === ETH_IPV6) {
      this.enterTunnel(flowtap.TunnelType.TUNNEL_GRE, key, ipEnd);
      return type === ETH_IPV4 ? this.ipv4(q) : this.ipv6(q);
    }
    if (type === ETH_TEB) {
      this.enterTunnel(flowtap.TunnelType.TUNNEL_TEB, key, ipEnd);
      return this.ethernet(q);
    }
    if (type === ETH_ERSPAN_1_2) {
      if (!hasSeq) {
        this.enterTunnel(flowtap.TunnelType.TUNNEL_ERSPAN, key, ipEnd);
        return this.ethernet(q);
      }
      if (this.end - q < 8) return undefined;
      const session = buf.readUInt16BE(q + 2) & 0x3ff;
      this.enterTunnel(flowtap.TunnelType.TUNNEL_ERSPAN, key || session, ipEnd);
      return this.ethernet(q + 8);
    }
    if (type === ETH_ERSPAN_3) {
      if (this.end - q < 12) return undefined;
      const session = buf.readUInt16BE(q + 2) & 0x3ff;
      const optional = (buf[q + 11] & 0x01) !== 0;
      this.enterTunnel(flowtap.TunnelType.TUNNEL_ERSPAN, key || session, ipEnd);
      return this.ethernet(q + 12 + (optional ? 8 : 0));
    }
    return undefined;
  }

  /** Window-scale option (kind 3, length 3) among the SYN's options in [p, end). */
  private windowScale(p: number, end: number): void {
    const buf = this.buf;
    while (p < end) {
      const kind = buf[p];
      if (kind === 0) return;
      if (kind === 1) { p++; continue; }
      if (p + 1 >= end) return;
      const len = buf[p + 1];
      if (len < 2) return;
      if (kind === 3 && len === 3 && p + 2 < end) {
        this.batch.tcpWscale[this.row] = buf[p + 2];
        return;
      }
      p += len;
    }
  }

  /**
   * Copies captured payload bytes into the batch, cut at its payloadCut. Buffer#copy and
   * setPayload create a view per call in Node 20, so this copies 4 bytes at a time through
   * DataViews kept per buffer: no allocation while the source buffer stays the same one.
   */
  private copyPayload(start: number, capEnd: number): void {
    const batch = this.batch;
    let n = capEnd - start;
    if (n > batch.payloadCut) n = batch.payloadCut;
    const at = batch.payloadUsed;
    batch.payloadOffset[this.row] = at;
    if (n <= 0) { batch.payloadCap[this.row] = 0; return; }
    if (at + n > batch.payloadData.length) {
      const grown = Buffer.allocUnsafe(Math.max(batch.payloadData.length * 2, at + n));
      batch.payloadData.copy(grown, 0, 0, at);
      batch.payloadData = grown;
    }
    const src = this.buf, dst = batch.payloadData;
    if (src !== this.srcViewOf) {
      this.srcView = new DataView(src.buffer, src.byteOffset, src.byteLength);
      this.srcViewOf = src;
    }
    if (dst !== this.dstViewOf) {
      this.dstView = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
      this.dstViewOf = dst;
    }
    const sv = this.srcView, dv = this.dstView;
    let k = 0;
    for (; k + 4 <= n; k += 4) dv.setUint32(at + k, sv.getUint32(start + k));
    for (; k < n; k++) dst[at + k] = src[start + k];
    batch.payloadCap[this.row] = n;
    batch.payloadUsed = at + n;
  }

  /** End of stream: fragments still waiting are counted as unfinished. */
  flush(): void {
    this.reassembler.flushAll();
  }
}
