// Overhead of the eBPF socket tracer: requests/s of a loopback HTTP benchmark (wrk against a
// Node http server, both traced) without and with the tracer attached, alternating in one run.
// `node dist/bench/ebpf-overhead.js [seconds] [rounds]`; needs root, BTF and wrk.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { EbpfCollector } from '../services/capture/ebpf-collector';

const SERVER = `
  const http = require('http');
  const body = Buffer.alloc(512, 'x');
  const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(body); });
  s.listen(0, '127.0.0.1', () => process.stdout.write(s.address().port + '\\n'));`;

export interface OverheadResult {
  withoutRps: number[];
  withRps: number[];
  /** Median loss, percent: 100 * (1 - with / without). */
  lossPercent: number;
  eventsPerRun: number[];
  lost: number;
  /** CPU the collector (this process: ring drain, decode, batching) used per run, in % of one core. */
  collectorCpuPercent: number[];
  collectorUsPerEvent: number[];
}

function wrk(port: number, seconds: number): number {
  const out = execFileSync('wrk', ['-t1', '-c32', `-d${seconds}s`, `http://127.0.0.1:${port}/`], { encoding: 'utf8' });
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!m) throw new Error(`wrk printed no Requests/sec:\n${out}`);
  return Number(m[1]);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function measureEbpfOverhead(seconds = 5, rounds = 3): Promise<OverheadResult> {
  const server: ChildProcess = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve) => server.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
    wrk(port, 1); // warm-up
    const result: OverheadResult = { withoutRps: [], withRps: [], lossPercent: 0, eventsPerRun: [], lost: 0, collectorCpuPercent: [], collectorUsPerEvent: [] };
    for (let r = 0; r < rounds; r++) {
      result.withoutRps.push(wrk(port, seconds));
      let events = 0;
      const collector = EbpfCollector.start({ capBytes: 4096 }, (batch) => { events += batch.count; });
      if (collector.packetOnly) throw new Error(collector.statusMessage);
      // CPU of the consumer while wrk runs (loading, attaching and detaching are not per event).
      const cpu0 = process.cpuUsage();
      const wall0 = Date.now();
      // wrk runs as a child so this event loop keeps draining the ring meanwhile.
      const rps = await new Promise<number>((resolve, reject) => {
        const child = spawn('wrk', ['-t1', '-c32', `-d${seconds}s`, `http://127.0.0.1:${port}/`], { stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout!.on('data', (d) => { out += d; });
        child.on('close', () => {
          const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
          if (m) resolve(Number(m[1])); else reject(new Error(out));
        });
      });
      collector.drain();
      const cpu = process.cpuUsage(cpu0);
      result.collectorCpuPercent.push((cpu.user + cpu.system) / 10 / (Date.now() - wall0));
      result.collectorUsPerEvent.push((cpu.user + cpu.system) / Math.max(events, 1));
      result.withRps.push(rps);
      result.eventsPerRun.push(events);
      result.lost += collector.drops.ringbuf_full;
      collector.close();
    }
    result.lossPercent = 100 * (1 - median(result.withRps) / median(result.withoutRps));
    return result;
  } finally {
    server.kill();
  }
}

if (require.main === module) {
  const seconds = Number(process.argv[2] ?? 5);
  const rounds = Number(process.argv[3] ?? 3);
  measureEbpfOverhead(seconds, rounds).then((r) => {
    const fmt = (x: number): string => Math.round(x).toLocaleString('en');
    console.log(`ebpf overhead: wrk -t1 -c32 ${seconds}s x ${rounds}, Node http server, 512 B responses, loopback`);
    console.log(`  without tracer: ${r.withoutRps.map(fmt).join(', ')} req/s (median ${fmt(median(r.withoutRps))})`);
    console.log(`  with tracer:    ${r.withRps.map(fmt).join(', ')} req/s (median ${fmt(median(r.withRps))})`);
    console.log(`  loss: ${r.lossPercent.toFixed(1)} %  events per run: ${r.eventsPerRun.map(fmt).join(', ')}  lost: ${r.lost}`);
    console.log(`  collector CPU: ${r.collectorCpuPercent.map((x) => x.toFixed(0)).join(', ')} % of one core; ${r.collectorUsPerEvent.map((x) => x.toFixed(2)).join(', ')} µs per event`);
  }).catch((err) => { console.error(err); process.exitCode = 1; });
}
