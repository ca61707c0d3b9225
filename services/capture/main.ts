// The capture service: frames from a capture file (replay) or from live interfaces, decoded
// into columnar MetaPacket batches for the flow service.
import fs from 'node:fs';
import { PacketBatch } from '../../lib/packet-batch';
import { TotalsSeen } from '../../lib/metrics';
import { flowtap } from '../../lib/proto';
import { runService, type ServiceContext } from '../../lib/service';
import { Kind } from '../../lib/transport';
import client from 'prom-client';
import { openCaptureFile } from './capture-file';
import { FrameDecoder } from './decode';
import type { EbpfCollector } from './ebpf-collector';
import { startEbpf, stopProfiles } from './ebpf-wiring';
import { LiveCapture } from './live-capture';

const PROGRESS_INTERVAL_MS = 200;

/** Packet time (µs) of the newest packet sent to flow so far. */
let sentUpToUs = 0;

/** Sends the batch to flow if it holds anything, and empties it. */
async function sendBatch(ctx: ServiceContext, batch: PacketBatch): Promise<void> {
  if (batch.count === 0) return;
  const ts = batch.timestampUs;
  for (let i = 0; i < batch.count; i++) if (ts[i] > sentUpToUs) sentUpToUs = ts[i];
  // Encoding copies the rows, so the batch is free for the next packets before the send resolves.
  const body = batch.encode();
  const count = batch.count;
  batch.reset();
  await ctx.send('flow', Kind.PACKET_BATCH, body, count);
}

async function replayFile(ctx: ServiceContext, decoder: FrameDecoder, batch: PacketBatch): Promise<void> {
  const path = ctx.config.capture.file;
  const reader = await openCaptureFile(path);
  ctx.metrics.trackDrops('file_', () => reader.drops);
  const totalBytes = fs.statSync(path).size;
  let lastTs = 0;
  let tickedSecond = -1;
  let lastProgress = 0;
  // Bytes read, near enough for a progress bar: each frame plus a pcap record header.
  let consumed = 0;
  const onFrame = (buf: Buffer, off: number, capLen: number, origLen: number, ts: number, linkType: number) => {
    decoder.decode(batch, buf, off, capLen, origLen, ts, linkType);
    consumed += capLen + 16;
    if (ts > lastTs) lastTs = ts;
  };
  for (;;) {
    const n = ctx.draining ? 0 : await reader.readFrames(onFrame, batch.capacity - batch.count);
    ctx.metrics.recordsIn.inc({ kind: 'frame' }, n);
    if (n === 0) break;
    if (batch.full) {
      await sendBatch(ctx, batch);
      // Every downstream with several upstreams moves its clock only as far as the slowest one's
      // ticks (lib/watermark.ts), so capture ticks too: once per second of packet time sent.
      if (Math.floor(sentUpToUs / 1e6) > tickedSecond) {
        tickedSecond = Math.floor(sentUpToUs / 1e6);
        await ctx.broadcastControl(flowtap.Control.Kind.TICK, sentUpToUs);
      }
    }
    const now = Date.now();
    if (now - lastProgress >= PROGRESS_INTERVAL_MS) {
      lastProgress = now;
      const fraction = reader.compressed ? 0 : Math.min(1, consumed / totalBytes);
      ctx.tellParent({ type: 'progress', bytes: fraction * totalBytes, totalBytes, packets: reader.framesRead });
    }
  }
  // Fragments still waiting for their missing parts are counted, not silently forgotten.
  decoder.flush();
  await sendBatch(ctx, batch);
  await reader.close();
  ctx.tellParent({ type: 'progress', bytes: totalBytes, totalBytes, packets: reader.framesRead });
  ctx.tellParent({ type: 'summary', service: 'capture', counts: { packets: reader.framesRead, decoded: decoder.decoded } });
  ctx.log.info('capture file done', { file: path, frames: reader.framesRead, decoded: decoder.decoded });
  await ctx.broadcastControl(flowtap.Control.Kind.END_OF_STREAM, lastTs);
}

const RESCAN_INTERVAL_MS = 1000;

/** Captures on the configured interfaces until stopped, with idle ticks and interface rescans. */
function startLive(ctx: ServiceContext, decoder: FrameDecoder, batch: PacketBatch): LiveCapture {
  const registers = [ctx.metrics.registry];
  const events = new client.Counter({
    name: 'flowtap_capture_interface_events_total',
    help: 'Interfaces opened, closed, gone down or failed to open',
    labelNames: ['interface', 'event'],
    registers,
  });
  const live = new LiveCapture(ctx.config.capture, decoder, batch, {
    sendBatch: (b) => sendBatch(ctx, b),
    onInterfaceEvent: (event, iface) => events.inc({ interface: iface, event }),
  }, ctx.log);
  // The kernel's PACKET_STATISTICS per interface, as running totals.
  const kernel = (name: string, help: string, field: 'packets' | 'drops' | 'freezes') => {
    const seen = new TotalsSeen();
    new client.Counter({
      name, help, labelNames: ['interface'], registers,
      collect() {
        for (const [iface, s] of live.stats()) {
          const delta = seen.growth(iface, s[field]);
          if (delta > 0) this.inc({ interface: iface }, delta);
        }
      },
    });
  };
  kernel('flowtap_capture_kernel_packets_total', 'Packets the kernel passed to the ring (PACKET_STATISTICS tp_packets)', 'packets');
  kernel('flowtap_capture_kernel_drops_total', 'Packets the kernel dropped because the ring was full (tp_drops)', 'drops');
  kernel('flowtap_capture_kernel_freezes_total', 'Times the ring froze waiting for user space (tp_freeze_q_cnt)', 'freezes');
  ctx.metrics.trackSize('ring_blocks_held', () => live.heldBlocks);
  ctx.metrics.trackSize('interfaces_open', () => live.openInterfaces.length);

  live.start();
  ctx.log.info('live capture started', { interfaces: live.openInterfaces });
  // Neither timer may keep a stopped capture alive (the open sockets and /metrics keep a running one).
  setInterval(() => {
    if (ctx.draining) return;
    try {
      live.rescan();
    } catch (err) {
      ctx.log.error('interface rescan failed', { error: (err as Error).message });
    }
  }, RESCAN_INTERVAL_MS).unref();
  // Ticks tell downstreams how far packet time has got (lib/watermark.ts): the newest packet
  // sent while packets flow; with no packets packet time stands still, so wall-clock time then
  // lets windows and timeouts move on.
  const tickMs = ctx.config.capture.tick_interval_ms;
  setInterval(() => {
    if (ctx.draining) return;
    const timeUs = live.idleMs() < tickMs ? sentUpToUs : Date.now() * 1000;
    if (timeUs > 0) void ctx.broadcastControl(flowtap.Control.Kind.TICK, timeUs);
  }, tickMs).unref();
  return live;
}

void runService({
  name: 'capture',
  async setup(ctx) {
    const { capture, transport } = ctx.config;
    const batch = new PacketBatch(transport.batch_size, capture.payload_cut);
    const decoder = new FrameDecoder();
    // A held fragment is not lost: it is counted as a drop only if its datagram is given up.
    ctx.metrics.trackDrops('decode_', () => {
      const { fragment_held: _held, ...drops } = decoder.drops;
      return drops;
    });
    ctx.metrics.trackSize('ip_datagrams_reassembling', () => decoder.reassembler.datagramsHeld);
    ctx.metrics.trackSize('ip_fragment_bytes_held', () => decoder.reassembler.bytesHeldNow);
    let reading: Promise<void> | undefined;
    let live: LiveCapture | undefined;
    let ebpf: EbpfCollector | undefined;
    const failStart = (err: unknown): never => {
      ctx.log.error((err as Error).message);
      process.exit(2);
    };
    return {
      async run() {
        if (capture.source === 'file') {
          reading = replayFile(ctx, decoder, batch).catch(failStart);
          await reading;
          if (ctx.replay || ctx.draining) return;
          ctx.log.info('capture file replayed; idle until stopped');
        } else {
          try {
            live = startLive(ctx, decoder, batch);
          } catch (err) {
            failStart(err);
          }
          ebpf = startEbpf(ctx);
        }
        await new Promise(() => undefined);
      },
      async stop() {
        if (reading) {
          // The file loop sees ctx.draining, stops reading and ends the stream itself.
          await reading;
          return;
        }
        await live?.drainAndClose();
        // close() delivers what is queued, then detaches in the background: END_OF_STREAM need not
        // wait for that (the process exits once it is done, as the kernel would make it wait at exit).
        void ebpf?.close();
        await stopProfiles();
        decoder.flush();
        await sendBatch(ctx, batch);
        await ctx.broadcastControl(flowtap.Control.Kind.END_OF_STREAM, Date.now() * 1000);
      },
    };
  },
});
