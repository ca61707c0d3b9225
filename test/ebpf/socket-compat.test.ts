// A 32-bit syscall (int $0x80) in a 64-bit process has its own numbers: ia32 read(2) is 3, which
// is close(2) in the 64-bit table. The syscalls/ tracepoints skip such calls; the raw_syscalls
// hook must too, or it takes the read for a close and forgets a socket still in use. The load is
// test/ebpf/compat.c; x86-64 only.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ebpfStatus } from '../../native/ebpf';
import { collectRows, run, Row, waitFor } from './helpers';

const available = ebpfStatus();
const maybe = available.available && process.arch === 'x64' ? test.serial : test.serial.skip;
const SOURCE = path.resolve(__dirname, '..', '..', '..', 'test', 'ebpf', 'compat.c');
const KIND_DATA = 1, KIND_ACCEPT = 3, KIND_CLOSE = 4;
const ROLE_SERVER = 2;

for (const hook of ['tracepoints', 'raw'] as const) maybe(`a 32-bit read in a 64-bit process is not taken for a close (${hook} hook)`, async (t) => {
  const bin = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-compat-')), 'compat');
  execFileSync('clang', ['-O2', '-no-pie', '-o', bin, SOURCE]);
  const { collector, rows } = collectRows({ capBytes: 64, syscallHook: hook });
  try {
    const child = await run(bin, []);
    t.is(child.code, 0, child.stderr);
    const [, serverPort] = child.stdout.trim().split(' ').map(Number);
    // Another test file may flood the machine meanwhile (this collector traces every process):
    // wait for the server socket's close rather than for one drain to reach it.
    await waitFor(() => rows.some((r: Row) => r.pid === child.pid && r.localPort === serverPort && r.kind === KIND_CLOSE), 10_000);
    collector.drain();
    const server = rows.filter((r: Row) => r.pid === child.pid && r.localPort === serverPort && r.kind !== KIND_ACCEPT);
    const accepted = rows.find((r: Row) => r.pid === child.pid && r.kind === KIND_ACCEPT && r.localPort === serverPort);
    t.truthy(accepted, 'the accepted socket is traced');
    const closes = server.filter((r) => r.kind === KIND_CLOSE);
    t.is(closes.length, 1, `one close of the server socket: ${server.map((r) => `${r.kind}:${r.syscall}`).join(' ')}`);
    const second = server.find((r) => r.kind === KIND_DATA && r.payload.toString('latin1') === 'compat-2');
    t.truthy(second, 'the 64-bit read after the 32-bit one is traced');
    t.is(second!.role, ROLE_SERVER, 'and still belongs to the accepted socket');
    t.is(second!.socketId, accepted!.socketId);
    t.true(server.indexOf(second!) < server.indexOf(closes[0]), 'the close comes after it');
    t.false(server.some((r) => r.kind === KIND_DATA && r.payload.toString('latin1') === 'compat-1' && r.syscall === 'close'));
  } finally {
    collector.close();
  }
});
