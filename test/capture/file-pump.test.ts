// The replay loop: batches never overflow, arrive in file order, and hold every decodable
// packet of the file (the count tshark gives for IP packets).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { PacketBatch } from '../../lib/packet-batch';
import { FrameDecoder } from '../../services/capture/decode';
import { pumpCaptureFile } from '../../services/capture/file-pump';
import { CORPUS } from './tshark-oracle';

test('pumpCaptureFile batches a whole file with back-pressure', async (t) => {
  const file = path.join(CORPUS, 'mixed/zeek/wikipedia.pcap');
  const ipFrames = execFileSync('tshark', ['-r', file, '-Y', 'ip or ipv6', '-T', 'fields', '-e', 'frame.number'],
    { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim().split('\n').length;
  const batch = new PacketBatch(16);
  const sizes: number[] = [];
  let lastTs = 0, ordered = true;
  const res = await pumpCaptureFile(file, new FrameDecoder(), batch, async (b) => {
    sizes.push(b.count);
    for (let i = 0; i < b.count; i++) { if (b.timestampUs[i] < lastTs) ordered = false; lastTs = b.timestampUs[i]; }
    await new Promise((r) => setTimeout(r, 1)); // a slow consumer
  });
  t.is(res.frames, 136);
  t.is(res.rows, ipFrames);
  t.is(sizes.reduce((a, b) => a + b, 0), ipFrames);
  t.true(sizes.slice(0, -1).every((s) => s === 16), sizes.join(','));
  t.is(res.batches, sizes.length);
  t.true(ordered);
});
