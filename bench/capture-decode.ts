// Decode speed: corpus frames held in memory, decoded over and over into a reused batch; and
// read+decode speed of a ~64 MB pcap written to a temp file from the same frames.
// Run: node dist/bench/capture-decode.js [seconds per case]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PacketBatch } from '../lib/packet-batch';
import { FrameDecoder } from '../services/capture/decode';
import { openCaptureFile } from '../services/capture/capture-file';

const CORPUS = path.resolve(__dirname, '../../../shared/corpus');
const seconds = Number(process.argv[2] ?? 2);

interface Held { buf: Buffer; off: number; len: number; orig: number; ts: number; lt: number }

async function load(file: string): Promise<{ frames: Held[]; bytes: Buffer }> {
  const reader = await openCaptureFile(file);
  const parts: Buffer[] = [];
  const frames: Held[] = [];
  let at = 0;
  while (await reader.readFrames((b, o, cap, orig, ts, lt) => {
    parts.push(Buffer.from(b.subarray(o, o + cap)));
    frames.push({ buf: undefined as unknown as Buffer, off: at, len: cap, orig, ts, lt });
    at += cap;
  }) > 0);
  await reader.close();
  const bytes = Buffer.concat(parts);
  for (const f of frames) f.buf = bytes;
  return { frames, bytes };
}

async function decodeOnly(name: string): Promise<void> {
  const { frames } = await load(path.join(CORPUS, name));
  const dec = new FrameDecoder();
  const batch = new PacketBatch(1024, 256);
  let n = 0;
  const t0 = process.hrtime.bigint();
  const until = t0 + BigInt(seconds * 1e9);
  let now = t0;
  while (now < until) {
    for (let k = 0; k < frames.length; k++) {
      const f = frames[k];
      if (batch.full) batch.reset();
      dec.decode(batch, f.buf, f.off, f.len, f.orig, f.ts, f.lt);
    }
    n += frames.length;
    now = process.hrtime.bigint();
  }
  const s = Number(now - t0) / 1e9;
  console.log(`decode ${name}: ${(n / s / 1e6).toFixed(2)} M frames/s (${frames.length} frames looped, ${dec.decoded} rows)`);
}

async function readAndDecode(name: string): Promise<void> {
  const src = fs.readFileSync(path.join(CORPUS, name));
  const body = src.subarray(24);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-bench-'));
  const file = path.join(dir, 'big.pcap');
  const fd = fs.openSync(file, 'w');
  fs.writeSync(fd, src.subarray(0, 24));
  let size = 24;
  while (size < 64 * 1024 * 1024) { fs.writeSync(fd, body); size += body.length; }
  fs.closeSync(fd);
  const dec = new FrameDecoder();
  const batch = new PacketBatch(1024, 256);
  const t0 = process.hrtime.bigint();
  const reader = await openCaptureFile(file);
  let n = 0;
  const onFrame = (b: Buffer, o: number, cap: number, orig: number, ts: number, lt: number) => {
    if (batch.full) batch.reset();
    dec.decode(batch, b, o, cap, orig, ts, lt);
  };
  for (let k; (k = await reader.readFrames(onFrame, 1024)) > 0;) n += k;
  await reader.close();
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  fs.rmSync(dir, { recursive: true });
  console.log(`read+decode ${name} x${Math.round(size / src.length)} (${(size / 1048576).toFixed(0)} MB): ` +
    `${(n / s / 1e6).toFixed(2)} M frames/s, ${(size / s / 1048576).toFixed(0)} MB/s`);
}

async function main(): Promise<void> {
  await decodeOnly('http1/zeek/methods.pcap');
  await decodeOnly('tls/ndpi/443-firefox.pcap');
  await decodeOnly('tunnels/deepflow/decapsulate_erspan1.pcap');
  await decodeOnly('tunnels/ndpi/vxlan.pcap');
  await decodeOnly('memcached/deepflow/memcached-userdata.pcap');
  await readAndDecode('memcached/deepflow/memcached-userdata.pcap');
  await readAndDecode('http1/zeek/methods.pcap');
}
main().catch((e) => { console.error(e); process.exit(1); });
