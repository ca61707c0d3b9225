// The kernel side forgets a socket at close(2) only. Sockets that end otherwise (the process
// exits, or execs with close-on-exec sockets) leave entries that the collector's sweep must
// remove, while the sockets of a live process stay remembered. /proc is the oracle: what each
// child still holds open.
import test from 'ava';
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { ebpfStatus } from '../../native/ebpf';
import { EbpfCollector } from '../../services/capture/ebpf-collector';
import { SOCKET_KIND_CLOSE } from '../../services/capture/ebpf-socket-batch';
import { waitFor } from './helpers';

const available = ebpfStatus();
const maybe = available.available ? test.serial : test.serial.skip;
const SOCKETS = 20;
// The exec-ed child opens more sockets than one sweep checks against /proc (2048): the second
// sweep must go on where the first stopped.
const EXEC_SOCKETS = 2500;

// Connects SOCKETS sockets to the port, round-trips a line on each, then ends as `mode` says:
// exit (os._exit: the kernel closes the fds), exec (sleep replaces the program: Python's sockets
// are close-on-exec), hold (keeps them open until stdin closes).
const CLIENT = `
import os, resource, socket, sys
port, mode, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
print("ready", flush=True)
sys.stdin.readline()
held = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"ping\\n")
    s.recv(16)
    held.append(s)
print("done", flush=True)
if mode == "exit":
    os._exit(0)
if mode == "exec":
    os.execv("/bin/sleep", ["sleep", "60"])
sys.stdin.readline()
`;

/** Sockets among the fds past stdio (Node's stdio pipes are socketpairs); -1 when the process is gone. */
function socketFds(pid: number): number {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).filter((fd) => {
      if (Number(fd) < 3) return false;
      try { return fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:'); } catch { return false; }
    }).length;
  } catch {
    return -1; // gone
  }
}

maybe('the sweep forgets sockets of exited and exec-ed processes and keeps live ones', async (t) => {
  t.timeout(60_000);
  const server = net.createServer((s) => { s.on('data', (d) => s.write(d)); s.on('error', () => {}); });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const children: Record<string, { proc: ChildProcess; out: string }> = {};
  for (const mode of ['exit', 'exec', 'hold']) {
    const proc = spawn('python3', ['-c', CLIENT, String(port), mode, String(mode === 'exec' ? EXEC_SOCKETS : SOCKETS)], { stdio: ['pipe', 'pipe', 'inherit'] });
    children[mode] = { proc, out: '' };
    proc.stdout!.on('data', (d) => { children[mode].out += d; });
  }
  t.true(await waitFor(() => Object.values(children).every((c) => c.out.includes('ready')), 10_000), 'children ready');
  // Close events per pid: the exec-ed child's new program may close(2) fd numbers that were its
  // sockets (the dynamic loader's fd 3), and the kernel side forgets those at once.
  const closes = new Map<number, number>();
  // Only the clients are traced: the map then holds exactly their sockets.
  const collector = EbpfCollector.start({ includePids: Object.values(children).map((c) => c.proc.pid!), tls: false }, (batch) => {
    for (let i = 0; i < batch.count; i++) {
      if (batch.kind[i] === SOCKET_KIND_CLOSE) closes.set(batch.pid[i], (closes.get(batch.pid[i]) ?? 0) + 1);
    }
  });
  try {
    t.is(collector.packetOnly, 0, collector.statusMessage);
    for (const c of Object.values(children)) c.proc.stdin!.write('go\n');
    t.true(await waitFor(() => Object.values(children).every((c) => c.out.includes('done')), 20_000), 'children connected');
    const execPid = children.exec.proc.pid!;
    // sleep is settled once it sits in (clock_)nanosleep: the dynamic loader's close(2)s are done.
    const asleep = (): boolean => /^(230|35) /.test(fs.readFileSync(`/proc/${execPid}/syscall`, 'utf8'));
    t.true(await waitFor(() => children.exit.proc.exitCode !== null && fs.readlinkSync(`/proc/${execPid}/exe`).endsWith('/sleep') && asleep(), 10_000),
      'one child exited, one exec-ed');
    collector.drain();

    // The oracle: the exited child holds nothing, the exec-ed one nothing, the live one its sockets.
    t.is(socketFds(children.exit.proc.pid!), -1);
    t.is(socketFds(execPid), 0);
    t.is(socketFds(children.hold.proc.pid!), SOCKETS);
    t.is(closes.get(children.exit.proc.pid!) ?? 0, 0);
    t.is(closes.get(children.hold.proc.pid!) ?? 0, 0);
    const closedAfterExec = closes.get(execPid) ?? 0;
    const stale = EXEC_SOCKETS - closedAfterExec;
    t.is(collector.mapCounts().socketInfo, 2 * SOCKETS + stale, 'before the sweep every client socket not closed by close(2) is remembered');

    // The exited child's entries go at once; of the live processes' entries one sweep checks 2048.
    t.true(collector.sweepSockets(), 'swept (the test runs in the host pid namespace)');
    t.is(collector.reclaimed.process_exited, SOCKETS);
    t.true(collector.reclaimed.fd_closed >= 2048 - SOCKETS && collector.reclaimed.fd_closed <= 2048, `first sweep: ${collector.reclaimed.fd_closed} of ${stale}`);
    collector.sweepSockets();
    t.deepEqual(collector.reclaimed, { process_exited: SOCKETS, fd_closed: stale });
    t.is(collector.mapCounts().socketInfo, SOCKETS, 'only the live child\'s sockets remain');

    // Another sweep finds nothing more: the live sockets are not taken for stale ones.
    collector.sweepSockets();
    t.deepEqual(collector.reclaimed, { process_exited: SOCKETS, fd_closed: stale });
    t.is(collector.mapCounts().socketInfo, SOCKETS);
  } finally {
    for (const c of Object.values(children)) {
      c.proc.stdin!.end();
      c.proc.kill();
    }
    collector.close();
    server.close();
  }
});
