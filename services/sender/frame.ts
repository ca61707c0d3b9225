// The wire format between a sender and a `flowtap collector` (docs/storage.md):
//
//   frame   = header (32 bytes, big-endian) + payload
//   header  = frame_size u32 (whole frame) | version u8 | message_type u8 (MessageKind) |
//             encoder u8 (0 none, 1 zstd) | reserved u8 (0) | agent_id u32 | epoch u32 |
//             seq u64 | record_count u32 | raw_size u32 (payload size before compression)
//   payload = record_count x (length u32 + one protobuf record: L4FlowLog, L7FlowLog, Document,
//             or for message_type 9 a ProfileBatch: one profile interval or a slice of its stacks)
//   ack     = 'FTAK' u32 | epoch u32 | seq u64: every frame of `epoch` up to `seq` is stored.
import { compress } from 'zstd-napi';
import { flowtap } from '../../lib/proto';
import { ProtoReader, ProtoWireError } from '../../lib/proto-wire';
import type { RecordType } from './columns';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const zstd = require('zstd-napi/binding') as { decompress(dst: Uint8Array, src: Uint8Array): number };

export const FRAME_VERSION = 1;
export const HEADER_BYTES = 32;
export const ACK_BYTES = 16;
export const ACK_MAGIC = 0x4654414b; // "FTAK"
export const MAX_FRAME_BYTES = 16 << 20;
export const MAX_RAW_BYTES = 64 << 20;

export enum Encoder { NONE = 0, ZSTD = 1 }

export const KIND_OF_TYPE: Record<RecordType, number> = {
  l4: flowtap.MessageKind.L4_LOG_BATCH,
  l7: flowtap.MessageKind.L7_LOG_BATCH,
  metrics: flowtap.MessageKind.DOCUMENT_BATCH,
};
/** Profiles travel whole: each record of a PROFILE_BATCH frame is a ProfileBatch message. */
export const PROFILE_KIND = flowtap.MessageKind.PROFILE_BATCH;
/** What a frame carries: records of one type, or profile intervals. */
export type FrameType = RecordType | 'profile';
export const TYPE_OF_KIND = new Map<number, FrameType>([
  ...(Object.entries(KIND_OF_TYPE) as Array<[RecordType, number]>).map(([t, k]): [number, FrameType] => [k, t]),
  [PROFILE_KIND, 'profile'],
]);

export interface FrameHeader {
  frameSize: number;
  version: number;
  kind: number;
  encoder: number;
  agentId: number;
  epoch: number;
  seq: number;
  recordCount: number;
  rawSize: number;
}

/**
 * The records of a batch message (L4LogBatch, L7LogBatch, DocumentBatch: `repeated X = 1`) as
 * views into its body, found by walking the protobuf framing without decoding the records.
 * Returns null when the body is not such a message.
 */
export function splitBatchBody(body: Uint8Array): Uint8Array[] | null {
  const out: Uint8Array[] = [];
  const rd = new ProtoReader().reset(body);
  try {
    while (rd.pos < rd.end) {
      if (rd.uint32() !== 0x0a || rd.hi !== 0) return null; // field 1, length-delimited
      const start = rd.delimited();
      out.push(body.subarray(start, rd.pos));
    }
  } catch (err) {
    if (err instanceof ProtoWireError) return null;
    throw err;
  }
  return out;
}

/** Builds one frame from encoded records. */
export function encodeFrame(
  kind: number, records: readonly Uint8Array[], agentId: number, epoch: number, seq: number, encoder: Encoder,
): Buffer {
  let rawSize = 0;
  for (const r of records) rawSize += 4 + r.length;
  const raw = Buffer.allocUnsafe(rawSize);
  let p = 0;
  for (const r of records) {
    raw.writeUInt32BE(r.length, p);
    raw.set(r, p + 4);
    p += 4 + r.length;
  }
  const payload = encoder === Encoder.ZSTD ? compress(raw, { compressionLevel: 3 }) : raw;
  const frame = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  frame.writeUInt32BE(frame.length, 0);
  frame[4] = FRAME_VERSION;
  frame[5] = kind;
  frame[6] = encoder;
  frame[7] = 0;
  frame.writeUInt32BE(agentId >>> 0, 8);
  frame.writeUInt32BE(epoch >>> 0, 12);
  frame.writeUInt32BE(Math.floor(seq / 2 ** 32), 16);
  frame.writeUInt32BE(seq >>> 0, 20);
  frame.writeUInt32BE(records.length, 24);
  frame.writeUInt32BE(rawSize, 28);
  frame.set(payload, HEADER_BYTES);
  return frame;
}

export function readHeader(buf: Uint8Array, at = 0): FrameHeader {
  const v = new DataView(buf.buffer, buf.byteOffset + at, HEADER_BYTES);
  return {
    frameSize: v.getUint32(0),
    version: v.getUint8(4),
    kind: v.getUint8(5),
    encoder: v.getUint8(6),
    agentId: v.getUint32(8),
    epoch: v.getUint32(12),
    seq: v.getUint32(16) * 2 ** 32 + v.getUint32(20),
    recordCount: v.getUint32(24),
    rawSize: v.getUint32(28),
  };
}

export function encodeAck(epoch: number, seq: number): Buffer {
  const b = Buffer.allocUnsafe(ACK_BYTES);
  b.writeUInt32BE(ACK_MAGIC, 0);
  b.writeUInt32BE(epoch >>> 0, 4);
  b.writeUInt32BE(Math.floor(seq / 2 ** 32), 8);
  b.writeUInt32BE(seq >>> 0, 12);
  return b;
}

export class FrameError extends Error {
  constructor(readonly reason: string, message: string) {
    super(message);
  }
}

export type DecodedFrame = { header: FrameHeader } & (
  | { type: RecordType; records: Array<flowtap.L4FlowLog | flowtap.L7FlowLog | flowtap.Document> }
  | { type: 'profile'; records: flowtap.ProfileBatch[] }
);

const DECODER_OF_TYPE: Record<FrameType, { decode(bytes: Uint8Array): unknown }> = {
  l4: flowtap.L4FlowLog, l7: flowtap.L7FlowLog, metrics: flowtap.Document, profile: flowtap.ProfileBatch,
};

/**
 * Checks and decodes one whole frame: version, type, encoder, sizes, and that every record
 * decodes. Throws FrameError with the drop reason.
 */
export function decodeFrame(frame: Uint8Array, maxRawBytes = MAX_RAW_BYTES): DecodedFrame {
  if (frame.length < HEADER_BYTES) throw new FrameError('frame_too_small', `frame of ${frame.length} bytes`);
  const header = readHeader(frame);
  if (header.frameSize !== frame.length) throw new FrameError('frame_size_mismatch', `header says ${header.frameSize}`);
  if (header.version !== FRAME_VERSION) throw new FrameError('unknown_version', `version ${header.version}`);
  const type = TYPE_OF_KIND.get(header.kind);
  if (!type) throw new FrameError('unknown_type', `message type ${header.kind}`);
  if (frame[7] !== 0) throw new FrameError('bad_reserved', 'reserved byte not 0');
  if (header.rawSize > maxRawBytes) throw new FrameError('raw_too_large', `raw size ${header.rawSize}`);
  const payload = frame.subarray(HEADER_BYTES);
  let raw: Uint8Array;
  if (header.encoder === Encoder.NONE) {
    raw = payload;
  } else if (header.encoder === Encoder.ZSTD) {
    // Decompress into exactly raw_size bytes: a frame that expands further fails, no bomb.
    raw = Buffer.allocUnsafe(header.rawSize);
    let n: number;
    try {
      n = zstd.decompress(raw, payload);
    } catch (err) {
      throw new FrameError('bad_compression', (err as Error).message);
    }
    if (n !== header.rawSize) throw new FrameError('bad_compression', `${n} bytes, header says ${header.rawSize}`);
  } else {
    throw new FrameError('unknown_encoder', `encoder ${header.encoder}`);
  }
  if (raw.length !== header.rawSize) throw new FrameError('raw_size_mismatch', `${raw.length} bytes, header says ${header.rawSize}`);
  const decoder = DECODER_OF_TYPE[type];
  const records: unknown[] = [];
  const view = new DataView(raw.buffer, raw.byteOffset, raw.length);
  let p = 0;
  while (p < raw.length) {
    if (p + 4 > raw.length) throw new FrameError('bad_record_length', 'record length cut');
    const len = view.getUint32(p);
    p += 4;
    if (p + len > raw.length) throw new FrameError('bad_record_length', `record of ${len} bytes past the end`);
    try {
      records.push(decoder.decode(raw.subarray(p, p + len)));
    } catch (err) {
      throw new FrameError('undecodable_record', (err as Error).message);
    }
    p += len;
  }
  if (records.length !== header.recordCount) {
    throw new FrameError('record_count_mismatch', `${records.length} records, header says ${header.recordCount}`);
  }
  // The decoder was chosen by type, so the records are of that type.
  return { header, type, records } as DecodedFrame;
}
