// The live pipeline under load: a generated capture of >= 1 M packets is sent with tcpreplay
// into a veth whose far end sits in a namespace made for the run, while the five services
// capture live on the near end and `tcpdump -w /dev/null` listens on the same veth. Prints both
// drop counts at each sending rate.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeVethPair, waitLinkUp, type VethPair } from '../test/native/veth';
import { sleep, startAgent } from '../test/support/live-agent';
import { writeSyntheticCapture } from './gen-capture';

interface LiveRun {
  rate: string;
  sent: number;
  senderPps: number;
  flowtapPackets: number;
  flowtapDrops: number;
  tcpdumpCaptured: number;
  tcpdumpDropped: number;
  flows: number;
}

async function run(pair: VethPair, file: string, rateArgs: string[], basePort: number): Promise<LiveRun> {
  const agent = startAgent({
    portBase: basePort,
    config: [
      `capture: { source: live, interfaces: [${pair.outside}] }`,
      'ebpf: { enabled: false }',
      // Every flow and request is written, so that the flow count checks for loss end to end.
      'quadruple: { l4_log_per_second: 100000000 }',
      'l7: { l7_log_per_second: 100000000 }',
      'sender: { output_dir: $DATA, sinks: [jsonl] }',
    ],
    env: { FLOWTAP_LOG_LEVEL: 'warn' },
  });
  const kernelPackets = /flowtap_capture_kernel_packets_total\{[^}]*\} (\d+)/;
  try {
    for (let i = 0; i < 100 && (await agent.metric('capture', /flowtap_held_items\{what="interfaces_open"[^}]*\} (\d+)/)) !== 1; i++) await sleep(100);
    await waitLinkUp(pair);
    const tcpdump = spawn('tcpdump', ['-i', pair.outside, '-w', '/dev/null', '-n'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let tcpdumpErr = '';
    tcpdump.stderr!.on('data', (c: Buffer) => { tcpdumpErr += c.toString(); });
    await sleep(1000);
    const out = execFileSync('ip', ['netns', 'exec', pair.ns, 'tcpreplay', '-i', pair.inside, '--preload-pcap', ...rateArgs, file], { encoding: 'utf8', maxBuffer: 1 << 24 });
    const sent = Number(/Successful packets:\s+(\d+)/.exec(out)?.[1] ?? 0);
    const senderPps = Number(/Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps/.exec(out)?.[1] ?? 0);
    // Let both captures take what the kernel queued.
    let last = -1;
    for (let i = 0; i < 60; i++) {
      await sleep(500);
      const now = await agent.metric('capture', kernelPackets);
      if (now === last) break;
      last = now;
    }
    const flowtapPackets = await agent.metric('capture', kernelPackets);
    const flowtapDrops = Math.max(0, await agent.metric('capture', /flowtap_capture_kernel_drops_total\{[^}]*\} (\d+)/));
    tcpdump.kill('SIGINT');
    await new Promise((r) => tcpdump.once('exit', r));
    const tcpdumpCaptured = Number(/(\d+) packets captured/.exec(tcpdumpErr)?.[1] ?? -1);
    const tcpdumpDropped = Number(/(\d+) packets dropped by kernel/.exec(tcpdumpErr)?.[1] ?? -1);
    await agent.stop();
    const flows = new Set(agent.records('l4_flow_log').map((f) => f.flow_id)).size;
    return { rate: rateArgs.join(' '), sent, senderPps, flowtapPackets, flowtapDrops, tcpdumpCaptured, tcpdumpDropped, flows };
  } finally {
    agent.kill();
  }
}

export async function benchLive(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-livebench-'));
  const file = path.join(dir, 'synthetic.pcap');
  const gen = writeSyntheticCapture(file, 1_000_000);
  const pair = makeVethPair();
  try {
    let port = 23000 + (process.pid % 100) * 10;
    for (const rate of [['--topspeed'], ['--pps=100000'], ['--pps=50000']]) {
      const r = await run(pair, file, rate, (port += 10));
      console.log(`live ${r.rate.padEnd(12)} sent ${r.sent} at ${Math.round(r.senderPps)} pps | flowtap: ring ${r.flowtapPackets}, kernel drops ${r.flowtapDrops}, flows ${r.flows}/${gen.httpFlows + gen.dnsLookups} | tcpdump: captured ${r.tcpdumpCaptured}, kernel drops ${r.tcpdumpDropped}`);
    }
  } finally {
    pair.remove();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  benchLive().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
