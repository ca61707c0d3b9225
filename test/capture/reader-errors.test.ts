// Files that are not readable captures throw CaptureFileError naming the file and the reason;
// damage after good frames is counted, not thrown.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { CORPUS } from './tshark-oracle';
import { tmpFile } from './capture-writer';
import { CaptureFileError, openCaptureFile } from '../../services/capture/capture-file';

const HTTP = path.join(CORPUS, 'http1/zeek/get.pcap');
const NG = path.join(CORPUS, 'mysql/ndpi/mysql.pcapng');

async function readAll(file: string): Promise<{ frames: number; drops: Record<string, number> }> {
  const r = await openCaptureFile(file);
  let frames = 0;
  try {
    while (await r.readFrames(() => { frames++; }, 100) > 0);
  } finally {
    await r.close();
  }
  return { frames, drops: { ...r.drops } };
}

async function failsWith(t: import('ava').ExecutionContext, file: string, re: RegExp) {
  const err = await t.throwsAsync(readAll(file), { instanceOf: CaptureFileError });
  t.regex(err!.message, re);
  t.true(err!.message.startsWith(file), err!.message);
}

function write(name: string, data: Buffer): string {
  const f = tmpFile(name);
  fs.writeFileSync(f, data);
  return f;
}

test('missing file, directory, empty file', async (t) => {
  await failsWith(t, '/nonexistent/x.pcap', /cannot open: no such file/);
  await failsWith(t, path.dirname(HTTP), /is a directory|cannot read/);
  await failsWith(t, write('empty.pcap', Buffer.alloc(0)), /empty file/);
  await failsWith(t, write('empty.gz', zlib.gzipSync(Buffer.alloc(0))), /empty file \(after gzip\)/);
});

test('unreadable file (mode 000; root reads anyway, so only checked when not root)', async (t) => {
  const f = write('noperm.pcap', fs.readFileSync(HTTP));
  fs.chmodSync(f, 0);
  if (process.getuid && process.getuid() === 0) {
    t.is((await readAll(f)).frames, 14);
  } else {
    await failsWith(t, f, /permission denied/);
  }
});

test('not a capture: text, random bytes, gzip of text, cut gzip', async (t) => {
  await failsWith(t, write('readme.pcap', fs.readFileSync(path.join(CORPUS, 'README.md'))), /not a pcap\/pcapng file \(magic 0x23205061\)/);
  let seed = 12345;
  const rnd = Buffer.from(new Uint8Array(4096).map(() => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed >> 16; }));
  await failsWith(t, write('random.bin', rnd), /not a pcap\/pcapng file \(magic 0x/);
  await failsWith(t, write('text.gz', zlib.gzipSync(Buffer.from('hello world, not a capture'))), /not a pcap\/pcapng file/);
  const gz = zlib.gzipSync(fs.readFileSync(HTTP));
  await failsWith(t, write('cut.gz', gz.subarray(0, 20)), /gzip|truncated|not a pcap/);
  // A gzip cut after some frames: the frames before are read, the cut is counted.
  const r = await readAll(write('cut-late.gz', gz.subarray(0, gz.length - 300)));
  t.true(r.frames > 0 && r.frames < 14, `${r.frames} frames`);
  t.is(r.drops.truncated_gzip + r.drops.truncated_record, 1);
});

test('truncated header, truncated first record, truncated last record', async (t) => {
  const pcap = fs.readFileSync(HTTP);
  await failsWith(t, write('hdr.pcap', pcap.subarray(0, 10)), /truncated pcap file header \(10 of 24 bytes\)/);
  await failsWith(t, write('rec.pcap', pcap.subarray(0, 24 + 30)), /truncated record at byte 24/);
  const last = await readAll(write('last.pcap', pcap.subarray(0, pcap.length - 7)));
  t.is(last.frames, 13);
  t.is(last.drops.truncated_record, 1);
  const ng = fs.readFileSync(NG);
  const ngLast = await readAll(write('last.pcapng', ng.subarray(0, ng.length - 9)));
  t.true(ngLast.frames >= 39, `${ngLast.frames}`);
  t.is(ngLast.drops.truncated_record, 1);
});

test('bogus caplen: fatal on the first record, counted and stops later', async (t) => {
  const pcap = Buffer.from(fs.readFileSync(HTTP));
  const first = Buffer.from(pcap);
  first.writeUInt32LE(0x7fffffff, 24 + 8);
  await failsWith(t, write('bogus1.pcap', first), /bad pcap record length 2147483647 at byte 24/);
  // Find the 4th record and corrupt its caplen.
  let off = 24;
  for (let k = 0; k < 3; k++) off += 16 + pcap.readUInt32LE(off + 8);
  pcap.writeUInt32LE(0x01000000 + 5, off + 8);
  const r = await readAll(write('bogus4.pcap', pcap));
  t.is(r.frames, 3);
  t.is(r.drops.bad_record_length, 1);
});

test('pcapng: bad block length, wrong byte-order magic, packet for an undeclared interface', async (t) => {
  const ng = Buffer.from(fs.readFileSync(NG));
  const badBom = Buffer.from(ng);
  badBom.writeUInt32LE(0x11223344, 8);
  await failsWith(t, write('bom.pcapng', badBom), /byte-order magic 0x11223344/);
  const badLen = Buffer.from(ng);
  badLen.writeUInt32LE(13, 4);
  await failsWith(t, write('len.pcapng', badLen), /bad pcapng block length 13 at byte 0/);
  // Point the first EPB at interface 7.
  let off = 0;
  while (ng.readUInt32LE(off) !== 6) off += ng.readUInt32LE(off + 4);
  const badIf = Buffer.from(ng);
  badIf.writeUInt32LE(7, off + 8);
  const r = await readAll(write('if.pcapng', badIf));
  t.is(r.drops.unknown_interface, 1);
  t.is(r.frames, 40);
});
