// The decoder on link types the corpus lacks (SLL2, raw IP, LOOP, SLL over IPv6), written at test
// time from corpus frames and checked against tshark on the written file; the live-capture entry
// with a kernel-stripped VLAN tag; payload cut; fragment reassembly limits.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PacketBatch } from '../../lib/packet-batch';
import { FrameDecoder } from '../../services/capture/decode';
import { CORPUS, tsharkFrames } from './tshark-oracle';
import { decodeFile, rowOf } from './decode-file';
import { compareWithTshark } from './compare';
import { Frame, pcapFile, readAllFrames, tmpFile } from './capture-writer';

const ETH_FILES = ['http1/zeek/methods.pcap', 'ipv6/arkime/v6-http.pcap', 'dns/deepflow/a-and-ns.pcap'].map((f) => path.join(CORPUS, f));

/** Ethernet frames (no VLAN) re-framed for another link type. */
async function reframe(make: (etherType: number, ipPacket: Buffer) => Buffer | undefined): Promise<Frame[]> {
  const out: Frame[] = [];
  for (const f of ETH_FILES) {
    for (const fr of await readAllFrames(f)) {
      const type = fr.data.readUInt16BE(12);
      if (type !== 0x0800 && type !== 0x86dd) continue;
      const data = make(type, fr.data.subarray(14));
      if (!data) continue;
      out.push({ data, origLen: fr.origLen - 14 + (data.length - (fr.data.length - 14)), timestampUs: fr.timestampUs, linkType: 0 });
    }
  }
  return out;
}

async function checkLinkType(t: import('ava').ExecutionContext, linkType: number,
  make: (etherType: number, ip: Buffer) => Buffer | undefined) {
  const frames = await reframe(make);
  const f = tmpFile(`lt${linkType}.pcap`);
  fs.writeFileSync(f, pcapFile(frames, linkType, true, false));
  const expected = tsharkFrames(f);
  const got = await decodeFile(f);
  t.is(got.frames, frames.length);
  t.true(got.rows.size >= frames.length - 2, `${got.rows.size} of ${frames.length} rows`);
  t.deepEqual(compareWithTshark(expected, got).slice(0, 10), []);
}

test('raw IP (101)', (t) => checkLinkType(t, 101, (_type, ip) => Buffer.from(ip)));

test('Linux cooked v1 (113) with IPv4 and IPv6', (t) => checkLinkType(t, 113, (type, ip) => {
  const h = Buffer.alloc(16);
  h.writeUInt16BE(4, 0); h.writeUInt16BE(1, 2); h.writeUInt16BE(6, 4); h.writeUInt16BE(type, 14);
  return Buffer.concat([h, ip]);
}));

test('Linux cooked v2 (276)', (t) => checkLinkType(t, 276, (type, ip) => {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(type, 0); h.writeUInt32BE(3, 4); h.writeUInt16BE(1, 8); h[10] = 0; h[11] = 6;
  return Buffer.concat([h, ip]);
}));

test('OpenBSD LOOP (108), family big-endian, AF_INET6 = 24', (t) => checkLinkType(t, 108, (type, ip) => {
  const h = Buffer.alloc(4);
  h.writeUInt32BE(type === 0x0800 ? 2 : 24, 0);
  return Buffer.concat([h, ip]);
}));

test('live capture: a kernel-stripped VLAN tag given as vlanTci decodes like the tagged frame', async (t) => {
  const frames = [
    ...await readAllFrames(path.join(CORPUS, 'tcp-anomalies/suricata-verify/tcp-rst-with-data.pcap')),
    ...await readAllFrames(path.join(CORPUS, 'vlan/arkime/twovlan.pcap')), // QinQ: the inner tag stays in the frame
  ];
  const tagged = new PacketBatch(64);
  const live = new PacketBatch(64);
  const dec = new FrameDecoder();
  let n = 0;
  for (const f of frames) {
    t.is(f.data.readUInt16BE(12), 0x8100);
    const tci = f.data.readUInt16BE(14);
    const stripped = Buffer.concat([f.data.subarray(0, 12), f.data.subarray(16)]);
    const a = dec.decode(tagged, f.data, 0, f.data.length, f.origLen, f.timestampUs, 1);
    const b = dec.decodeLive(live, stripped, 0, stripped.length, f.origLen - 4, f.timestampUs, 1, 7, tci);
    t.is(a, b);
    if (!a) continue;
    const ra = rowOf(tagged, tagged.count - 1, 0);
    const rb = rowOf(live, live.count - 1, 0);
    t.not(ra.vlan, 0);
    t.is(live.ifindex[live.count - 1], 7);
    t.deepEqual(rb, ra);
    n++;
  }
  t.is(n, frames.length);
});

test('payload is cut at the batch payloadCut, l4_payload_len stays the wire length', async (t) => {
  const frames = await readAllFrames(path.join(CORPUS, 'http1/zeek/post.pcap'));
  const batch = new PacketBatch(64, 16);
  const dec = new FrameDecoder();
  let cut = 0;
  for (const f of frames) {
    if (!dec.decode(batch, f.data, 0, f.data.length, f.origLen, f.timestampUs, 1)) continue;
    const i = batch.count - 1;
    t.is(batch.payloadCap[i], Math.min(16, batch.l4PayloadLen[i]));
    if (batch.l4PayloadLen[i] > 16) cut++;
  }
  t.true(cut > 0);
  t.true(batch.payload(batch.count - 1).length <= 16);
});

test('fragments: completed out of order, timed out in packet time, evicted when the table is full', async (t) => {
  const file = path.join(CORPUS, 'ip-fragments/deepflow/ip-fragment.pcap');
  const frames = await readAllFrames(file); // 6 datagrams of 3 fragments each (tshark: UDP on every 3rd frame)
  const run = (order: number[], dec: FrameDecoder, tsShift: (k: number) => number) => {
    const batch = new PacketBatch(64);
    for (const k of order) {
      const f = frames[k];
      dec.decode(batch, f.data, 0, f.data.length, f.origLen, f.timestampUs + tsShift(k), 1);
    }
    return batch;
  };
  // Reversed order within each datagram still completes, on the first fragment.
  const rev: number[] = [];
  for (let d = 0; d < 6; d++) rev.push(d * 3 + 2, d * 3 + 1, d * 3);
  const dec1 = new FrameDecoder();
  const b1 = run(rev, dec1, () => 0);
  t.is(b1.count, 6);
  t.is(b1.portSrc[0], 1000);
  t.is(b1.frameLen[0], frames[0].origLen + frames[1].origLen + frames[2].origLen);
  // The last fragment 31 s late: the first two expire when it comes; it waits alone until flushed.
  const dec2 = new FrameDecoder();
  const b2 = run([0, 1, 2], dec2, (k) => (k === 2 ? 31e6 : 0));
  t.is(b2.count, 0);
  t.is(dec2.drops.fragment_timeout, 2);
  t.is(dec2.reassembler.datagramsHeld, 1);
  dec2.flush();
  t.is(dec2.drops.fragment_unfinished, 1);
  t.is(dec2.reassembler.datagramsHeld, 0);
  // A table of one datagram: interleaving two datagrams evicts one of them. (The file reuses one
  // IP id for all its datagrams, so the second one gets another id here.)
  for (const k of [3, 4, 5]) { frames[k].data = Buffer.from(frames[k].data); frames[k].data.writeUInt16BE(0x1234, 14 + 4); }
  const dec3 = new FrameDecoder({ reassemblyLimits: { maxDatagrams: 1, maxBytes: 1 << 20, timeoutUs: 30e6 } });
  const b3 = run([0, 3, 1, 4, 2, 5], dec3, () => 0);
  t.true(b3.count < 2);
  t.true(dec3.drops.fragment_overflow > 0, JSON.stringify(dec3.drops));
  // Reassembly off: the first fragment gives ports, the others a portless row.
  const dec4 = new FrameDecoder({ reassemble: false });
  const b4 = run([0, 1, 2], dec4, () => 0);
  t.is(b4.count, 3);
  t.is(b4.portSrc[0], 1000);
  t.is(b4.portSrc[1], 0);
});

test('IPv6 fragments whose fragmentable part starts with destination options (tshark agrees)', async (t) => {
  // Ethernet + IPv6 + fragment header; payload = dest-opts(8) + UDP(8) + 100 bytes, in 2 fragments.
  const body = Buffer.alloc(8 + 8 + 100);
  body[0] = 17; body[1] = 0; body[2] = 1; body[3] = 4; // next UDP, len 0 (8 bytes), PadN of 4
  body.writeUInt16BE(5353, 8); body.writeUInt16BE(9999, 10); body.writeUInt16BE(108, 12);
  for (let k = 16; k < body.length; k++) body[k] = k;
  const frames: Frame[] = [];
  const cuts = [[0, 64], [64, body.length]];
  cuts.forEach(([a, b], k) => {
    const eth = Buffer.from('02000000000102000000000286dd', 'hex');
    const ip = Buffer.alloc(40);
    ip[0] = 0x60; ip.writeUInt16BE(8 + (b - a), 4); ip[6] = 44; ip[7] = 64;
    ip[8] = 0x20; ip[9] = 0x01; ip[23] = 1; ip[24] = 0x20; ip[25] = 0x01; ip[39] = 2;
    const frag = Buffer.alloc(8);
    frag[0] = 60; frag.writeUInt16BE(a | (k === 0 ? 1 : 0), 2); frag.writeUInt32BE(0xabcdef, 4);
    const data = Buffer.concat([eth, ip, frag, body.subarray(a, b)]);
    frames.push({ data, origLen: data.length, timestampUs: 1.7e15 + k, linkType: 1 });
  });
  const f = tmpFile('v6frag.pcap');
  fs.writeFileSync(f, pcapFile(frames, 1, true, false));
  const expected = tsharkFrames(f);
  t.is(expected[1].ip?.transport, 'udp');
  const got = await decodeFile(f);
  t.deepEqual(compareWithTshark(expected, got), []);
  const row = got.rows.get(2)!;
  t.is(row.srcPort, 5353);
  t.is(row.l4PayloadLen, 100);
  t.is(row.frameLen, frames[0].origLen + frames[1].origLen);
  t.true(row.payload.equals(body.subarray(16)));
});

test('decapsulate off: the outer packet is the row (tshark with the tunnel dissectors disabled)', async (t) => {
  const off = ['vxlan', 'geneve', 'gre'].flatMap((p) => ['--disable-protocol', p]);
  for (const name of ['tunnels/ndpi/vxlan.pcap', 'tunnels/zeek/geneve.pcap', 'tunnels/zeek/gre-sample.pcap', 'tunnels/deepflow/decapsulate_erspan1.pcap']) {
    const file = path.join(CORPUS, name);
    const expected = tsharkFrames(file, off);
    const got = await decodeFile(file, { decapsulate: false });
    t.is(got.decoder.decapsulated, 0);
    t.deepEqual(compareWithTshark(expected, got).slice(0, 10), [], name);
  }
});
