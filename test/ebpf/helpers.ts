// Shared by the eBPF tests: a collector that keeps every row as a plain object (tests only),
// free ports, child processes that wait for "go", and tcpdump on loopback as the oracle.
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { EbpfCollector, EbpfCollectorConfig } from '../../services/capture/ebpf-collector';
import { SocketDataBatch, SYSCALL_NAMES } from '../../services/capture/ebpf-socket-batch';

export interface Row {
  timestampUs: number;
  socketId: number;
  traceId: number;
  pid: number;
  tid: number;
  fd: number;
  comm: string;
  local: string;
  remote: string;
  localPort: number;
  remotePort: number;
  protocol: number;
  kind: number;
  direction: number;
  role: number;
  syscall: string;
  isTls: number;
  syscallLen: number;
  payload: Buffer;
}

function ipText(b: Uint8Array, at: number): string {
  const v4mapped = b.subarray(at, at + 10).every((x) => x === 0) && b[at + 10] === 0xff && b[at + 11] === 0xff;
  if (v4mapped) return `${b[at + 12]}.${b[at + 13]}.${b[at + 14]}.${b[at + 15]}`;
  const parts: string[] = [];
  for (let k = 0; k < 16; k += 2) parts.push(((b[at + k] << 8) | b[at + k + 1]).toString(16));
  return parts.join(':');
}

export function rowsOf(batch: SocketDataBatch): Row[] {
  const out: Row[] = [];
  for (let i = 0; i < batch.count; i++) {
    out.push({
      timestampUs: batch.timestampUs[i], socketId: batch.socketId[i], traceId: batch.syscallTraceId[i],
      pid: batch.pid[i], tid: batch.tid[i], fd: batch.fd[i], comm: batch.commOf(i),
      local: ipText(batch.ipLocal, i * 16), remote: ipText(batch.ipRemote, i * 16),
      localPort: batch.portLocal[i], remotePort: batch.portRemote[i], protocol: batch.protocol[i],
      kind: batch.kind[i], direction: batch.direction[i], role: batch.role[i], syscall: SYSCALL_NAMES[batch.syscall[i]],
      isTls: batch.isTls[i], syscallLen: batch.syscallLen[i], payload: Buffer.from(batch.payloadOf(i)),
    });
  }
  return out;
}

/**
 * A collector whose rows go through the wire encoding (encode + decode) into `rows`. Its record
 * areas are 32 MiB a CPU unless the config says otherwise: test files run two at a time, and a
 * collector that traces every process also receives the other file's traffic (socket-burst's 100k
 * connections), which an 8 MiB ring did not always hold while the test's own process was busy.
 */
export function collectRows(config: EbpfCollectorConfig, keep: (r: Row) => boolean = () => true): { collector: EbpfCollector; rows: Row[] } {
  const rows: Row[] = [];
  const decoded = new SocketDataBatch();
  const collector = EbpfCollector.start({ ringBytes: 32 << 20, ...config }, (batch) => {
    if (!decoded.decode(batch.encode())) throw new Error('SocketDataBatch did not round-trip');
    for (const r of rowsOf(decoded)) if (keep(r)) rows.push(r);
  });
  return { collector, rows };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function waitFor(cond: () => boolean, timeoutMs: number, stepMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(stepMs);
  }
  return cond();
}

/** Resolves once `port` accepts connections on 127.0.0.1. */
export async function waitListening(port: number, timeoutMs = 10000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
      c.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on ${port}`);
    await sleep(100);
  }
}

export function run(cmd: string, args: string[], opts: { input?: string } = {}): Promise<{ code: number; stdout: string; stderr: string; pid: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => { stdout += d; });
    child.stderr!.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr, pid: child.pid ?? 0 }));
    if (child.stdin) {
      child.stdin.on('error', () => undefined);  // the child may exit before reading
      child.stdin.end(opts.input);
    }
  });
}

/**
 * tcpdump on lo for `filter`, written to a temp pcap; stop() waits until the file is complete.
 * `bufferKiB`: the kernel buffer (-B); the default drops packets of a burst such as one sendmmsg.
 */
export async function startTcpdump(filter: string, bufferKiB?: number): Promise<{ file: string; stop: () => Promise<void> }> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-ebpf-'));
  const file = path.join(dir, 'lo.pcap');
  const buffer = bufferKiB ? ['-B', String(bufferKiB)] : [];
  const child: ChildProcess = spawn('tcpdump', ['-i', 'lo', ...buffer, '--immediate-mode', '-U', '-n', '-s', '0', '-w', file, filter], { stdio: ['ignore', 'ignore', 'pipe'] });
  // tcpdump says "listening on lo" once the socket is up. Until then the oracle would miss
  // packets, so a tcpdump that is slow to start (a loaded machine) is waited for, and one that
  // exits or never gets there fails the test with what it said.
  let said = '';
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => { child.kill(); reject(new Error(`tcpdump not listening after 20 s: ${said}`)); }, 20_000);
    child.stderr!.on('data', (d: Buffer) => {
      said += d.toString();
      if (said.includes('listening')) { clearTimeout(t); resolve(); }
    });
    child.once('exit', (code) => { clearTimeout(t); reject(new Error(`tcpdump exited (${code}) before listening: ${said}`)); });
  });
  return {
    file,
    stop: () => new Promise<void>((resolve) => {
      child.once('close', () => resolve());
      setTimeout(() => child.kill('SIGINT'), 200);
    }),
  };
}

/**
 * Runs `python3 -c script args` while `collector` traces and tcpdump records `filter` on lo. Then
 * drains and closes the collector before the caller reads the capture: tshark (execFileSync)
 * blocks this event loop, and the record areas would overflow with what the machine does meanwhile.
 * `lost`: events dropped for want of room while tracing.
 */
export async function tracePython(collector: EbpfCollector, filter: string, script: string, args: string[]):
  Promise<{ py: { code: number; stdout: string; stderr: string; pid: number }; pcap: string; lost: number }> {
  const dump = await startTcpdump(filter);
  const py = await run('/usr/bin/python3', ['-c', script, ...args]);
  await dump.stop();
  await sleep(100);
  collector.drain();
  const lost = collector.drops.ringbuf_full;
  collector.close();
  return { py, pcap: dump.file, lost };
}
