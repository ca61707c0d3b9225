// The capture service: frames from a capture file (replay) or from live interfaces, decoded
// into columnar MetaPacket batches for the flow service.
import fs from 'node:fs';
import { PacketBatch } from '../../lib/packet-batch';
import { flowtap } from '../../lib/proto';
import { runService, type ServiceContext } from '../../lib/service';
import { Kind } from '../../lib/transport';
import { openCaptureFile } from './capture-file';
import { FrameDecoder } from './decode';

const PROGRESS_INTERVAL_MS = 200;

/** Sends the batch to flow if it holds anything, and empties it. */
async function sendBatch(ctx: ServiceContext, batch: PacketBatch): Promise<void> {
  if (batch.count === 0) return;
  await ctx.send('flow', Kind.PACKET_BATCH, batch.encode(), batch.count);
  batch.reset();
}

async function replayFile(ctx: ServiceContext, decoder: FrameDecoder, batch: PacketBatch): Promise<void> {
  const path = ctx.config.capture.file;
  const reader = await openCaptureFile(path);
  ctx.metrics.trackDrops('file_', () => reader.drops);
  const totalBytes = fs.statSync(path).size;
  let lastTs = 0;
  let lastProgress = 0;
  // Bytes read, near enough for a progress bar: each frame plus a pcap record header.
  let consumed = 0;
  const onFrame = (buf: Buffer, off: number, capLen: number, origLen: number, ts: number, linkType: number) => {
    decoder.decode(batch, buf, off, capLen, origLen, ts, linkType);
    consumed += capLen + 16;
    if (ts > lastTs) lastTs = ts;
  };
  for (;;) {
    const n = await reader.readFrames(onFrame, batch.capacity - batch.count);
    ctx.metrics.recordsIn.inc({ kind: 'frame' }, n);
    if (n === 0) break;
    if (batch.full) await sendBatch(ctx, batch);
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

void runService({
  name: 'capture',
  async setup(ctx) {
    const { capture, transport } = ctx.config;
    const batch = new PacketBatch(transport.batch_size, capture.payload_cut);
    const decoder = new FrameDecoder();
    ctx.metrics.trackDrops('decode_', () => decoder.drops);
    return {
      async run() {
        if (capture.source === 'file') {
          try {
            await replayFile(ctx, decoder, batch);
          } catch (err) {
            ctx.log.error((err as Error).message);
            process.exit(2);
          }
          if (ctx.replay) return;
          ctx.log.info('capture file replayed; idle until stopped');
          await new Promise(() => undefined);
        }
        throw new Error('live capture is not available in this build: set capture.source to "file"');
      },
    };
  },
});
