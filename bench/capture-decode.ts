// Decode speed: corpus frames held in memory, decoded over and over into a reused batch; and
// read+decode speed of a ~64 MB pcap written to a temp file from the same frames; and the CPU
// time of the capture service's replay loop (read, decode, encode PacketBatch) and of the flow
// service's PacketBatch decode on the generated 1 M-packet capture that `replay` uses.
// Run: node dist/bench/capture-decode.js [seconds per case]
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { PacketBatch } from '../lib/packet-batch';
import { FrameDecoder } from '../services/capture/decode';
import { openCaptureFile } from '../services/capture/capture-file';
import { writeSyntheticCapture } from './gen-capture';

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

function cpuSeconds(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1e6;
}

/**
 * The capture service's replay loop without the sockets: read, decode into batches of 1024 with
 * the default 1024-byte payload cut, encode each batch; then the flow service's decode of the
 * same bodies. CPU time (user + system) of this process, per pass over the file.
 */
async function replayLoop(packets: number, passes: number): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-bench-'));
  try {
    const file = path.join(dir, 'synthetic.pcap');
    const gen = writeSyntheticCapture(file, packets);
    for (let pass = 1; pass <= passes; pass++) {
      const dec = new FrameDecoder();
      const batch = new PacketBatch(1024, 1024);
      const received = new PacketBatch(1024, 1024);
      const bodies: Uint8Array[] = [];
      const t0 = process.hrtime.bigint();
      const c0 = process.cpuUsage();
      const reader = await openCaptureFile(file);
      const onFrame = (b: Buffer, o: number, cap: number, orig: number, ts: number, lt: number) => {
        dec.decode(batch, b, o, cap, orig, ts, lt);
      };
      for (;;) {
        const n = await reader.readFrames(onFrame, batch.capacity - batch.count);
        if (batch.full || (n === 0 && batch.count > 0)) {
          bodies.push(batch.encode());
          batch.reset();
        }
        if (n === 0) break;
      }
      await reader.close();
      const captureCpu = cpuSeconds(c0);
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const c1 = process.cpuUsage();
      let rows = 0;
      for (const body of bodies) { received.decode(body); rows += received.count; }
      const flowCpu = cpuSeconds(c1);
      if (rows !== dec.decoded) throw new Error(`decoded ${rows} rows from the bodies, ${dec.decoded} encoded`);
      console.log(`replay loop pass ${pass}, ${gen.packets} packets: read+decode+encode ${captureCpu.toFixed(3)} CPU-s ` +
        `(${wall.toFixed(3)} s wall), flow-side decode ${flowCpu.toFixed(3)} CPU-s, ${bodies.length} batches`);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  await decodeOnly('http1/zeek/methods.pcap');
  await decodeOnly('tls/ndpi/443-firefox.pcap');
  await decodeOnly('tunnels/deepflow/decapsulate_erspan1.pcap');
  await decodeOnly('tunnels/ndpi/vxlan.pcap');
  await decodeOnly('memcached/deepflow/memcached-userdata.pcap');
  await readAndDecode('memcached/deepflow/memcached-userdata.pcap');
  await readAndDecode('http1/zeek/methods.pcap');
  await replayLoop(1_000_000, 3);
}
main().catch((e) => { console.error(e); process.exit(1); });
