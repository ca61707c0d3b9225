// The overhead bench's `floor` mode prices two variants of the socket tracer built from its own
// source (bpf/socket_trace.bpf.c, -DVARIANT_HOOKS_ONLY and -DVARIANT_FLOOR). Its claim, that the
// floor is what any tracer of these events must do, holds only if the floor variant really does
// that work: here it must report a writev and a read of a loopback exchange with the right tuple,
// length and bytes, stamped send before receive, and the hooks-only variant must report nothing.
import test from 'ava';
import { spawn } from 'node:child_process';
import { buildTracerVariant } from '../../bench/ebpf-overhead';
import { ebpfStatus } from '../../native/ebpf';
import { collectRows, Row, waitFor } from './helpers';

const available = ebpfStatus();
const maybe = available.available ? test.serial : test.serial.skip;
const KIND_DATA = 1, EGRESS = 0, INGRESS = 1;
const REQUEST = ['GET /floor HTTP/1.1\r\n', 'Host: variants\r\n\r\n'];
const RESPONSE = 'HTTP/1.1 204 No Content\r\n\r\n';

// A client writev and a server write, each read whole on the other end; prints the server's port.
const SCRIPT = `
import os, socket, sys
sys.stdin.readline()
srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen()
c = socket.create_connection(srv.getsockname()); a, _ = srv.accept()
os.writev(c.fileno(), [s.encode() for s in ${JSON.stringify(REQUEST)}])
req = os.read(a.fileno(), 4096)
os.write(a.fileno(), ${JSON.stringify(RESPONSE)}.encode())
resp = os.read(c.fileno(), 4096)
assert req == ${JSON.stringify(REQUEST.join(''))}.encode() and resp == ${JSON.stringify(RESPONSE)}.encode()
c.close(); a.close()
print(srv.getsockname()[1])
`;

async function exchange(objectPath: string): Promise<{ rows: Row[]; port: number; lost: number }> {
  const py = spawn('/usr/bin/python3', ['-c', SCRIPT], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  py.stdout.on('data', (d) => (out += d));
  const exited = new Promise<number>((resolve) => py.on('exit', (code) => resolve(code ?? -1)));
  const { collector, rows } = collectRows({ objectPath, capBytes: 4096 }, (r: Row) => r.pid === py.pid && r.kind === KIND_DATA);
  try {
    if (collector.packetOnly) throw new Error(collector.statusMessage);
    py.stdin.write('go\n');
    if (await exited !== 0) throw new Error('the exchange script failed');
    await waitFor(() => rows.length >= 4, 3000);
    collector.drain();
    return { rows: [...rows], port: Number(out.trim()), lost: collector.drops.ringbuf_full };
  } finally {
    await collector.close();
  }
}

maybe('the floor variant reports each socket write and read with its tuple and bytes; hooks-only reports none', async (t) => {
  t.timeout(60_000);
  const floor = await exchange(buildTracerVariant('FLOOR'));
  t.is(floor.lost, 0);
  const request = Buffer.from(REQUEST.join('')), response = Buffer.from(RESPONSE);
  const one = (direction: number, bytes: Buffer): Row | undefined => {
    const found = floor.rows.filter((r) => r.direction === direction && r.payload.equals(bytes));
    t.is(found.length, 1, `one ${direction === EGRESS ? 'send' : 'receive'} of ${JSON.stringify(bytes.toString())}: ${JSON.stringify(floor.rows.map((r) => [r.syscall, r.direction, r.payload.toString()]))}`);
    return found[0];
  };
  const sentRequest = one(EGRESS, request), gotRequest = one(INGRESS, request);
  const sentResponse = one(EGRESS, response), gotResponse = one(INGRESS, response);
  t.is(floor.rows.length, 4, 'nothing else of the script\'s');
  if (!sentRequest || !gotRequest || !sentResponse || !gotResponse) return;
  t.deepEqual([sentRequest.syscall, gotRequest.syscall, sentResponse.syscall, gotResponse.syscall], ['writev', 'read', 'write', 'read']);
  t.deepEqual([sentRequest.remotePort, gotRequest.localPort, sentResponse.localPort, gotResponse.remotePort], Array(4).fill(floor.port), 'tuples from the hooks\' sockets');
  t.true([sentRequest, gotRequest, sentResponse, gotResponse].every((r) => r.local === '127.0.0.1' && r.remote === '127.0.0.1' && r.syscallLen === r.payload.length));
  t.true(sentRequest.timestampUs <= gotRequest.timestampUs && gotRequest.timestampUs <= sentResponse.timestampUs && sentResponse.timestampUs <= gotResponse.timestampUs,
    'sends stamped at entry, receives at return, in the script\'s order');

  const hooks = await exchange(buildTracerVariant('HOOKS_ONLY'));
  t.is(hooks.rows.length, 0, 'the hooks-only variant reports no data');
});
