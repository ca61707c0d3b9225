// Reads a capture with the reader under test and decodes every frame, remembering which frame
// each row came from, so that rows can be matched with tshark's frame numbers. Rows are read
// after the trip the flow process sees (encode, then decode into another batch), and every
// batch's encoding is checked against protobufjs's for the same message.
import { formatIp, PacketBatch } from '../../lib/packet-batch';
import { flowtap } from '../../lib/proto';
import { openCaptureFile } from '../../services/capture/capture-file';
import { FrameDecoder, FrameDecoderOptions } from '../../services/capture/decode';

export interface DecodedRow {
  frame: number;
  timestampUs: number;
  frameLen: number;
  ipVersion: number;
  src: string;
  dst: string;
  protocol: number;
  srcPort: number;
  dstPort: number;
  tcpFlags: number;
  tcpSeq: number;
  tcpAck: number;
  tcpWindow: number;
  tcpWscale: number;
  l3Len: number;
  l4PayloadLen: number;
  payload: Buffer;
  vlan: number;
  tunnelType: number;
  tunnelId: number;
  icmpTypeCode: number;
}

export interface DecodedFile {
  frames: number;
  /** Row by 1-based frame number (at most one row per frame). */
  rows: Map<number, DecodedRow>;
  decoder: FrameDecoder;
  readerDrops: Record<string, number>;
}

export async function decodeFile(path: string, opts: FrameDecoderOptions = {}): Promise<DecodedFile> {
  const reader = await openCaptureFile(path);
  const decoder = new FrameDecoder(opts);
  const batch = new PacketBatch(64, 256);
  const received = new PacketBatch(64, 256);
  /** Frame number of each row in `batch`. */
  const rowFrames: number[] = [];
  const rows = new Map<number, DecodedRow>();
  const send = () => {
    if (batch.count === 0) return;
    const body = batch.encode();
    const reference = flowtap.PacketBatch.encode(batch.toMessage()).finish();
    if (!Buffer.from(reference).equals(body)) throw new Error(`${path}: PacketBatch encoding differs from protobufjs's`);
    received.decode(body);
    for (let i = 0; i < received.count; i++) rows.set(rowFrames[i], rowOf(received, i, rowFrames[i]));
    rowFrames.length = 0;
    batch.reset();
  };
  let frames = 0;
  try {
    for (;;) {
      const n = await reader.readFrames((buf, off, capLen, origLen, ts, linkType) => {
        frames++;
        if (batch.full) send();
        if (decoder.decode(batch, buf, off, capLen, origLen, ts, linkType)) rowFrames.push(frames);
      }, 500);
      if (n === 0) break;
    }
    // Reassembly may still be holding fragments: their frames give no row.
    send();
  } finally {
    await reader.close();
  }
  return { frames, rows, decoder, readerDrops: { ...reader.drops } };
}

export function rowOf(b: PacketBatch, i: number, frame: number): DecodedRow {
  return {
    frame,
    timestampUs: b.timestampUs[i],
    frameLen: b.frameLen[i],
    ipVersion: b.ipVersion[i],
    src: formatIp(b.ipSrc, i * 16),
    dst: formatIp(b.ipDst, i * 16),
    protocol: b.protocol[i],
    srcPort: b.portSrc[i],
    dstPort: b.portDst[i],
    tcpFlags: b.tcpFlags[i],
    tcpSeq: b.tcpSeq[i],
    tcpAck: b.tcpAck[i],
    tcpWindow: b.tcpWindow[i],
    tcpWscale: b.tcpWscale[i],
    l3Len: b.l3Len[i],
    l4PayloadLen: b.l4PayloadLen[i],
    payload: Buffer.from(b.payload(i)),
    vlan: b.vlan[i],
    tunnelType: b.tunnelType[i],
    tunnelId: b.tunnelId[i],
    icmpTypeCode: b.icmpTypeCode[i],
  };
}
