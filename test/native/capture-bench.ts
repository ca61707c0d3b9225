// Throughput of live capture into JS, next to tcpdump on the same veth in the same run.
// Not an ava test (it takes the machine for a while):
//   node dist/test/native/capture-bench.js [flows] [blockSize blockCount]
// With a ring size given, tcpdump gets the same buffer size (-B), to compare drops like for like.
// Generates a capture of many short TCP flows, replays it with `tcpreplay --topspeed` from a
// namespace, and reports packets/s delivered to JS and both drop counts.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { AfPacketSocket, INDEX_ORIGLEN, INDEX_WORDS } from '../../native/index';
import { makeVethPair, sleep, waitFor } from './veth';

// Per flow: SYN, SYN-ACK, ACK, request, response, FIN, ACK.

function ipChecksum(b: Buffer, start: number): number {
  let sum = 0;
  for (let i = start; i < start + 20; i += 2) sum += b.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** A classic pcap file (Ethernet) of `flows` short TCP conversations. */
function writeFlowsPcap(file: string, flows: number): number {
  const out = fs.openSync(file, 'w');
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0xa1b2c3d4, 0);
  header.writeUInt16LE(2, 4);
  header.writeUInt16LE(4, 6);
  header.writeUInt32LE(262144, 16);
  header.writeUInt32LE(1, 20);
  fs.writeSync(out, header);
  const chunk = Buffer.alloc(1 << 22);
  let used = 0;
  let packets = 0;
  const frame = (ts: number, src: number, dst: number, sport: number, dport: number, flags: number, payload: number): void => {
    const len = 14 + 20 + 20 + payload;
    if (used + 16 + len > chunk.length) {
      fs.writeSync(out, chunk, 0, used);
      used = 0;
    }
    const r = chunk.subarray(used, used + 16 + len).fill(0);
    r.writeUInt32LE(Math.floor(ts), 0);
    r.writeUInt32LE(Math.floor((ts % 1) * 1e6), 4);
    r.writeUInt32LE(len, 8);
    r.writeUInt32LE(len, 12);
    const e = 16;
    r.writeUInt32BE(0x02000000, e); r.writeUInt16BE(dst & 0xffff, e + 4);      // dst MAC 02:00:..
    r.writeUInt32BE(0x02000000, e + 6); r.writeUInt16BE(src & 0xffff, e + 10); // src MAC
    r.writeUInt16BE(0x0800, e + 12);
    const ip = e + 14;
    r[ip] = 0x45;
    r.writeUInt16BE(len - 14, ip + 2);
    r[ip + 8] = 64;
    r[ip + 9] = 6;
    r.writeUInt32BE(src, ip + 12);
    r.writeUInt32BE(dst, ip + 16);
    r.writeUInt16BE(ipChecksum(r, ip), ip + 10);
    const tcp = ip + 20;
    r.writeUInt16BE(sport, tcp);
    r.writeUInt16BE(dport, tcp + 2);
    r[tcp + 12] = 0x50;
    r[tcp + 13] = flags;
    r.writeUInt16BE(65535, tcp + 14);
    used += 16 + len;
    packets++;
  };
  for (let f = 0; f < flows; f++) {
    const client = (10 << 24) | (1 << 16) | (f % 60000);
    const server = (10 << 24) | (2 << 16) | (f % 97);
    const port = 1024 + (f % 60000);
    const ts = 1_700_000_000 + f / 1000;
    frame(ts, client, server, port, 80, 0x02, 0);
    frame(ts, server, client, 80, port, 0x12, 0);
    frame(ts, client, server, port, 80, 0x10, 0);
    frame(ts, client, server, port, 80, 0x18, 120);
    frame(ts, server, client, 80, port, 0x18, 400);
    frame(ts, client, server, port, 80, 0x11, 0);
    frame(ts, server, client, 80, port, 0x10, 0);
  }
  fs.writeSync(out, chunk, 0, used);
  fs.closeSync(out);
  return packets;
}

function backlogDrops(): number {
  // /proc/net/softnet_stat: second column = packets dropped because a CPU's input backlog was full.
  return fs.readFileSync('/proc/net/softnet_stat', 'utf8').trim().split('\n')
    .reduce((n, line) => n + Number.parseInt(line.split(/\s+/)[1], 16), 0);
}

async function main(): Promise<void> {
  const flows = Number(process.argv[2] ?? 100_000);
  const blockSize = process.argv[3] ? Number(process.argv[3]) : undefined;
  const blockCount = process.argv[4] ? Number(process.argv[4]) : undefined;
  const tcpdumpBuffer = blockSize && blockCount ? ['-B', String((blockSize * blockCount) / 1024)] : [];
  const file = path.join(os.tmpdir(), `flowtap-bench-${process.pid}.pcap`);
  const packets = writeFlowsPcap(file, flows);
  const pair = makeVethPair();
  const results: Record<string, unknown> = { flows, packets, blockSize, blockCount };
  try {
    const tcpdump = spawn('tcpdump', ['-n', ...tcpdumpBuffer, '-i', pair.outside, '-w', '/dev/null'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let tcpdumpErr = '';
    tcpdump.stderr.on('data', (d: Buffer) => { tcpdumpErr += d.toString(); });
    await waitFor(() => tcpdumpErr.includes('listening on'), 5000);

    const sock = AfPacketSocket.open({ iface: pair.outside, blockSize, blockCount }); // defaults: 64 x 1 MiB, 100 ms
    let delivered = 0;
    let bytes = 0;
    let first = 0;
    let last = 0;
    sock.onBlock((_block, index, count, done) => {
      const now = performance.now();
      if (first === 0) first = now;
      last = now;
      for (let i = 0; i < count; i++) bytes += index[i * INDEX_WORDS + INDEX_ORIGLEN]; // touch every entry
      delivered += count;
      done();
    });
    const backlogBefore = backlogDrops();
    const cpuBefore = process.cpuUsage();
    const t0 = performance.now();
    const replay = spawn('ip', ['netns', 'exec', pair.ns, 'tcpreplay', '-q', '--topspeed', '--preload-pcap', '-i', pair.inside, file],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    let replayOut = '';
    replay.stdout.on('data', (d: Buffer) => { replayOut += d.toString(); });
    await new Promise((resolve) => replay.on('exit', resolve));
    const replayMs = performance.now() - t0;
    await sleep(1500); // the last partly filled block retires after 100 ms here, 1 s in tcpdump
    const cpu = process.cpuUsage(cpuBefore);
    const stats = sock.stats();
    sock.close();
    tcpdump.kill('SIGINT');
    await new Promise((resolve) => tcpdump.on('exit', resolve));
    const num = (re: RegExp, s: string): number => Number(re.exec(s)?.[1] ?? NaN);
    results.tcpreplay = {
      sent: num(/Successful packets:\s+(\d+)/, replayOut),
      pps: num(/([\d.]+) pps/, replayOut),
      msWithPreload: Math.round(replayMs),
    };
    results.backlogDrops = backlogDrops() - backlogBefore;
    results.addon = {
      delivered, bytes, drops: stats.drops, freezes: stats.freezes, kernelPackets: stats.packets,
      ppsFirstToLastBlock: Math.round(delivered / Math.max((last - first) / 1000, 1e-3)),
      cpuMs: Math.round((cpu.user + cpu.system) / 1000),
    };
    results.tcpdump = {
      captured: num(/(\d+) packets captured/, tcpdumpErr),
      receivedByFilter: num(/(\d+) packets received by filter/, tcpdumpErr),
      droppedByKernel: num(/(\d+) packets dropped by kernel/, tcpdumpErr),
    };
  } finally {
    pair.remove();
    fs.rmSync(file, { force: true });
  }
  console.log(JSON.stringify(results, null, 2));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
