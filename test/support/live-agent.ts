// Starts the five services in live mode from a temp config, as pm2 would (each its own process),
// and on stop SIGTERMs them so every stage flushes and the sender writes its jsonl files. Shared
// by the live-capture and eBPF end-to-end tests and the live benchmark.
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

/** One Prometheus sample of `/metrics` on `port`, -1 when absent or unreachable. */
export async function metricValue(port: number, re: RegExp): Promise<number> {
  try {
    const m = re.exec(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text());
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

export interface AgentOptions {
  /** Config sections besides runtime_dir, metrics ports and sender output (YAML flow-style lines). */
  config: string[];
  /** Metrics ports are portBase + 0..4 (capture, flow, quadruple, l7, sender). */
  portBase: number;
  /** Extra environment for the services (e.g. FLOWTAP_LOG_LEVEL). */
  env?: Record<string, string>;
}

export interface LiveAgent {
  /** The temp directory (config, runtime sockets, sender output in data/); removed by kill(). */
  readonly dir: string;
  readonly children: ReadonlyMap<string, ChildProcess>;
  /** The metrics port of a service. */
  port(service: string): number;
  /** A sample from a service's /metrics, -1 when absent. */
  metric(service: string, re: RegExp): Promise<number>;
  /** Last 20 kB of one service's stderr, or of all of them, for assertion messages. */
  stderr(service?: string): string;
  /** The socket tracer is attached (flowtap_ebpf_packet_only reads 0); false after 15 s. */
  waitTraced(): Promise<boolean>;
  /** SIGTERM all services and wait for them to exit (every stage flushes, the sender writes). */
  stop(): Promise<void>;
  /** Records of one sender jsonl file (e.g. 'l7_flow_log'); [] when the file is missing. */
  records(table: string): Record<string, any>[];
  /** SIGKILL what still runs and remove the temp directory (for t.teardown). */
  kill(): void;
}

/** Forks the five services in live mode, each its own process as pm2 would run them. */
export function startAgent(opts: AgentOptions): LiveAgent {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-agent-'));
  const ports: Record<string, number> = {};
  ['capture', 'flow', 'quadruple', 'l7', 'sender'].forEach((s, i) => { ports[s] = opts.portBase + i; });
  const config = path.join(dir, 'flowtap.yaml');
  fs.writeFileSync(config, [
    `runtime_dir: ${path.join(dir, 'run')}`,
    `metrics: { ports: ${JSON.stringify(ports)} }`,
    ...opts.config.map((line) => line.replaceAll('$DATA', path.join(dir, 'data'))),
    '',
  ].join('\n'));
  const children = new Map<string, ChildProcess>();
  const stderr = new Map<string, string>();
  for (const svc of SERVICES) {
    const child = fork(path.join(DIST_ROOT, 'services', svc, 'main.js'), [], {
      env: { ...process.env, FLOWTAP_CONFIG: config, FLOWTAP_MODE: '', ...opts.env },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    stderr.set(svc, '');
    child.stderr!.on('data', (c: Buffer) => stderr.set(svc, (stderr.get(svc)! + c.toString()).slice(-20000)));
    children.set(svc, child);
  }
  const running = () => [...children.values()].filter((c) => c.exitCode === null && c.signalCode === null);
  return {
    dir,
    children,
    port: (service) => ports[service],
    metric: (service, re) => metricValue(ports[service], re),
    stderr: (service) => (service ? stderr.get(service) ?? '' : [...stderr.values()].join('')),
    async waitTraced() {
      for (let i = 0; i < 150; i++) {
        if (await metricValue(ports.capture, /flowtap_ebpf_packet_only\{[^}]*\} (\d+)/) === 0) return true;
        await sleep(100);
      }
      return false;
    },
    async stop() {
      const alive = running();
      const exited = alive.map((c) => new Promise((r) => c.once('exit', r)));
      for (const c of alive) c.kill('SIGTERM');
      await Promise.all(exited);
    },
    records(table) {
      const file = path.join(dir, 'data', `${table}.jsonl`);
      if (!fs.existsSync(file)) return [];
      return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    },
    kill() {
      for (const c of running()) c.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The services with a config tracing only the processes named in `processNames` (their comm);
 * capture interfaces match nothing, so these packets are seen by eBPF only. Metrics ports are
 * derived from `portBase` so parallel test files do not collide. `ebpf`: more ebpf settings.
 */
export function startLiveAgent(processNames: string[], portBase: number, ebpf: Record<string, unknown> = {}): LiveAgent {
  return startAgent({
    portBase,
    config: [
      'capture: { source: live, interfaces: ["ft-none*"] }',
      `ebpf: ${JSON.stringify({ process_names: processNames, ...ebpf })}`,
      'sender: { output_dir: $DATA, sinks: [jsonl] }',
    ],
  });
}
