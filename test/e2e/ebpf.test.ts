// The eBPF path end to end: the agent in live mode traces a real HTTP server and real curl on
// loopback, and l7_flow_log holds their requests with the processes that made them.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';

const ROOT = path.resolve(__dirname, '..', '..');
const SERVICES = ['sender', 'quadruple', 'l7', 'flow', 'capture'];
const canTrace = process.getuid?.() === 0 && fs.existsSync('/sys/kernel/btf/vmlinux') && fs.existsSync(path.join(ROOT, '..', 'bpf', 'socket_trace.bpf.o'));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
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

(canTrace ? test.serial : test.serial.skip)('requests between curl and a Python HTTP server appear with their processes, from eBPF', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-ebpf-'));
  const base = 21000 + (process.pid % 300) * 10;
  const ports: Record<string, number> = { capture: base, flow: base + 1, quadruple: base + 2, l7: base + 3, sender: base + 4 };
  fs.writeFileSync(path.join(dir, 'flowtap.yaml'), [
    `runtime_dir: ${path.join(dir, 'run')}`,
    `metrics: { ports: ${JSON.stringify(ports)} }`,
    // Capture on loopback is off by default; the packets of this test are seen by eBPF only.
    'capture: { source: live, interfaces: ["ft-none*"] }',
    'ebpf: { process_names: [curl, python3] }',
    `sender: { output_dir: ${path.join(dir, 'data')}, sinks: [jsonl] }`,
    '',
  ].join('\n'));
  const children = new Map<string, ChildProcess>();
  let stderr = '';
  for (const svc of SERVICES) {
    const child = fork(path.join(ROOT, 'services', svc, 'main.js'), [], {
      env: { ...process.env, FLOWTAP_CONFIG: path.join(dir, 'flowtap.yaml'), FLOWTAP_MODE: '' },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    child.stderr!.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-20000); });
    children.set(svc, child);
  }
  const httpPort = await freePort();
  const server = spawn('python3', ['-m', 'http.server', String(httpPort), '--bind', '127.0.0.1', '--directory', path.join(ROOT, '..')], { stdio: 'ignore' });
  t.teardown(() => {
    server.kill('SIGKILL');
    for (const c of children.values()) if (c.exitCode === null) c.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });
  // The tracer is attached once the packet-only gauge reads 0.
  let packetOnly = -1;
  for (let i = 0; i < 150 && packetOnly !== 0; i++) {
    packetOnly = await metricValue(ports.capture, /flowtap_ebpf_packet_only\{[^}]*\} (\d+)/);
    if (packetOnly !== 0) await sleep(100);
  }
  t.is(packetOnly, 0, `the socket tracer is attached: ${stderr}`);
  await sleep(1500);
  const paths = ['/README.md', '/package.json', '/no-such-file'];
  const curlPids: number[] = [];
  for (const p of paths) {
    const curl = spawn('curl', ['-s', '-o', '/dev/null', `http://127.0.0.1:${httpPort}${p}`], { stdio: 'ignore' });
    curlPids.push(curl.pid!);
    await new Promise((r) => curl.once('exit', r));
  }
  await sleep(1500);
  const exited = [...children.values()].map((c) => new Promise((r) => c.once('exit', r)));
  for (const c of children.values()) c.kill('SIGTERM');
  await Promise.all(exited);

  const logs = fs.readFileSync(path.join(dir, 'data', 'l7_flow_log.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((l) => l.signal_source === 'ebpf' && l.server_port === httpPort);
  for (const [k, p] of paths.entries()) {
    const expected = p === '/no-such-file' ? 404 : 200;
    const client = logs.find((l) => l.request_resource === p && l.process_kname_0 === 'curl');
    t.truthy(client, `curl's side of GET ${p}: ${JSON.stringify(logs)}`);
    t.is(client?.process_id_0, curlPids[k], 'the curl process id');
    t.is(client?.request_type, 'GET');
    t.is(client?.response_code, expected, JSON.stringify(logs.map((l) => [l.request_resource, l.process_kname_0, l.process_kname_1, l.response_code, l.response_length])));
    t.true((client?.response_duration ?? 0) > 0);
    const serverSide = logs.find((l) => l.request_resource === p && l.process_kname_1 === 'python3');
    t.truthy(serverSide, `the server's side of GET ${p}`);
    t.is(serverSide?.process_id_1, server.pid, 'the python3 process id');
    t.is(serverSide?.response_code, expected);
  }
});
