// Bad input never throws out of the decoder: random frames and thousands of seeded mutations of
// real corpus frames (tunnels, fragments, VLAN, IPv6, loopback, cooked) under every link type.
// Every frame is a row or a counted drop, rows stay inside their bounds, reassembly memory stays
// bounded, and a frame decodes the same whatever bytes follow its captured end in the buffer.
import test from 'ava';
import * as path from 'node:path';
import { PacketBatch } from '../../lib/packet-batch';
import { FrameDecoder } from '../../services/capture/decode';
import { CORPUS } from './tshark-oracle';
import { Frame, readAllFrames } from './capture-writer';
import { rowOf } from './decode-file';

const SOURCES = [
  'tunnels/deepflow/decapsulate_erspan1.pcap', 'tunnels/ndpi/vxlan.pcap', 'tunnels/zeek/geneve.pcap',
  'tunnels/zeek/gre-sample.pcap', 'tunnels/deepflow/vmware-gre-teb.pcap', 'tunnels/deepflow/ipip.pcap',
  'tunnels/deepflow/ip6-vxlan.pcap', 'mixed/tcpreplay/test.pcap', 'ip-fragments/ndpi/dns_fragmented.pcap',
  'ip-fragments/suricata-verify/frag-eth-vlan-ipv6-tcp.pcap', 'ip-fragments/zeek/fragmented-4.pcap',
  'vlan/arkime/twovlan.pcap', 'ipv6/arkime/v6-http.pcap', 'redis/zeek/stream.pcap', 'http2/ndpi/http2.pcapng',
].map((f) => path.join(CORPUS, f));

const LINK_TYPES = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147];
const PER_FRAME_DROPS = ['unsupported_link_type', 'truncated_l2', 'non_ip', 'truncated_ip', 'bad_ip_header',
  'truncated_l4', 'bad_tcp_header', 'fragment_held', 'fragment_bad', 'batch_full'] as const;

function prng(seed: number): () => number {
  // mulberry32
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

async function pool(): Promise<Frame[]> {
  const all: Frame[] = [];
  for (const f of SOURCES) all.push(...await readAllFrames(f));
  return all;
}

function mutate(f: Frame, rnd: () => number): { data: Buffer; origLen: number; linkType: number } {
  const data = Buffer.from(f.data);
  const kind = Math.floor(rnd() * 5);
  let origLen = f.origLen;
  let linkType = f.linkType;
  if (kind === 0) {
    for (let k = 1 + Math.floor(rnd() * 8); k > 0; k--) data[Math.floor(rnd() * data.length)] = Math.floor(rnd() * 256);
  } else if (kind === 1) {
    // A length-like field anywhere in the first 80 bytes gets an extreme value.
    const at = Math.floor(rnd() * Math.min(80, Math.max(1, data.length - 1)));
    if (at + 1 < data.length) data.writeUInt16BE([0, 1, 0xffff, 0x8000, 7, 20, 40][Math.floor(rnd() * 7)], at);
  } else if (kind === 2) {
    return { data: data.subarray(0, Math.floor(rnd() * data.length)), origLen, linkType };
  } else if (kind === 3) {
    origLen = Math.floor(rnd() * 3) === 0 ? 0 : Math.floor(rnd() * 70000);
  } else {
    linkType = LINK_TYPES[Math.floor(rnd() * LINK_TYPES.length)];
  }
  return { data, origLen, linkType };
}

test('random and mutated frames: no exception, every frame a row or a counted drop, rows in bounds', async (t) => {
  const frames = await pool();
  t.true(frames.length > 1000);
  const rnd = prng(20261124);
  const limits = { maxDatagrams: 16, maxBytes: 64 * 1024, timeoutUs: 30e6 };
  const dec = new FrameDecoder({ reassemblyLimits: limits });
  const batch = new PacketBatch(256, 128);
  let rows = 0;
  const N = 30000;
  for (let n = 0; n < N; n++) {
    if (batch.full) batch.reset();
    let data: Buffer, origLen: number, linkType: number;
    if (n % 5 === 0) {
      data = Buffer.from(new Uint8Array(Math.floor(rnd() * 200)).map(() => Math.floor(rnd() * 256)));
      origLen = data.length;
      linkType = LINK_TYPES[Math.floor(rnd() * LINK_TYPES.length)];
    } else {
      ({ data, origLen, linkType } = mutate(frames[Math.floor(rnd() * frames.length)], rnd));
    }
    const ts = 1.7e15 + n * 1000;
    if (dec.decode(batch, data, 0, data.length, origLen, ts, linkType)) {
      rows++;
      const i = batch.count - 1;
      t.true(batch.ipVersion[i] === 4 || batch.ipVersion[i] === 6);
      t.true(batch.payloadCap[i] <= 128 && batch.payloadOffset[i] + batch.payloadCap[i] <= batch.payloadUsed);
      t.true(batch.payloadCap[i] <= batch.l4PayloadLen[i]);
    }
    t.true(dec.reassembler.datagramsHeld <= limits.maxDatagrams);
    t.true(dec.reassembler.bytesHeldNow <= limits.maxBytes);
  }
  let dropped = 0;
  for (const k of PER_FRAME_DROPS) dropped += dec.drops[k];
  t.is(rows + dropped, N, JSON.stringify(dec.drops));
  t.true(rows > N / 10, `${rows} rows`);
  t.log(`${rows} rows of ${N}`, JSON.stringify(dec.drops));
  for (const k of ['truncated_l2', 'non_ip', 'truncated_ip', 'bad_ip_header', 'truncated_l4', 'unsupported_link_type'] as const) {
    t.true(dec.drops[k] > 0, `no ${k} drop in ${JSON.stringify(dec.drops)}`);
  }
});

test('a frame decodes the same whatever follows its captured end in the buffer', async (t) => {
  const frames = await pool();
  const rnd = prng(7);
  const alone = new PacketBatch(8, 256);
  const embedded = new PacketBatch(8, 256);
  const decA = new FrameDecoder({ reassemble: false });
  const decB = new FrameDecoder({ reassemble: false });
  let compared = 0;
  for (let n = 0; n < 5000; n++) {
    const f = frames[Math.floor(rnd() * frames.length)];
    const cut = Math.floor(rnd() * f.data.length) + 1;
    const data = Buffer.from(f.data.subarray(0, cut));
    const junk = Buffer.from(new Uint8Array(64).map(() => Math.floor(rnd() * 256)));
    const host = Buffer.concat([junk, data, junk]);
    alone.reset(); embedded.reset();
    const a = decA.decode(alone, data, 0, data.length, f.origLen, f.timestampUs, f.linkType);
    const b = decB.decode(embedded, host, 64, data.length, f.origLen, f.timestampUs, f.linkType);
    t.is(a, b);
    if (a) { t.deepEqual(rowOf(embedded, 0, 0), rowOf(alone, 0, 0)); compared++; }
  }
  t.true(compared > 1000, `${compared}`);
  t.deepEqual(decA.drops, decB.drops);
});

test('frame bounds outside the buffer, NaN or negative lengths, a full batch: counted, not thrown', (t) => {
  const dec = new FrameDecoder();
  const batch = new PacketBatch(1);
  const buf = Buffer.alloc(100, 0x45);
  t.false(dec.decode(batch, buf, -5, 50, 50, 0, 1));
  t.false(dec.decode(batch, buf, 500, 50, 50, 0, 1));
  t.false(dec.decode(batch, buf, 90, 50, 50, 0, 101));
  t.false(dec.decode(batch, buf, 10, NaN, 50, 0, 101));
  t.false(dec.decode(batch, buf, 10, -3, -3, 0, 101));
  t.is(dec.drops.truncated_l2 + dec.drops.truncated_ip, 5);
  // A minimal IPv4/UDP packet fills the one-row batch; the next call reports batch_full.
  const udp = Buffer.from('450000200001000040110000c0a80001c0a80002303930390000000c0000000000000000', 'hex');
  udp.writeUInt16BE(28, 2);
  udp.writeUInt16BE(8, 24);
  t.true(dec.decode(batch, udp, 0, 28, 28, 5, 101));
  t.is(batch.portSrc[0], 12345);
  t.false(dec.decode(batch, udp, 0, 28, 28, 6, 101));
  t.is(dec.drops.batch_full, 1);
});
