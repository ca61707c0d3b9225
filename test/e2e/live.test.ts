// Live capture through the five real processes: corpus files replayed with tcpreplay into a
// veth pair whose far end sits in a namespace made for the test, captured on the near end by the
// AF_PACKET addon, and compared with `flowtap replay` of the same file.
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import { makeVethPair, replay as tcpreplay, setLink, sleep, waitLinkUp, type VethPair } from '../native/veth';
import { replayFile, type ReplayResult } from '../support/replay';
import { conversationKey, corpusFile, tsharkFields } from '../support/tshark';

const ROOT = path.resolve(__dirname, '..', '..');
const SERVICES = ['sender', 'quadruple', 'l7', 'flow', 'capture'];

interface LiveAgent {
  dir: string;
  port(service: string): number;
  children: Map<string, ChildProcess>;
  stderr: Map<string, string>;
}

let portBase = 20000 + (process.pid % 400) * 20;

/** Starts the five services in live mode on `iface`, as pm2 would, each its own process. */
function startAgent(iface: string, extra: string[] = []): LiveAgent {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-live-'));
  const base = (portBase += 10);
  const ports: Record<string, number> = { capture: base, flow: base + 1, quadruple: base + 2, l7: base + 3, sender: base + 4 };
  const config = path.join(dir, 'flowtap.yaml');
  fs.writeFileSync(config, [
    `runtime_dir: ${path.join(dir, 'run')}`,
    'log_level: info',
    `metrics: { ports: ${JSON.stringify(ports)} }`,
    `capture: { source: live, interfaces: [${iface}], tick_interval_ms: 200${extra.length ? ', ' + extra.join(', ') : ''} }`,
    // These tests are about packets; the eBPF path would add the host's other traffic.
    'ebpf: { enabled: false }',
    `sender: { output_dir: ${path.join(dir, 'data')} }`,
    '',
  ].join('\n'));
  const children = new Map<string, ChildProcess>();
  const stderr = new Map<string, string>();
  for (const svc of SERVICES) {
    const child = fork(path.join(ROOT, 'services', svc, 'main.js'), [], {
      env: { ...process.env, FLOWTAP_CONFIG: config, FLOWTAP_MODE: '' },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    stderr.set(svc, '');
    child.stderr!.on('data', (c: Buffer) => stderr.set(svc, (stderr.get(svc)! + c.toString()).slice(-20000)));
    children.set(svc, child);
  }
  return { dir, port: (s) => ports[s], children, stderr };
}

async function metric(agent: LiveAgent, service: string, pattern: RegExp): Promise<number> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${agent.port(service)}/metrics`)).text();
    const m = pattern.exec(text);
    return m ? Number(m[1]) : -1;
  } catch {
    return -1;
  }
}

/** SIGTERM drains the pipeline: every stage flushes and the sender writes everything. */
async function stopAgent(agent: LiveAgent): Promise<void> {
  const exited = [...agent.children.values()].map((c) => new Promise<void>((resolve) => {
    if (c.exitCode !== null) resolve();
    else c.once('exit', () => resolve());
  }));
  for (const c of agent.children.values()) c.kill('SIGTERM');
  await Promise.all(exited);
}

function readJsonl(agent: LiveAgent, name: string): Array<Record<string, any>> {
  const file = path.join(agent.dir, 'data', name);
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
}

/** Packets and bytes per conversation direction, TCP and UDP only (the namespace may add ICMPv6). */
function conversations(l4: ReplayResult['l4']): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {};
  const add = (key: string, p: number, b: number) => {
    if (p === 0) return;
    const v = (out[key] ??= [0, 0]);
    v[0] += p;
    v[1] += b;
  };
  for (const f of l4) {
    if (f.protocol !== 6 && f.protocol !== 17) continue;
    add(conversationKey(f.protocol, f.ip_0, f.client_port, f.ip_1, f.server_port, f.ip_0, f.client_port), f.packet_tx, f.byte_tx);
    add(conversationKey(f.protocol, f.ip_0, f.client_port, f.ip_1, f.server_port, f.ip_1, f.server_port), f.packet_rx, f.byte_rx);
  }
  return Object.fromEntries(Object.entries(out).sort());
}

const requests = (l7: ReplayResult['l7']) => l7
  .map((l) => `${l.l7_protocol} ${l.request_type} ${l.request_domain} ${l.request_resource} ${l.response_code}`).sort();

const KERNEL_PACKETS = /flowtap_capture_kernel_packets_total\{[^}]*\} (\d+)/;
const OPEN_INTERFACES = /flowtap_held_items\{what="interfaces_open"[^}]*\} (\d+)/;

/** `files` are corpus paths relative to the corpus folder. */
async function captureLive(t: import('ava').ExecutionContext, pair: VethPair, files: string[], extra: string[] = [], expected?: number): Promise<LiveAgent> {
  const agent = startAgent(pair.outside, extra);
  t.teardown(async () => {
    for (const c of agent.children.values()) if (c.exitCode === null) c.kill('SIGKILL');
    fs.rmSync(agent.dir, { recursive: true, force: true });
  });
  let open = -1;
  for (let i = 0; i < 100 && open !== 1; i++) {
    open = await metric(agent, 'capture', OPEN_INTERFACES);
    if (open !== 1) await sleep(100);
  }
  t.is(open, 1, `capture opened ${pair.outside}: ${agent.stderr.get('capture')}`);
  // With a capture filter the kernel counts only what passes it.
  const sent = expected ?? await tcpreplay(pair, files);
  if (expected !== undefined) await tcpreplay(pair, files);
  let seen = -1;
  for (let i = 0; i < 100 && seen < sent; i++) {
    seen = await metric(agent, 'capture', KERNEL_PACKETS);
    if (seen < sent) await sleep(100);
  }
  t.true(seen >= sent, `the kernel passed ${seen} of ${sent} packets to the ring`);
  await sleep(300);
  await stopAgent(agent);
  return agent;
}

for (const rel of ['http1/zeek/methods.pcap', 'dns/deepflow/a-and-ns.pcap', 'vlan/zeek/http-vlan-0.pcap']) {
  test.serial(`live capture of ${rel} on a veth gives the flows and L7 records of flowtap replay`, async (t) => {
    const pair = makeVethPair();
    t.teardown(() => pair.remove());
    const file = corpusFile(rel);
    const agent = await captureLive(t, pair, [rel]);
    const replayed = await replayFile(file);
    t.is(replayed.code, 0, replayed.stderr);
    const l4 = readJsonl(agent, 'l4_flow_log.jsonl');
    const l7 = readJsonl(agent, 'l7_flow_log.jsonl');
    t.deepEqual(conversations(l4), conversations(replayed.l4), 'per-flow packets and bytes');
    t.true(replayed.l7.length > 0);
    t.deepEqual(requests(l7), requests(replayed.l7), 'L7 records');
    const metrics = readJsonl(agent, 'metrics.jsonl');
    t.true(metrics.some((m) => m.table === 'network_map.1s'), 'metrics were written');
  });
}

test.serial('a capture filter limits what is captured: udp port 53 sees only DNS', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const files = ['dns/deepflow/a-and-ns.pcap', 'http1/zeek/get.pcap'];
  const dnsFrames = files.reduce((n, f) => n + tsharkFields(corpusFile(f), ['frame.number'], { filter: 'udp.port == 53' }).length, 0);
  const agent = await captureLive(t, pair, files, ['filter: "udp port 53"'], dnsFrames);
  const l4 = readJsonl(agent, 'l4_flow_log.jsonl');
  t.true(l4.length > 0);
  t.true(l4.every((f) => f.protocol === 17 && f.server_port === 53), JSON.stringify(l4.map((f) => [f.protocol, f.server_port])));
  const l7 = readJsonl(agent, 'l7_flow_log.jsonl');
  t.true(l7.length > 0 && l7.every((l) => l.l7_protocol === 'DNS'));
});

test.serial('an interface that goes down is counted and capture resumes when it returns', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const agent = startAgent(pair.outside);
  t.teardown(async () => {
    for (const c of agent.children.values()) if (c.exitCode === null) c.kill('SIGKILL');
    fs.rmSync(agent.dir, { recursive: true, force: true });
  });
  const event = (e: string) => new RegExp(`flowtap_capture_interface_events_total\\{interface="${pair.outside}",event="${e}"[^}]*\\} (\\d+)`);
  t.true(await pollMetric(agent, 'capture', event('opened'), (v) => v >= 1), 'opened');
  setLink(pair, 'down');
  t.true(await pollMetric(agent, 'capture', event('down'), (v) => v >= 1), 'the kernel\'s ENETDOWN is counted');
  t.true(await pollMetric(agent, 'capture', OPEN_INTERFACES, (v) => v === 0), 'the rescan closed the interface while down');
  t.true(await pollMetric(agent, 'capture', event('closed'), (v) => v >= 1), 'closing it is counted');
  setLink(pair, 'up');
  t.true(await waitLinkUp(pair), 'the link is up again');
  t.true(await pollMetric(agent, 'capture', event('opened'), (v) => v >= 2), `reopened when it came back: ${agent.stderr.get('capture')}`);
  const sent = await tcpreplay(pair, ['http1/zeek/get.pcap']);
  t.true(await pollMetric(agent, 'capture', KERNEL_PACKETS, (v) => v >= sent), 'captures again');
  await stopAgent(agent);
  const l7 = readJsonl(agent, 'l7_flow_log.jsonl');
  t.is(l7.length, 1, `the request made after the interface returned: l4 ${JSON.stringify(readJsonl(agent, 'l4_flow_log.jsonl'))} ${agent.stderr.get('capture')}`);
});

test.serial('a non-existent interface is a clear error', async (t) => {
  const agent = startAgent('ft-no-such-if0');
  t.teardown(() => fs.rmSync(agent.dir, { recursive: true, force: true }));
  const capture = agent.children.get('capture')!;
  const code = await new Promise<number | null>((resolve) => capture.once('exit', resolve));
  t.is(code, 2);
  t.regex(agent.stderr.get('capture')!, /interface 'ft-no-such-if0' does not exist/);
  for (const c of agent.children.values()) if (c.exitCode === null) c.kill('SIGKILL');
});

async function pollMetric(agent: LiveAgent, service: string, re: RegExp, ok: (v: number) => boolean, tries = 100): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (ok(await metric(agent, service, re))) return true;
    await sleep(100);
  }
  return false;
}
