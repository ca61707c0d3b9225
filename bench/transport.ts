// How fast MetaPackets cross a process boundary, for two batch encodings:
//   rows:    one protobuf message per packet, repeated inside a batch message (decoded to objects)
//   columns: the PacketBatch message, one `bytes` field per column (decoded into typed arrays)
// A real second process PULLs and decodes every batch over ZeroMQ IPC; the figure is packets
// decoded per second by the receiver, end to end.
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import protobuf from 'protobufjs';
import * as zmq from 'zeromq';
import { PacketBatch } from '../lib/packet-batch';

const ROW_SCHEMA = `
syntax = "proto3";
message MetaPacketRow {
  double timestamp_us = 1; bytes ip_src = 2; bytes ip_dst = 3; uint32 port_src = 4; uint32 port_dst = 5;
  uint32 protocol = 6; uint32 ip_version = 7; uint32 tcp_flags = 8; uint32 tcp_seq = 9; uint32 tcp_ack = 10;
  uint32 tcp_window = 11; uint32 vlan = 12; uint32 frame_len = 13; uint32 l3_len = 14; uint32 l4_payload_len = 15;
  bytes payload = 16;
}
message RowBatch { repeated MetaPacketRow rows = 1; }`;

const rowRoot = protobuf.parse(ROW_SCHEMA, { keepCase: true }).root;
export const RowBatch = rowRoot.lookupType('RowBatch');

export type Encoding = 'rows' | 'columns';
const BATCH = 1024;
const PAYLOAD = 64; // a typical small request head

/** A batch of plausible packets: many flows, small payloads. */
export function sampleBatch(seed = 1): PacketBatch {
  const b = new PacketBatch(BATCH);
  const payload = Buffer.alloc(PAYLOAD, 0x41);
  const src = Buffer.from([10, 0, 0, 1]);
  const dst = Buffer.from([10, 0, 1, 1]);
  for (let k = 0; k < BATCH; k++) {
    const i = b.begin();
    b.timestampUs[i] = 1.7e15 + k * 10;
    src[3] = (seed + k) & 0xff;
    PacketBatch.setIpv4(b.ipSrc, i, src, 0);
    PacketBatch.setIpv4(b.ipDst, i, dst, 0);
    b.portSrc[i] = 30000 + (k % 20000);
    b.portDst[i] = 80;
    b.protocol[i] = 6;
    b.ipVersion[i] = 4;
    b.tcpFlags[i] = 0x18;
    b.tcpSeq[i] = k * 1000;
    b.tcpAck[i] = k * 7;
    b.tcpWindow[i] = 512;
    b.frameLen[i] = 54 + PAYLOAD;
    b.l3Len[i] = 40 + PAYLOAD;
    b.l4PayloadLen[i] = PAYLOAD;
    b.setPayload(i, payload, 0, PAYLOAD);
    b.commit();
  }
  return b;
}

export function encodeRows(b: PacketBatch): Uint8Array {
  const rows = [];
  for (let i = 0; i < b.count; i++) {
    rows.push({
      timestamp_us: b.timestampUs[i], ip_src: b.ipSrc.subarray(i * 16, i * 16 + 16), ip_dst: b.ipDst.subarray(i * 16, i * 16 + 16),
      port_src: b.portSrc[i], port_dst: b.portDst[i], protocol: b.protocol[i], ip_version: b.ipVersion[i],
      tcp_flags: b.tcpFlags[i], tcp_seq: b.tcpSeq[i], tcp_ack: b.tcpAck[i], tcp_window: b.tcpWindow[i], vlan: b.vlan[i],
      frame_len: b.frameLen[i], l3_len: b.l3Len[i], l4_payload_len: b.l4PayloadLen[i], payload: b.payload(i),
    });
  }
  return RowBatch.encode(RowBatch.fromObject({ rows })).finish();
}

/** Receiver side: decode every batch, touch every packet, report packets and seconds. */
async function receive(endpoint: string, encoding: Encoding, expected: number): Promise<void> {
  const pull = new zmq.Pull({ receiveHighWaterMark: 1000 });
  await pull.bind(endpoint);
  process.send!({ ready: true });
  const batch = new PacketBatch(BATCH);
  let packets = 0;
  let checksum = 0;
  let start = 0n;
  for await (const [body] of pull) {
    if (start === 0n) start = process.hrtime.bigint();
    if (encoding === 'columns') {
      batch.decode(body);
      for (let i = 0; i < batch.count; i++) checksum += batch.portSrc[i] + batch.frameLen[i];
      packets += batch.count;
    } else {
      const msg = RowBatch.decode(body) as unknown as { rows: Array<{ port_src: number; frame_len: number }> };
      for (const r of msg.rows) checksum += r.port_src + r.frame_len;
      packets += msg.rows.length;
    }
    if (packets >= expected) break;
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  process.send!({ packets, seconds, checksum });
  pull.close();
}

export async function measureTransport(encoding: Encoding, packets: number): Promise<{ packetsPerSecond: number; bytesPerPacket: number }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-bench-'));
  const endpoint = `ipc://${dir}/bench.sock`;
  const child = fork(__filename, ['receive', endpoint, encoding, String(packets)]);
  await new Promise<void>((resolve) => child.once('message', () => resolve()));
  const push = new zmq.Push({ sendHighWaterMark: 1000, linger: -1 });
  push.connect(endpoint);
  const batches = [sampleBatch(1), sampleBatch(2), sampleBatch(3), sampleBatch(4)];
  const result = new Promise<{ packets: number; seconds: number }>((resolve) => child.once('message', resolve as never));
  let bytes = 0;
  for (let sent = 0, k = 0; sent < packets; sent += BATCH, k++) {
    // Encoding is part of the cost: the sender encodes each batch as capture would.
    const body = encoding === 'columns' ? batches[k & 3].encode() : encodeRows(batches[k & 3]);
    bytes += body.length;
    await push.send(body);
  }
  const r = await result;
  push.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return { packetsPerSecond: r.packets / r.seconds, bytesPerPacket: bytes / packets };
}

if (require.main === module && process.argv[2] === 'receive') {
  void receive(process.argv[3], process.argv[4] as Encoding, Number(process.argv[5]));
}
