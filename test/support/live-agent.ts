// Starts the five services in live mode with a temp config whose packets are seen by eBPF only
// (capture interfaces match nothing), waits until the socket tracer is attached, and on stop
// SIGTERMs them so the sender flushes its jsonl files. Shared by the eBPF end-to-end tests.
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

/** dist/ (this file is compiled to dist/test/support/). */
export const DIST_ROOT = path.resolve(__dirname, '..', '..');
const SERVICES = ['sender', 'quadruple', 'l7', 'flow', 'capture'];

/** True when this host can run the socket tracer: root, kernel BTF and the compiled object. */
export const canTrace = process.getuid?.() === 0 && fs.existsSync('/sys/kernel/btf/vmlinux')
  && fs.existsSync(path.join(DIST_ROOT, '..', 'bpf', 'socket_trace.bpf.o'));

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function metricValue(port: number, re: RegExp): Promise<number> {
  try {
    const m = re.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

export interface LiveAgent {
  /** The temp directory (config, runtime sockets, sender output); removed by kill(). */
  readonly dir: string;
  /** Last 20 kB of the services' stderr, for assertion messages. */
  stderr(): string;
  /** The socket tracer is attached (flowtap_ebpf_packet_only reads 0); false after 15 s. */
  waitTraced(): Promise<boolean>;
  /** SIGTERM all services and wait for them to exit (the sender flushes on the way out). */
  stop(): Promise<void>;
  /** Records of one sender jsonl file (e.g. 'l7_flow_log'); [] when the file is missing. */
  records(table: string): Record<string, any>[];
  /** SIGKILL what still runs and remove the temp directory (for t.teardown). */
  kill(): void;
}

/**
 * Forks the services with a config tracing only the processes named in `processNames` (their
 * comm). Metrics ports are derived from `portBase` so parallel test files do not collide.
 */
export function startLiveAgent(processNames: string[], portBase: number): LiveAgent {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-ebpf-'));
  const ports: Record<string, number> = { capture: portBase, flow: portBase + 1, quadruple: portBase + 2, l7: portBase + 3, sender: portBase + 4 };
  fs.writeFileSync(path.join(dir, 'flowtap.yaml'), [
    `runtime_dir: ${path.join(dir, 'run')}`,
    `metrics: { ports: ${JSON.stringify(ports)} }`,
    // Capture on loopback is off by default; the packets of these tests are seen by eBPF only.
    'capture: { source: live, interfaces: ["ft-none*"] }',
    `ebpf: { process_names: ${JSON.stringify(processNames)} }`,
    `sender: { output_dir: ${path.join(dir, 'data')}, sinks: [jsonl] }`,
    '',
  ].join('\n'));
  const children = new Map<string, ChildProcess>();
  let stderr = '';
  for (const svc of SERVICES) {
    const child = fork(path.join(DIST_ROOT, 'services', svc, 'main.js'), [], {
      env: { ...process.env, FLOWTAP_CONFIG: path.join(dir, 'flowtap.yaml'), FLOWTAP_MODE: '' },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    child.stderr!.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-20000); });
    children.set(svc, child);
  }
  return {
    dir,
    stderr: () => stderr,
    async waitTraced() {
      for (let i = 0; i < 150; i++) {
        if (await metricValue(ports.capture, /flowtap_ebpf_packet_only\{[^}]*\} (\d+)/) === 0) return true;
        await sleep(100);
      }
      return false;
    },
    async stop() {
      const running = [...children.values()].filter((c) => c.exitCode === null && c.signalCode === null);
      const exited = running.map((c) => new Promise((r) => c.once('exit', r)));
      for (const c of running) c.kill('SIGTERM');
      await Promise.all(exited);
    },
    records(table) {
      const file = path.join(dir, 'data', `${table}.jsonl`);
      if (!fs.existsSync(file)) return [];
      return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    },
    kill() {
      for (const c of children.values()) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
