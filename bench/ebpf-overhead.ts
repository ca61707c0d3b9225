// Overhead of the eBPF socket tracer: requests/s of a loopback HTTP benchmark (wrk against a
// Node http server, both traced) without and with the tracer attached, alternating in one run.
// `node dist/bench/ebpf-overhead.js [seconds] [rounds]`; needs root, BTF and wrk.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { EbpfCollector } from '../services/capture/ebpf-collector';

const SERVER = `
  const http = require('http');
  const body = Buffer.alloc(512, 'x');
  const s = http.createServer((req, res) => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end(body); });
  s.listen(0, '127.0.0.1', () => process.stdout.write(s.address().port + '\\n'));`;

export interface OverheadResult {
  hook: 'raw' | 'tracepoints';
  withoutRps: number[];
  withRps: number[];
  /** CPU of the server and wrk per request (µs), from /proc: less sensitive to other load than req/s. */
  withoutUsPerRequest: number[];
  withUsPerRequest: number[];
  /** 1-minute load average at each traced run (other work on the machine). */
  load: number[];
  /** Median loss, percent: 100 * (1 - with / without). */
  lossPercent: number;
  eventsPerRun: number[];
  lost: number;
  /** CPU the collector (this process: ring drain, decode, batching) used per run, in % of one core. */
  collectorCpuPercent: number[];
  collectorUsPerEvent: number[];
}

/** utime + stime of a process, seconds. */
function cpuSeconds(pid: number | 'self'): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

/**
 * wrk as a child, so that this event loop keeps draining the ring meanwhile. Its CPU comes from
 * the shell that waited for it (cutime + cstime).
 */
function wrkRun(port: number, seconds: number): Promise<{ rps: number; requests: number; cpu: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', `wrk -t1 -c32 -d${seconds}s http://127.0.0.1:${port}/ && cat /proc/$$/stat`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout!.on('data', (d) => { out += d; });
    child.on('close', () => {
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      const requests = /(\d+) requests in/.exec(out);
      const stat = out.trim().split('\n').pop()!.split(') ')[1]?.split(' ') ?? [];
      if (rps && requests && stat.length > 14) resolve({ rps: Number(rps[1]), requests: Number(requests[1]), cpu: (Number(stat[13]) + Number(stat[14])) / 100 });
      else reject(new Error(`wrk printed no Requests/sec:\n${out}`));
    });
  });
}

function wrk(port: number, seconds: number): number {
  const out = execFileSync('wrk', ['-t1', '-c32', `-d${seconds}s`, `http://127.0.0.1:${port}/`], { encoding: 'utf8' });
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!m) throw new Error(`wrk printed no Requests/sec:\n${out}`);
  return Number(m[1]);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function measureEbpfOverhead(seconds = 5, rounds = 3, hook: 'raw' | 'tracepoints' = 'tracepoints'): Promise<OverheadResult> {
  const server: ChildProcess = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve) => server.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
    wrk(port, 1); // warm-up
    const result: OverheadResult = {
      hook, withoutRps: [], withRps: [], withoutUsPerRequest: [], withUsPerRequest: [], load: [], lossPercent: 0,
      eventsPerRun: [], lost: 0, collectorCpuPercent: [], collectorUsPerEvent: [],
    };
    const serverPid = server.pid!;
    for (let r = 0; r < rounds; r++) {
      const s0 = cpuSeconds(serverPid);
      const plain = await wrkRun(port, seconds);
      result.withoutRps.push(plain.rps);
      result.withoutUsPerRequest.push((cpuSeconds(serverPid) - s0 + plain.cpu) * 1e6 / plain.requests);
      let events = 0;
      const collector = EbpfCollector.start({ capBytes: 4096, syscallHook: hook }, (batch) => { events += batch.count; });
      if (collector.packetOnly) throw new Error(collector.statusMessage);
      // CPU of the consumer while wrk runs (loading, attaching and detaching are not per event).
      const cpu0 = process.cpuUsage();
      const wall0 = Date.now();
      const s1 = cpuSeconds(serverPid);
      const traced = await wrkRun(port, seconds);
      const rps = traced.rps;
      result.withUsPerRequest.push((cpuSeconds(serverPid) - s1 + traced.cpu) * 1e6 / traced.requests);
      result.load.push(Number(fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]));
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
  const hook = process.argv[4] === 'raw' ? 'raw' : 'tracepoints';
  measureEbpfOverhead(seconds, rounds, hook).then((r) => {
    const fmt = (x: number): string => Math.round(x).toLocaleString('en');
    console.log(`ebpf overhead (${hook} hook): wrk -t1 -c32 ${seconds}s x ${rounds}, Node http server, 512 B responses, loopback`);
    console.log(`  without tracer: ${r.withoutRps.map(fmt).join(', ')} req/s (median ${fmt(median(r.withoutRps))})`);
    console.log(`  with tracer:    ${r.withRps.map(fmt).join(', ')} req/s (median ${fmt(median(r.withRps))})`);
    console.log(`  loss: ${r.lossPercent.toFixed(1)} %  events per run: ${r.eventsPerRun.map(fmt).join(', ')}  lost: ${r.lost}`);
    console.log(`  server+wrk CPU per request: without ${r.withoutUsPerRequest.map((x) => x.toFixed(1)).join(', ')} µs, with ${r.withUsPerRequest.map((x) => x.toFixed(1)).join(', ')} µs (median +${(100 * (median(r.withUsPerRequest) / median(r.withoutUsPerRequest) - 1)).toFixed(1)} %)  load ${r.load.join(', ')}`);
    console.log(`  collector CPU: ${r.collectorCpuPercent.map((x) => x.toFixed(0)).join(', ')} % of one core; ${r.collectorUsPerEvent.map((x) => x.toFixed(2)).join(', ')} µs per event`);
  }).catch((err) => { console.error(err); process.exitCode = 1; });
}
