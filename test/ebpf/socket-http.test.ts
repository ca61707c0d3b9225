// A real HTTP exchange on loopback (python3 http.server and curl), traced by the eBPF socket
// tracer; tcpdump on lo is the oracle for the 5-tuple, the bytes and the timing.
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { tsharkFields } from '../support/tshark';
import { collectRows, freePort, run, startTcpdump, waitFor, waitListening, Row } from './helpers';
import { ebpfStatus } from '../../native/ebpf';

const KIND_DATA = 1, KIND_CONNECT = 2, KIND_ACCEPT = 3, KIND_CLOSE = 4;
const EGRESS = 0, INGRESS = 1;
const CLIENT = 1, SERVER = 2;

/**
 * Lays the rows' syscalls end to end over the bytes tcpdump saw: each captured payload must be
 * the wire bytes at that syscall's offset (cut at the capture size), and the lengths must add up.
 */
function matchesStream(rows: Row[], wire: Buffer): string | undefined {
  let off = 0;
  for (const r of rows) {
    if (!r.payload.equals(wire.subarray(off, off + r.payload.length))) return `payload at ${off} differs`;
    if (r.payload.length > r.syscallLen) return `captured ${r.payload.length} > syscall ${r.syscallLen}`;
    off += r.syscallLen;
  }
  return off === wire.length ? undefined : `syscalls moved ${off} bytes, the wire ${wire.length}`;
}

const available = ebpfStatus();
const maybe = available.available ? test.serial : test.serial.skip;
if (!available.available) console.log(available.message);

// Data from the sock/ tracepoints (this kernel has them), and from the syscall exits as on
// kernels before 6.4.
for (const [where, config] of [['', {}], [' (data at syscall exits)', { sockHooks: false }]] as const) maybe(`HTTP request and response from python3 http.server and curl carry pid, comm, 5-tuple, direction and trace ids${where}`, async (t) => {
  const port = await freePort();
  const keep = (r: Row) => r.localPort === port || r.remotePort === port;
  const { collector, rows } = collectRows({ capBytes: 4096, ...config }, keep);
  t.is(collector.packetOnly, 0, collector.statusMessage);
  const server = spawn('/usr/bin/python3', ['-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', __dirname], { stdio: 'ignore' });
  try {
    await waitListening(port);
    const serverComm = fs.readFileSync(`/proc/${server.pid}/comm`, 'utf8').trim();
    const dump = await startTcpdump(`tcp port ${port}`);
    const curl = await run('curl', ['-s', '-o', '/dev/null', '-H', 'X-Flowtap-Test: ebpf', `http://127.0.0.1:${port}/helpers.js`]);
    t.is(curl.code, 0, curl.stderr);
    await dump.stop();
    t.true(await waitFor(() => rows.some((r) => r.pid === server.pid && r.kind === KIND_CLOSE), 5000), 'server close traced');
    collector.drain();
    // Stop tracing before tshark: execFileSync blocks this event loop, and the ring would overflow
    // with everything else the machine does meanwhile.
    const lostWhileTracing = collector.drops.ringbuf_full;
    collector.close();

    // The oracle: the conversation as tcpdump saw it (the waitListening probe is another stream).
    const pkts = tsharkFields(dump.file, ['tcp.stream', 'frame.time_epoch', 'tcp.srcport', 'tcp.dstport', 'tcp.payload'], { filter: 'tcp.len > 0' });
    const streams = new Set(pkts.map((p) => p[0]));
    const httpStream = [...streams].find((s) => pkts.some((p) => p[0] === s && Buffer.from(p[4], 'hex').includes('X-Flowtap-Test')))!;
    const conv = pkts.filter((p) => p[0] === httpStream);
    const clientPort = Number(conv[0][2]);
    const requestWire = Buffer.concat(conv.filter((p) => Number(p[3]) === port).map((p) => Buffer.from(p[4], 'hex')));
    const responseWire = Buffer.concat(conv.filter((p) => Number(p[2]) === port).map((p) => Buffer.from(p[4], 'hex')));
    const firstRequestPacketUs = Number(conv.find((p) => Number(p[3]) === port)![1]) * 1e6;

    const conn = rows.filter((r) => (r.localPort === clientPort && r.remotePort === port) || (r.localPort === port && r.remotePort === clientPort));
    // curl: connect, send the request, receive the response, close, all as the client.
    const curlRows = conn.filter((r) => r.pid === curl.pid);
    t.true(curlRows.length >= 3, `curl rows: ${curlRows.length}`);
    for (const r of curlRows) {
      t.is(r.comm, 'curl');
      t.is(r.role, CLIENT);
      t.is(r.local, '127.0.0.1');
      t.is(r.remote, '127.0.0.1');
      t.is(r.protocol, 6);
    }
    const connect = curlRows.find((r) => r.kind === KIND_CONNECT)!;
    t.truthy(connect, 'connect traced');
    t.true(curlRows.every((r) => r.socketId === connect.socketId), 'one socket_id per socket');
    t.true(responseWire.length > 4096, 'the response is longer than the capture size');
    t.is(matchesStream(curlRows.filter((r) => r.kind === KIND_DATA && r.direction === EGRESS), requestWire), undefined, 'curl sent the request bytes tcpdump saw');
    t.is(matchesStream(curlRows.filter((r) => r.kind === KIND_DATA && r.direction === INGRESS), responseWire), undefined, 'curl received the response bytes tcpdump saw');
    const firstSend = curlRows.find((r) => r.kind === KIND_DATA && r.direction === EGRESS)!;
    t.is(firstSend.syscallLen, firstSend.payload.length);
    // Send time is taken at syscall entry, before the packet reaches lo.
    t.true(Math.abs(firstSend.timestampUs - firstRequestPacketUs) < 50_000, `send ts ${firstSend.timestampUs} vs wire ${firstRequestPacketUs}`);
    t.true(firstSend.timestampUs <= firstRequestPacketUs + 1000);
    t.truthy(curlRows.find((r) => r.kind === KIND_CLOSE && r.socketId === connect.socketId), 'close traced');

    // python3: accept, receive the request (opens a trace id), send the response with the same id.
    const srvRows = conn.filter((r) => r.pid === server.pid);
    for (const r of srvRows) {
      t.is(r.comm, serverComm);
      t.is(r.role, SERVER);
      t.is(r.localPort, port);
      t.is(r.remotePort, clientPort);
    }
    const accept = srvRows.find((r) => r.kind === KIND_ACCEPT)!;
    t.truthy(accept, 'accept traced');
    t.not(accept.socketId, connect.socketId, 'each end is its own socket');
    const srvIn = srvRows.filter((r) => r.kind === KIND_DATA && r.direction === INGRESS);
    const srvOut = srvRows.filter((r) => r.kind === KIND_DATA && r.direction === EGRESS);
    t.is(matchesStream(srvIn, requestWire), undefined, 'server received the request bytes tcpdump saw');
    t.is(matchesStream(srvOut, responseWire), undefined, 'server sent the response bytes tcpdump saw');
    t.true(srvOut.some((r) => r.payload.length === 4096 && r.syscallLen > 4096) || srvOut.every((r) => r.syscallLen <= 4096), 'payload cut at capBytes');
    t.true(srvOut[0].payload.subarray(0, 15).toString() === 'HTTP/1.0 200 OK');
    const traceId = srvIn[0].traceId;
    t.true(traceId > 0, 'a receive opens a syscall_trace_id');
    t.true(srvOut.every((r) => r.traceId === traceId && r.tid === srvIn[0].tid), 'the response carries the request\'s trace id');
    t.true(srvIn[0].timestampUs >= firstSend.timestampUs, 'received after sent');
    t.is(lostWhileTracing, 0, 'no event lost while tracing');
  } finally {
    server.kill();
    collector.close();
  }
});

maybe('a disabled collector reports packet-only without loading anything', (t) => {
  const { collector } = collectRows({ enabled: false });
  t.is(collector.packetOnly, 1);
  t.regex(collector.statusMessage, /packet-only/);
  t.deepEqual(collector.mapCounts(), { socketInfo: 0 });
});

test('without root the collector runs packet-only and says why', async (t) => {
  // A child process as nobody: the status check and the collector must both refuse cleanly.
  const script = `
    const { EbpfCollector } = require(${JSON.stringify(require.resolve('../../services/capture/ebpf-collector'))});
    const c = EbpfCollector.start({}, () => {});
    console.log(JSON.stringify({ packetOnly: c.packetOnly, message: c.statusMessage }));`;
  const child = spawn(process.execPath, ['-e', script], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
  t.is(code, 0);
  const status = JSON.parse(out) as { packetOnly: number; message: string };
  t.is(status.packetOnly, 1);
  t.regex(status.message, /not_root.*packet-only/);
});
