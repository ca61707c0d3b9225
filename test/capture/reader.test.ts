// The capture-file reader on the format variants the corpus lacks, written at test time from
// corpus frames and checked against tshark reading the same file: gzip, nanosecond and
// big-endian pcap, big- and little-endian pcapng with several interfaces of different link
// types and timestamp resolutions, and a 100 MB file read in bounded memory.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { CORPUS, tsharkFrames } from './tshark-oracle';
import { decodeFile } from './decode-file';
import { compareWithTshark } from './compare';
import { Frame, pcapFile, pcapngFile, readAllFrames, tmpFile } from './capture-writer';
import { openCaptureFile } from '../../services/capture/capture-file';

const HTTP = path.join(CORPUS, 'http1/zeek/methods.pcap');
const PCAPNG = path.join(CORPUS, 'redis/zeek/django-cloud.pcapng');
const LOOPBACK = path.join(CORPUS, 'redis/zeek/pubsub.pcap');

async function matchesTshark(t: import('ava').ExecutionContext, file: string, minRows: number) {
  const expected = tsharkFrames(file);
  const got = await decodeFile(file);
  t.is(got.frames, expected.length, 'frame count');
  t.true(got.rows.size >= minRows, `${got.rows.size} rows`);
  t.deepEqual(compareWithTshark(expected, got).slice(0, 10), []);
}

test('gzip pcap and gzip pcapng are detected by magic (not by name) and read like the originals', async (t) => {
  for (const src of [HTTP, PCAPNG]) {
    const gz = tmpFile('no-gz-suffix.cap');
    fs.writeFileSync(gz, zlib.gzipSync(fs.readFileSync(src)));
    const reader = await openCaptureFile(gz);
    t.true(reader.compressed);
    await reader.close();
    const a = await readAllFrames(src);
    const b = await readAllFrames(gz);
    t.is(b.length, a.length);
    t.deepEqual(b.map((f) => f.timestampUs), a.map((f) => f.timestampUs));
    t.true(b.every((f, k) => f.data.equals(a[k].data) && f.origLen === a[k].origLen));
    await matchesTshark(t, gz, a.length - 5);
  }
});

test('nanosecond pcap (editcap-free: written here) gives timestamps floored to µs as tshark', async (t) => {
  const frames = await readAllFrames(HTTP);
  for (const le of [true, false]) {
    const f = tmpFile(`ns-${le ? 'le' : 'be'}.pcap`);
    fs.writeFileSync(f, pcapFile(frames, 1, le, true));
    await matchesTshark(t, f, frames.length);
  }
});

test('big-endian µs pcap', async (t) => {
  const frames = await readAllFrames(LOOPBACK);
  const f = tmpFile('be.pcap');
  fs.writeFileSync(f, pcapFile(frames, 0, false, false));
  await matchesTshark(t, f, frames.length);
});

test('pcapng, both byte orders, 3 interfaces with their own link type and if_tsresol, unknown blocks skipped', async (t) => {
  const eth = await readAllFrames(HTTP);
  const loop = await readAllFrames(LOOPBACK);
  // Interleave: even frames Ethernet on interfaces 0 (µs) and 2 (ns), odd ones NULL on interface 1 (2^-20 s).
  const frames: Frame[] = [];
  const ifs: number[] = [];
  for (let k = 0; k < 100; k++) {
    if (k % 2 === 1) { frames.push(loop[k % loop.length]); ifs.push(1); }
    else { frames.push(eth[k]); ifs.push(k % 4 === 0 ? 0 : 2); }
  }
  for (const le of [true, false]) {
    const f = tmpFile(`multi-${le ? 'le' : 'be'}.pcapng`);
    fs.writeFileSync(f, pcapngFile(frames, [{ linkType: 1 }, { linkType: 0, tsresol: 0x80 | 20 }, { linkType: 1, tsresol: 9 }],
      (k) => ifs[k], le));
    const back = await readAllFrames(f);
    t.deepEqual(back.map((x) => x.linkType), ifs.map((i) => (i === 1 ? 0 : 1)));
    await matchesTshark(t, f, 100);
  }
});

test('pcapng simple packet blocks take the previous packet time', async (t) => {
  const eth = (await readAllFrames(HTTP)).slice(0, 40);
  const f = tmpFile('spb.pcapng');
  fs.writeFileSync(f, pcapngFile(eth, [{ linkType: 1 }], () => 0, true, 5));
  const back = await readAllFrames(f);
  t.is(back.length, eth.length);
  t.is(Number(require('node:child_process').execFileSync('tshark', ['-r', f, '-T', 'fields', '-e', 'frame.number'],
    { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim().split('\n').length), eth.length);
  back.forEach((x, k) => {
    t.true(x.data.equals(eth[k].data));
    t.is(x.timestampUs, k % 5 === 0 && k > 0 ? eth[k - 1].timestampUs : eth[k].timestampUs);
  });
});

test('a 100 MB pcap streams in bounded memory', async (t) => {
  const frames = await readAllFrames(HTTP);
  const one = pcapFile(frames, 1, true, false);
  const body = one.subarray(24);
  const f = tmpFile('big.pcap');
  const fd = fs.openSync(f, 'w');
  fs.writeSync(fd, one.subarray(0, 24));
  let copies = 0;
  while (copies * body.length < 100 * 1024 * 1024) { fs.writeSync(fd, body); copies++; }
  fs.closeSync(fd);
  t.true(fs.statSync(f).size > 100 * 1024 * 1024);
  const rssBefore = process.memoryUsage().rss;
  const reader = await openCaptureFile(f);
  let n = 0, bytes = 0, maxRss = 0;
  while (await reader.readFrames((_b, _o, cap) => { n++; bytes += cap; }, 4096) > 0) {
    maxRss = Math.max(maxRss, process.memoryUsage().rss);
  }
  await reader.close();
  fs.rmSync(path.dirname(f), { recursive: true });
  t.is(n, copies * frames.length);
  t.is(bytes, copies * frames.reduce((s, x) => s + x.data.length, 0));
  t.true(maxRss - rssBefore < 48 * 1024 * 1024, `rss grew by ${(maxRss - rssBefore) >> 20} MB`);
});
