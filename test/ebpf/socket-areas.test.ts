// Records go through per-CPU areas (bpf/socket_trace.h, struct area_ctl). With the smallest area
// (64 KiB) a paced stream of 2 – 4 KB messages wraps each area dozens of times, so many records
// start near an area's end and run on into its slack: every one must arrive whole, and one
// thread's records in program order although the thread moves between CPUs and the reader merges
// the CPUs' areas. The oracle is the byte stream the script sent and received.
import test from 'ava';
import { spawn } from 'node:child_process';
import { ebpfStatus } from '../../native/ebpf';
import { collectRows, Row, waitFor } from './helpers';

const available = ebpfStatus();
const maybe = available.available ? test.serial : test.serial.skip;
const KIND_DATA = 1, EGRESS = 0, INGRESS = 1;
const MESSAGES = 600;

// Message i: (1000 + i * 997 % 3000) bytes of (i + j) % 251. Sent whole, received whole, one
// message at a time on one thread, with a pause after each so that the reader keeps up.
const SCRIPT = `
import socket, sys, time
sys.stdin.readline()
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
c = socket.create_connection(srv.getsockname()); a, _ = srv.accept()
for i in range(${MESSAGES}):
    n = 1000 + i * 997 % 3000
    c.sendall(bytes((i + j) % 251 for j in range(n)))
    got = b''
    while len(got) < n: got += a.recv(n - len(got))
    time.sleep(0.001)
c.close(); a.close()
print(srv.getsockname()[1])
`;

function message(i: number): Buffer {
  const n = 1000 + (i * 997) % 3000;
  const b = Buffer.alloc(n);
  for (let j = 0; j < n; j++) b[j] = (i + j) % 251;
  return b;
}

maybe('records that run past the end of a small per-CPU area arrive whole, in each thread\'s order', async (t) => {
  t.timeout(60_000);
  const py = spawn('/usr/bin/python3', ['-c', SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  py.stdout.on('data', (d) => (out += d));
  const exited = new Promise<number>((resolve) => py.on('exit', (code) => resolve(code ?? -1)));
  const { collector, rows } = collectRows({ ringBytes: 64 << 10, capBytes: 4096, includePids: [py.pid!] }, (r: Row) => r.pid === py.pid);
  try {
    t.is(collector.packetOnly, 0, collector.statusMessage);
    py.stdin.write('go\n');
    t.is(await exited, 0);
    const port = Number(out.trim());
    t.true(await waitFor(() => rows.filter((r) => r.kind === KIND_DATA).length >= 2 * MESSAGES, 5000), `data rows: ${rows.filter((r) => r.kind === KIND_DATA).length} ${JSON.stringify(collector.drops)}`);
    collector.drain();
    t.is(collector.drops.ringbuf_full, 0, 'no record lost for want of room');
    t.is(collector.drops.area_corrupt, 0, 'every record framed');

    const data = rows.filter((r) => r.kind === KIND_DATA);
    const sent = data.filter((r) => r.direction === EGRESS && r.remotePort === port);
    const received = data.filter((r) => r.direction === INGRESS && r.localPort === port);
    const stream = Buffer.concat(Array.from({ length: MESSAGES }, (_, i) => message(i)));
    t.true(2 * stream.length > 40 * (64 << 10), 'the records wrapped the areas many times');
    for (const [what, rs] of [['sent', sent], ['received', received]] as const) {
      t.true(rs.every((r) => r.payload.length === r.syscallLen), `${what}: every syscall captured whole`);
      t.true(Buffer.concat(rs.map((r) => r.payload)).equals(stream), `${what}: the bytes the script moved, in order`);
    }
    // One thread: each message's send comes before its receive, and the receives of message i
    // before the send of message i + 1, as delivered.
    let sentBytes = 0, receivedBytes = 0, inOrder = true;
    for (const r of data) {
      if (r.direction === EGRESS && r.remotePort === port) {
        if (receivedBytes !== sentBytes) inOrder = false;
        sentBytes += r.syscallLen;
      } else if (r.direction === INGRESS && r.localPort === port) {
        receivedBytes += r.syscallLen;
        if (receivedBytes > sentBytes) inOrder = false;
      }
    }
    t.true(inOrder, 'delivered in the thread\'s program order');
    t.true(new Set(data.map((r) => r.tid)).size === 1);
  } finally {
    collector.close();
  }
});
