// sendmmsg/recvmmsg move several datagrams per call: each message must be its own event, with its
// bytes, length and peer, up to 16 per call; the messages past that are counted, not silently
// lost. The load is a C program (test/ebpf/mmsg.c: Python has no sendmmsg); tcpdump is the oracle.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ebpfStatus } from '../../native/ebpf';
import { tsharkFields } from '../support/tshark';
import { collectRows, run, startTcpdump, Row } from './helpers';

const available = ebpfStatus();
const maybe = available.available ? test.serial : test.serial.skip;
const SOURCE = path.resolve(__dirname, '..', '..', '..', 'test', 'ebpf', 'mmsg.c');
const EGRESS = 0, INGRESS = 1;
/** Messages reported per call (MAX_MMSG in bpf/socket_trace.bpf.c). */
const PER_CALL = 16;

// Both syscall hooks: the syscalls/ tracepoints (default) and raw_syscalls (x86-64 only).
const hooks = process.arch === 'x64' ? ['tracepoints', 'raw'] as const : ['tracepoints'] as const;
for (const hook of hooks) maybe(`every datagram of a sendmmsg/recvmmsg is traced, up to 16 per call, the rest counted (${hook} hook)`, async (t) => {
  t.timeout(60_000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-mmsg-'));
  const bin = path.join(dir, 'mmsg');
  execFileSync('clang', ['-O2', '-o', bin, SOURCE]);
  const batches = [5, 20];
  const { collector, rows } = collectRows({ capBytes: 256, syscallHook: hook }, (r: Row) => r.protocol === 17 && r.payload.toString('latin1').startsWith('mmsg-'));
  try {
    const before = collector.drops.mmsg_unreported;
    const dump = await startTcpdump('udp and host 127.0.0.1', 32768);
    const child = await run(bin, batches.map(String));
    t.is(child.code, 0, child.stderr);
    await dump.stop();
    await new Promise((r) => setTimeout(r, 100));
    collector.drain();
    const unreported = collector.drops.mmsg_unreported - before;
    const lost = collector.drops.ringbuf_full;
    collector.close();
    const [clientPort, serverPort] = child.stdout.trim().split(' ').map(Number);

    const wire = tsharkFields(dump.file, ['udp.srcport', 'udp.dstport', 'udp.length', 'udp.payload'], { filter: `udp.port == ${serverPort}` });
    t.is(wire.length, batches[0] + batches[1], 'every datagram crossed loopback');
    const mine = rows.filter((r) => r.pid === child.pid);
    for (const [syscall, direction, local, remote] of [['sendmmsg', EGRESS, clientPort, serverPort], ['recvmmsg', INGRESS, serverPort, clientPort]] as const) {
      const events = mine.filter((r) => r.syscall === syscall);
      for (const [c, n] of batches.entries()) {
        const call = events.filter((r) => r.payload.toString('latin1').startsWith(`mmsg-${c + 1}-`));
        t.is(call.length, Math.min(n, PER_CALL), `${syscall} call ${c + 1}: one event per message`);
        for (const [i, r] of call.entries()) {
          const expected = `mmsg-${c + 1}-${i}-payload`;
          const onWire = wire.find((w) => Buffer.from(w[3], 'hex').toString('latin1') === expected);
          t.truthy(onWire, `${expected} on the wire`);
          t.is(r.payload.toString('latin1'), expected, `${syscall}: message ${i} of call ${c + 1}, in order, both iovecs`);
          t.is(r.syscallLen, Number(onWire![2]) - 8, 'the message\'s own length');
          t.is(r.direction, direction);
          t.is(r.localPort, local);
          t.is(r.remotePort, remote, `${syscall}: peer of message ${i}`);
          t.is(r.remote, '127.0.0.1');
        }
        // One call: one timestamp and one syscall_trace_id for all its messages.
        t.is(new Set(call.map((r) => r.timestampUs)).size, 1);
        t.is(new Set(call.map((r) => r.traceId)).size, 1);
      }
    }
    t.is(unreported, 2 * (batches[1] - PER_CALL), 'the messages past 16 per call are counted (send and receive)');
    t.is(lost, 0, 'no event lost while tracing');
  } finally {
    collector.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
