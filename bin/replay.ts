// `flowtap replay <file> --out <dir>`: runs the five services as separate processes over
// ZeroMQ IPC, feeds them one capture file at full speed with packet time as the clock, and
// returns when the sender has written everything.
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SERVICES, type ServiceName } from '../lib/config';
import type { ParentMessage } from '../lib/service';

export class ReplayError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

export interface ReplayOptions {
  file: string;
  outDir: string;
  configFile?: string;
  /** Called with the fraction of the file read, for a progress bar. */
  onProgress?(fraction: number, packets: number): void;
  logLevel?: string;
}

export interface ReplaySummary {
  packets: number;
  flows: number;
  l7Records: number;
  l4Records: number;
  metricRows: number;
  seconds: number;
  packetsPerSecond: number;
}

const CAPTURE_MAGICS = new Map<number, string>([
  [0xa1b2c3d4, 'pcap'], [0xd4c3b2a1, 'pcap'], [0xa1b23c4d, 'pcap (ns)'], [0x4d3cb2a1, 'pcap (ns)'],
  [0x0a0d0d0a, 'pcapng'],
]);

/** Fails early, with the reason, on a file that cannot be a capture. */
export function checkCaptureFile(file: string): void {
  let fd: number;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw new ReplayError(`${file}: not a regular file`, 2);
    fd = fs.openSync(file, 'r');
  } catch (err) {
    if (err instanceof ReplayError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : String(code ?? err);
    throw new ReplayError(`${file}: cannot open: ${why}`, 2);
  }
  const head = Buffer.alloc(4);
  const n = fs.readSync(fd, head, 0, 4, 0);
  fs.closeSync(fd);
  if (n < 4) throw new ReplayError(`${file}: not a capture file: only ${n} bytes long`, 2);
  if (head[0] === 0x1f && head[1] === 0x8b) return; // gzip: the reader checks what is inside
  if (!CAPTURE_MAGICS.has(head.readUInt32BE(0))) {
    throw new ReplayError(`${file}: not a pcap, pcapng or gzip file (starts with 0x${head.toString('hex')})`, 2);
  }
}

function lastErrorLine(stderr: string): string {
  const lines = stderr.trim().split('\n').filter(Boolean);
  for (let i = lines.length - 1; i >= 0; i--) {
    try {
      const entry = JSON.parse(lines[i]) as { level?: string; msg?: string };
      if (entry.level === 'error' && entry.msg) return entry.msg;
    } catch {
      return lines[i];
    }
  }
  return lines[lines.length - 1] ?? 'no message';
}

export async function replay(opts: ReplayOptions): Promise<ReplaySummary> {
  checkCaptureFile(opts.file);
  fs.mkdirSync(opts.outDir, { recursive: true });
  const runtimeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-replay-'));
  fs.chmodSync(runtimeDir, 0o700);
  const started = process.hrtime.bigint();
  const children = new Map<ServiceName, ChildProcess>();
  const stderr = new Map<ServiceName, string>();
  let packets = 0;
  let counts: Record<string, number> = {};
  const ready = new Set<string>();

  const env: NodeJS.ProcessEnv = {
    ...process.env,
    FLOWTAP_MODE: 'replay',
    FLOWTAP_RUNTIME_DIR: runtimeDir,
    FLOWTAP_INPUT_FILE: path.resolve(opts.file),
    FLOWTAP_OUTPUT_DIR: path.resolve(opts.outDir),
    FLOWTAP_METRICS_EPHEMERAL: '1',
  };
  if (opts.configFile) env.FLOWTAP_CONFIG = path.resolve(opts.configFile);
  // A replay writes the JSON lines of the output contract; other sinks when a config asks.
  else env.FLOWTAP_SINKS = 'jsonl';
  if (opts.logLevel) env.FLOWTAP_LOG_LEVEL = opts.logLevel;

  const killAll = () => {
    for (const child of children.values()) if (child.exitCode === null) child.kill('SIGKILL');
  };

  try {
    await new Promise<void>((resolve, reject) => {
      let remaining = SERVICES.length;
      // Consumers first, so the first batches find their receivers bound.
      for (const name of [...SERVICES].reverse()) {
        const script = path.join(__dirname, '..', 'services', name, 'main.js');
        // FLOWTAP_NODE_ARGS passes flags to every service, e.g. "--cpu-prof" to profile a replay.
        const execArgv = process.env.FLOWTAP_NODE_ARGS?.split(' ').filter(Boolean) ?? [];
        const child = fork(script, [], { env, execArgv, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] });
        children.set(name, child);
        stderr.set(name, '');
        child.stderr!.setEncoding('utf8');
        child.stderr!.on('data', (chunk: string) => {
          // Keep the tail only: enough for the last error message.
          stderr.set(name, (stderr.get(name)! + chunk).slice(-16384));
        });
        child.on('message', (msg: ParentMessage) => {
          if (msg.type === 'ready') {
            ready.add(msg.service);
            // Capture starts reading once every receiver is bound (lib/service.ts, startSignal).
            if (ready.size === SERVICES.length - 1) children.get('capture')?.send({ type: 'start' });
          } else if (msg.type === 'progress') {
            packets = msg.packets;
            opts.onProgress?.(msg.totalBytes > 0 ? msg.bytes / msg.totalBytes : 0, msg.packets);
          } else if (msg.type === 'summary') {
            if (msg.service === 'capture') packets = msg.counts.packets ?? packets;
            else counts = { ...counts, ...msg.counts };
          }
        });
        child.on('exit', (code, signal) => {
          if (code === 0) {
            if (--remaining === 0) resolve();
            return;
          }
          const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
          const exitCode = name === 'capture' && code === 2 ? 2 : 1;
          reject(new ReplayError(`flowtap-${name} ${how}: ${lastErrorLine(stderr.get(name)!)}`, exitCode));
        });
      }
    });
  } finally {
    killAll();
    fs.rmSync(runtimeDir, { recursive: true, force: true });
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return {
    packets,
    flows: counts.flows ?? 0,
    l7Records: counts.l7_records ?? 0,
    l4Records: counts.l4_records ?? 0,
    metricRows: counts.metric_rows ?? 0,
    seconds,
    packetsPerSecond: seconds > 0 ? packets / seconds : 0,
  };
}
