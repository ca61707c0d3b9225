// Typed wrapper of the flowtap_native addon: live capture from an AF_PACKET TPACKET_V3 ring.
// One AfPacketSocket per interface; "all interfaces" is the caller's loop over listInterfaces().
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface AfPacketOptions {
  /** Interface name, e.g. 'eth0'. */
  iface: string;
  /** Ring block size in bytes, a multiple of the page size. Default 1 MiB. */
  blockSize?: number;
  /** Number of ring blocks. Default 64. */
  blockCount?: number;
  /** Frame size for the kernel's ring geometry check (V3 packs packets by their size). Default 2048. */
  frameSize?: number;
  /** A partly filled block is handed to JS after this many ms. Default 100. */
  blockTimeoutMs?: number;
  /** Bytes kept per packet (64..262144). Default 262144. */
  snapLen?: number;
  /** Put the interface in promiscuous mode while the socket is open. Default false. */
  promisc?: boolean;
  /** tcpdump filter expression, compiled by libpcap for Ethernet. Default: everything. */
  filter?: string;
  /** PACKET_FANOUT group id (0..65535), hash mode. Default: no fanout. Group ids are per network namespace. */
  fanoutGroup?: number;
  /**
   * With fanoutGroup: PACKET_FANOUT_FLAG_DEFRAG, so all fragments of a datagram go to one member.
   * The kernel then delivers each IPv4 datagram reassembled (one frame longer than the MTU)
   * instead of its fragments. Default true. All members of a group must agree.
   */
  fanoutDefrag?: boolean;
}

/** Running totals of the kernel's PACKET_STATISTICS (the kernel resets them on each read). */
export interface CaptureStats {
  /** Packets that passed the filter, including the dropped ones (the kernel counts them in). */
  packets: number;
  /** Packets lost because the ring had no free block. */
  drops: number;
  /** Times the ring froze because the next block was still held by user space. */
  freezes: number;
}

/** An Error from the addon: `code` is an errno name (ENODEV, EPERM, EINVAL, ENETDOWN, ...). */
export interface CaptureError extends Error {
  code?: string;
  errno?: number;
}

/**
 * Called for each retired ring block. `block` views the ring memory itself (no copy) and is
 * only valid until `done()`; `index` holds INDEX_WORDS u32 per packet for `count` packets
 * (it is reused for the next delivery of the same block). Call `done()` once the batch made
 * from the block no longer needs its bytes; until then the kernel cannot refill the block.
 */
export type BlockCallback = (block: Buffer, index: Uint32Array, count: number, done: () => void) => void;

/** Words of one packet's entry in the index. */
export const INDEX_WORDS = 8;
/** Offset of the frame (MAC header) in the block. */
export const INDEX_OFFSET = 0;
/** Captured bytes (after snapLen). */
export const INDEX_CAPLEN = 1;
/** Length on the wire. */
export const INDEX_ORIGLEN = 2;
export const INDEX_TS_SEC = 3;
export const INDEX_TS_NSEC = 4;
export const INDEX_IFINDEX = 5;
/** Low 16 bits: the 802.1Q TCI the kernel stripped from the frame; high 16 bits: its TPID. */
export const INDEX_VLAN = 6;
export const INDEX_FLAGS = 7;

/** INDEX_VLAN low half is valid: the frame carried an outer VLAN tag, removed from `block`. */
export const FLAG_VLAN_VALID = 1 << 0;
/** INDEX_VLAN high half (TPID, e.g. 0x8100 or 0x88a8) is valid. */
export const FLAG_VLAN_TPID_VALID = 1 << 1;
/** Outgoing packet whose checksum is left to the NIC (TP_STATUS_CSUMNOTREADY). */
export const FLAG_CHECKSUM_NOT_READY = 1 << 2;
/** caplen < origlen. */
export const FLAG_TRUNCATED = 1 << 3;
const FLAG_PKTTYPE_SHIFT = 8;

/** sll_pkttype values, as found in bits 8..15 of the flags word. */
export const PACKET_HOST = 0;
export const PACKET_BROADCAST = 1;
export const PACKET_MULTICAST = 2;
export const PACKET_OTHERHOST = 3;
export const PACKET_OUTGOING = 4;

export function packetTypeOf(flags: number): number {
  return (flags >>> FLAG_PKTTYPE_SHIFT) & 0xff;
}

interface NativeSocket {
  start(cb: (blockId: number, block: Buffer, index: Uint32Array, count: number) => void): void;
  onError(cb: (err: CaptureError) => void): void;
  release(blockId: number): boolean;
  stats(): CaptureStats;
  close(): void;
  ref(): void;
  unref(): void;
  readonly ifindex: number;
  readonly heldBlocks: number;
  readonly malformed: number;
}

interface NativeAddon {
  AfPacketSocket: new (opts: AfPacketOptions) => NativeSocket;
}

let addon: NativeAddon | undefined;

/** The addon sits in native/build/Release both from the source tree and from dist/native. */
function loadAddon(): NativeAddon {
  if (addon) return addon;
  const file = path.join('build', 'Release', 'flowtap_native.node');
  const candidates = [path.join(__dirname, file), path.join(__dirname, '..', '..', 'native', file)];
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found) {
    throw new Error(`flowtap_native addon not built (looked in ${candidates.join(', ')}); run node scripts/build.js`);
  }
  addon = require(found) as NativeAddon;
  return addon;
}

export class AfPacketSocket {
  /** True after the kernel reported ENETDOWN, until a block arrives again. */
  down = false;
  /** The last error reported when no onError handler was set. */
  lastError: CaptureError | undefined;
  private readonly native: NativeSocket;
  private readonly releasers: Array<() => void> = [];
  private errorHandler: ((err: CaptureError) => void) | undefined;
  private closed = false;

  private constructor(readonly iface: string, native: NativeSocket) {
    this.native = native;
    native.onError((err) => {
      if (err.code === 'ENETDOWN') this.down = true;
      if (this.errorHandler) this.errorHandler(err);
      else this.lastError = err;
    });
  }

  /** Opens the socket, attaches the filter, maps the ring and binds to `opts.iface`. Throws CaptureError. */
  static open(opts: AfPacketOptions): AfPacketSocket {
    const Native = loadAddon().AfPacketSocket;
    return new AfPacketSocket(opts.iface, new Native(opts));
  }

  get ifindex(): number {
    return this.native.ifindex;
  }

  /** Blocks delivered and not yet released. */
  get heldBlocks(): number {
    return this.closed ? 0 : this.native.heldBlocks;
  }

  /** Ring entries skipped because they pointed outside their block (never seen in practice). */
  get malformed(): number {
    return this.native.malformed;
  }

  /** Starts delivery; the socket keeps the event loop alive until close() (or unref()). */
  onBlock(cb: BlockCallback): void {
    this.native.start((blockId, block, index, count) => {
      this.down = false;
      let done = this.releasers[blockId];
      if (!done) {
        done = () => this.release(blockId);
        this.releasers[blockId] = done;
      }
      cb(block, index, count, done);
    });
  }

  /** Errors after open, e.g. ENETDOWN when the interface goes down (the socket stays open). */
  onError(cb: (err: CaptureError) => void): void {
    this.errorHandler = cb;
  }

  /** Hands a block back to the kernel. Releasing twice, or after close(), does nothing. */
  release(blockId: number): void {
    if (!this.closed) this.native.release(blockId);
  }

  stats(): CaptureStats {
    return this.native.stats();
  }

  /**
   * Packets lost, by reason, as running totals for a Prometheus counter:
   * - `ring_full`: the kernel found no free block (JS held blocks too long, or traffic outran it);
   * - `malformed_ring_entry`: an entry pointed outside its block and was skipped (never seen in practice).
   */
  drops(): Record<'ring_full' | 'malformed_ring_entry', number> {
    return { ring_full: this.native.stats().drops, malformed_ring_entry: this.native.malformed };
  }

  /** Closes the socket and unmaps the ring; Buffers still held become empty. Safe to call twice. */
  close(): void {
    this.closed = true;
    this.native.close();
  }

  ref(): void {
    this.native.ref();
  }

  unref(): void {
    this.native.unref();
  }
}

export interface NetInterface {
  name: string;
  ifindex: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Carrier and up (IFF_RUNNING). */
  running: boolean;
  /** RFC 2863 state from the kernel: 'up', 'down', 'unknown' (loopback, tun), 'lowerlayerdown', ... */
  operstate: string;
}

const IFF_UP = 0x1;
const IFF_RUNNING = 0x40;

/** Interfaces of the current network namespace, from /sys/class/net. */
export function listInterfaces(sysClassNet = '/sys/class/net'): NetInterface[] {
  const read = (name: string, file: string): string | undefined => {
    try {
      return fs.readFileSync(path.join(sysClassNet, name, file), 'utf8').trim();
    } catch {
      return undefined; // the interface vanished while we looked
    }
  };
  const result: NetInterface[] = [];
  for (const name of fs.readdirSync(sysClassNet)) {
    const ifindex = Number(read(name, 'ifindex'));
    const flags = Number.parseInt(read(name, 'flags') ?? '', 16);
    if (!Number.isInteger(ifindex) || Number.isNaN(flags)) continue;
    result.push({
      name,
      ifindex,
      up: (flags & IFF_UP) !== 0,
      running: (flags & IFF_RUNNING) !== 0,
      operstate: read(name, 'operstate') ?? 'unknown',
    });
  }
  return result.sort((a, b) => a.ifindex - b.ifindex);
}
