// Live capture: one AF_PACKET ring per interface, ring blocks decoded straight into packet
// batches, and the interface set kept in step with the host. A ring block goes back to the
// kernel only once every packet in it has been sent downstream, so a slow pipeline holds blocks
// and the kernel counts the overflow as drops (PACKET_STATISTICS), never silently.
import {
  AfPacketSocket, FLAG_VLAN_VALID, INDEX_CAPLEN, INDEX_FLAGS, INDEX_IFINDEX, INDEX_OFFSET, INDEX_ORIGLEN,
  INDEX_TS_NSEC, INDEX_TS_SEC, INDEX_VLAN, INDEX_WORDS, listInterfaces, type CaptureStats, type NetInterface,
} from '../../native';
import type { Config } from '../../lib/config';
import type { Logger } from '../../lib/log';
import type { PacketBatch } from '../../lib/packet-batch';
import { FrameDecoder, LINKTYPE_ETHERNET } from './decode';

export interface LiveCaptureHooks {
  /** Sends the full (or, on idle, partial) batch; resolves when the receiver took it. */
  sendBatch(batch: PacketBatch): Promise<void>;
  /**
   * opened: capture started on it; closed: it disappeared or is administratively down (it is
   * reopened when it comes back); down: the kernel reported it down (ENETDOWN) while capturing;
   * open_failed: it could not be opened.
   */
  onInterfaceEvent(event: 'opened' | 'closed' | 'down' | 'open_failed', iface: string): void;
}

interface PendingBlock {
  socket: AfPacketSocket;
  block: Buffer;
  index: Uint32Array;
  count: number;
  done: () => void;
}

/** True if `name` matches one of the configured names or `*` patterns (empty: every interface but lo). */
export function interfaceSelected(name: string, patterns: readonly string[]): boolean {
  if (patterns.length === 0) return name !== 'lo';
  return patterns.some((p) => {
    if (!p.includes('*')) return p === name;
    const re = new RegExp(`^${p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
    return re.test(name);
  });
}

export class LiveCapture {
  private readonly sockets = new Map<string, AfPacketSocket>();
  /** Kernel statistics of sockets already closed, so totals never go backwards. */
  private readonly closedStats = new Map<string, CaptureStats>();
  private readonly queue: PendingBlock[] = [];
  private readonly closedSockets = new WeakSet<AfPacketSocket>();
  private pumping = false;
  private lastPacketMs = Date.now();
  packets = 0;

  constructor(
    private readonly cfg: Config['capture'],
    private readonly decoder: FrameDecoder,
    private readonly batch: PacketBatch,
    private readonly hooks: LiveCaptureHooks,
    private readonly log: Logger,
  ) {}

  get openInterfaces(): string[] {
    return [...this.sockets.keys()];
  }

  get heldBlocks(): number {
    return this.queue.length;
  }

  /** Milliseconds since the last packet, for idle ticks. */
  idleMs(): number {
    return Date.now() - this.lastPacketMs;
  }

  /**
   * Opens every selected interface that is up. With explicit names, a name that does not exist
   * is an error (a typo must not look like a quiet network); patterns may match nothing yet.
   */
  start(): void {
    const present = listInterfaces();
    for (const name of this.cfg.interfaces) {
      if (!name.includes('*') && !present.some((i) => i.name === name)) {
        throw new Error(`capture.interfaces: interface '${name}' does not exist`);
      }
    }
    this.rescan(present);
  }

  /** Brings the open set in line with the host: opens new or returning interfaces, closes gone ones. */
  rescan(present: NetInterface[] = listInterfaces()): void {
    const wanted = new Map(present.filter((i) => i.up && interfaceSelected(i.name, this.cfg.interfaces)).map((i) => [i.name, i]));
    for (const [name, socket] of this.sockets) {
      if (wanted.has(name) && wanted.get(name)!.ifindex === socket.ifindex) continue;
      this.close(name, socket);
      this.hooks.onInterfaceEvent('closed', name);
    }
    for (const name of wanted.keys()) {
      if (!this.sockets.has(name)) this.open(name);
    }
  }

  private open(name: string): void {
    let socket: AfPacketSocket;
    try {
      socket = AfPacketSocket.open({
        iface: name,
        blockSize: this.cfg.ring_block_size,
        blockCount: this.cfg.ring_block_count,
        frameSize: this.cfg.ring_frame_size,
        blockTimeoutMs: this.cfg.ring_block_timeout_ms,
        snapLen: this.cfg.snap_len,
        promisc: this.cfg.promisc,
        filter: this.cfg.filter || undefined,
        fanoutGroup: this.cfg.fanout_group || undefined,
      });
    } catch (err) {
      // A bad filter is the same on every interface: that is a configuration error.
      if (/filter/i.test((err as Error).message)) throw err;
      this.log.warn('cannot open interface', { iface: name, error: (err as Error).message });
      this.hooks.onInterfaceEvent('open_failed', name);
      return;
    }
    socket.onError((err) => {
      this.log.warn('capture error', { iface: name, code: err.code, error: err.message });
      if (err.code === 'ENETDOWN') this.hooks.onInterfaceEvent('down', name);
    });
    socket.onBlock((block, index, count, done) => {
      this.queue.push({ socket, block, index, count, done });
      void this.pump();
    });
    this.sockets.set(name, socket);
    this.log.info('capturing', { iface: name, ifindex: socket.ifindex, filter: this.cfg.filter });
    this.hooks.onInterfaceEvent('opened', name);
  }

  private close(name: string, socket: AfPacketSocket): void {
    const before = this.closedStats.get(name) ?? { packets: 0, drops: 0, freezes: 0 };
    const s = socket.stats();
    this.closedStats.set(name, { packets: before.packets + s.packets, drops: before.drops + s.drops, freezes: before.freezes + s.freezes });
    // Its queued blocks are forgotten: close() unmaps the ring they live in.
    this.closedSockets.add(socket);
    this.queue.splice(0, this.queue.length, ...this.queue.filter((p) => p.socket !== socket));
    socket.close();
    this.sockets.delete(name);
    this.log.info('stopped capturing', { iface: name });
  }

  /** Kernel statistics per interface, running totals. */
  stats(): Map<string, CaptureStats> {
    const out = new Map<string, CaptureStats>(this.closedStats);
    for (const [name, socket] of this.sockets) {
      const s = socket.stats();
      const c = out.get(name) ?? { packets: 0, drops: 0, freezes: 0 };
      out.set(name, { packets: c.packets + s.packets, drops: c.drops + s.drops, freezes: c.freezes + s.freezes });
    }
    return out;
  }

  /** Decodes queued blocks in order; each block is released once its packets are all sent. */
  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0) {
        const item = this.queue[0];
        const { socket, block, index, count, done } = item;
        for (let k = 0; k < count && !this.closedSockets.has(socket); k++) {
          const w = k * INDEX_WORDS;
          const vlan = (index[w + INDEX_FLAGS] & FLAG_VLAN_VALID) !== 0 ? index[w + INDEX_VLAN] & 0xffff : -1;
          const tsUs = index[w + INDEX_TS_SEC] * 1e6 + Math.floor(index[w + INDEX_TS_NSEC] / 1000);
          this.decoder.decodeLive(this.batch, block, index[w + INDEX_OFFSET], index[w + INDEX_CAPLEN],
            index[w + INDEX_ORIGLEN], tsUs, LINKTYPE_ETHERNET, index[w + INDEX_IFINDEX], vlan);
          if (this.batch.full) await this.hooks.sendBatch(this.batch);
        }
        this.packets += count;
        this.lastPacketMs = Date.now();
        // The batch still points at nothing in the block (payloads are copied), so the block can go back.
        const at = this.queue.indexOf(item);
        if (at >= 0) this.queue.splice(at, 1);
        if (!this.closedSockets.has(socket)) done();
        // A block is at most 100 ms old: send what it gave now rather than wait for a full batch.
        if (this.queue.length === 0 && this.batch.count > 0) await this.hooks.sendBatch(this.batch);
      }
    } finally {
      this.pumping = false;
    }
  }

  /**
   * Stops capturing without losing the tail: the kernel hands a partly filled ring block over
   * only when its timeout expires, so wait that long, let the pump finish, then close.
   */
  async drainAndClose(): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, this.cfg.ring_block_timeout_ms + 50));
    while (this.pumping || this.queue.length > 0) await new Promise((resolve) => setTimeout(resolve, 10));
    this.closeAll();
  }

  closeAll(): void {
    for (const [name, socket] of this.sockets) this.close(name, socket);
  }
}
