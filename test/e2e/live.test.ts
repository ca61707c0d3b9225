// Live capture through the five real processes: corpus files replayed with tcpreplay into a
// veth pair whose far end sits in a namespace made for the test, captured on the near end by the
// AF_PACKET addon, and compared with `flowtap replay` of the same file.
import test from 'ava';
import { makeVethPair, replay as tcpreplay, setLink, sleep, waitLinkUp, type VethPair } from '../native/veth';
import { startAgent, type LiveAgent } from '../support/live-agent';
import { replayFile, type ReplayResult } from '../support/replay';
import { conversationKey, corpusFile, tsharkFields } from '../support/tshark';

let portBase = 20000 + (process.pid % 400) * 20;

/** The five services capturing live on `iface` (the eBPF path would add the host's other traffic). */
function startLiveCapture(iface: string, extra: string[] = []): LiveAgent {
  return startAgent({
    portBase: (portBase += 10),
    config: [
      'log_level: info',
      `capture: { source: live, interfaces: [${iface}], tick_interval_ms: 200${extra.length ? ', ' + extra.join(', ') : ''} }`,
      'ebpf: { enabled: false }',
      'sender: { output_dir: $DATA }',
    ],
  });
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
  const agent = startLiveCapture(pair.outside, extra);
  t.teardown(() => agent.kill());
  let open = -1;
  for (let i = 0; i < 100 && open !== 1; i++) {
    open = await agent.metric('capture', OPEN_INTERFACES);
    if (open !== 1) await sleep(100);
  }
  t.is(open, 1, `capture opened ${pair.outside}: ${agent.stderr('capture')}`);
  // With a capture filter the kernel counts only what passes it.
  const sent = expected ?? await tcpreplay(pair, files);
  if (expected !== undefined) await tcpreplay(pair, files);
  let seen = -1;
  for (let i = 0; i < 100 && seen < sent; i++) {
    seen = await agent.metric('capture', KERNEL_PACKETS);
    if (seen < sent) await sleep(100);
  }
  t.true(seen >= sent, `the kernel passed ${seen} of ${sent} packets to the ring`);
  await sleep(300);
  await agent.stop();
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
    const l4 = agent.records('l4_flow_log');
    const l7 = agent.records('l7_flow_log');
    t.deepEqual(conversations(l4), conversations(replayed.l4), 'per-flow packets and bytes');
    t.true(replayed.l7.length > 0);
    t.deepEqual(requests(l7), requests(replayed.l7), 'L7 records');
    const metrics = agent.records('metrics');
    t.true(metrics.some((m) => m.table === 'network_map.1s'), 'metrics were written');
  });
}

test.serial('a capture filter limits what is captured: udp port 53 sees only DNS', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const files = ['dns/deepflow/a-and-ns.pcap', 'http1/zeek/get.pcap'];
  const dnsFrames = files.reduce((n, f) => n + tsharkFields(corpusFile(f), ['frame.number'], { filter: 'udp.port == 53' }).length, 0);
  const agent = await captureLive(t, pair, files, ['filter: "udp port 53"'], dnsFrames);
  const l4 = agent.records('l4_flow_log');
  t.true(l4.length > 0);
  t.true(l4.every((f) => f.protocol === 17 && f.server_port === 53), JSON.stringify(l4.map((f) => [f.protocol, f.server_port])));
  const l7 = agent.records('l7_flow_log');
  t.true(l7.length > 0 && l7.every((l) => l.l7_protocol === 'DNS'));
});

test.serial('an interface that goes down is counted and capture resumes when it returns', async (t) => {
  const pair = makeVethPair();
  t.teardown(() => pair.remove());
  const agent = startLiveCapture(pair.outside);
  t.teardown(() => agent.kill());
  const event = (e: string) => new RegExp(`flowtap_capture_interface_events_total\\{interface="${pair.outside}",event="${e}"[^}]*\\} (\\d+)`);
  t.true(await pollMetric(agent, 'capture', event('opened'), (v) => v >= 1), 'opened');
  setLink(pair, 'down');
  t.true(await pollMetric(agent, 'capture', event('down'), (v) => v >= 1), 'the kernel\'s ENETDOWN is counted');
  t.true(await pollMetric(agent, 'capture', OPEN_INTERFACES, (v) => v === 0), 'the rescan closed the interface while down');
  t.true(await pollMetric(agent, 'capture', event('closed'), (v) => v >= 1), 'closing it is counted');
  setLink(pair, 'up');
  t.true(await waitLinkUp(pair), 'the link is up again');
  t.true(await pollMetric(agent, 'capture', event('opened'), (v) => v >= 2), `reopened when it came back: ${agent.stderr('capture')}`);
  const sent = await tcpreplay(pair, ['http1/zeek/get.pcap']);
  t.true(await pollMetric(agent, 'capture', KERNEL_PACKETS, (v) => v >= sent), 'captures again');
  await agent.stop();
  const l7 = agent.records('l7_flow_log');
  t.is(l7.length, 1, `the request made after the interface returned: l4 ${JSON.stringify(agent.records('l4_flow_log'))} ${agent.stderr('capture')}`);
});

test.serial('a non-existent interface is a clear error', async (t) => {
  const agent = startLiveCapture('ft-no-such-if0');
  t.teardown(() => agent.kill());
  const capture = agent.children.get('capture')!;
  const code = await new Promise<number | null>((resolve) => capture.once('exit', resolve));
  t.is(code, 2);
  t.regex(agent.stderr('capture'), /interface 'ft-no-such-if0' does not exist/);
});

async function pollMetric(agent: LiveAgent, service: string, re: RegExp, ok: (v: number) => boolean, tries = 100): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (ok(await agent.metric(service, re))) return true;
    await sleep(100);
  }
  return false;
}
