// Replays a capture file through the decoder into batches, awaiting the consumer between
// batches (back-pressure). This is the loop a capture service runs for `flowtap replay`.
import { PacketBatch } from '../../lib/packet-batch';
import { openCaptureFile, CaptureFileReader } from './capture-file';
import { FrameDecoder } from './decode';

export interface PumpResult {
  frames: number;
  rows: number;
  batches: number;
  /** The reader's counters (truncated_record, ...), for the service's drop metrics. */
  readerDrops: CaptureFileReader['drops'];
}

/**
 * Reads `path` to the end, decoding every frame into `batch` and calling `onBatch` with each
 * full batch and with the last partial one; the batch is reset after each call. Reassembly
 * state is flushed at the end (fragments still waiting count as fragment_unfinished). Throws
 * CaptureFileError when the file cannot be read at all.
 */
export async function pumpCaptureFile(path: string, decoder: FrameDecoder, batch: PacketBatch,
  onBatch: (batch: PacketBatch) => void | Promise<void>): Promise<PumpResult> {
  const reader = await openCaptureFile(path);
  let rows = 0, batches = 0;
  const onFrame = (buf: Buffer, off: number, capLen: number, origLen: number, ts: number, linkType: number) => {
    if (decoder.decode(batch, buf, off, capLen, origLen, ts, linkType)) rows++;
  };
  try {
    for (;;) {
      // A frame gives at most one row, so this many frames cannot overflow the batch.
      const n = await reader.readFrames(onFrame, batch.capacity - batch.count);
      if (batch.full || (n === 0 && batch.count > 0)) {
        await onBatch(batch);
        batches++;
        batch.reset();
      }
      if (n === 0) break;
    }
  } finally {
    await reader.close();
  }
  decoder.flush();
  return { frames: reader.framesRead, rows, batches, readerDrops: reader.drops };
}
