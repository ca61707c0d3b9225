// Overhead of the eBPF socket tracer: requests/s of a loopback HTTP benchmark (wrk against a
// Node http server, both traced) without and with the tracer attached, alternating in one run.
// `node dist/bench/ebpf-overhead.js [seconds] [rounds] [tracepoints|raw]`; needs root, BTF and wrk.
// `node dist/bench/ebpf-overhead.js pingpong [rounds] [tracepoints|raw]`: CPU per socket syscall of
// a C ping-pong (test/ebpf/pingpong.c, built with clang) without and with the tracer.
// `node dist/bench/ebpf-overhead.js selfpair [rounds] [tracepoints|raw]`: the same for one thread
// that talks to itself over one TCP connection (test/ebpf/selfpair.c): no sleeping, so it is
// usable on an idle VM, where the ping-pong's wakeups cost more than the tracer.
// `node dist/bench/ebpf-overhead.js fileio [rounds] [tracepoints|raw]`: what the tracer costs I/O
// that is not on a socket (dd of 512 B blocks from /dev/zero to /dev/null), CPU ns per syscall.
// `node dist/bench/ebpf-overhead.js floor [seconds] [rounds]`: the wrk benchmark for two variants
// of the object built from bpf/socket_trace.bpf.c (VARIANT_HOOKS_ONLY, VARIANT_FLOOR: what the
// tracepoints cost alone, and what any tracer reporting these events must do) and the shipped one.
// With `sysctl kernel.bpf_stats_enabled=1` it also prints the kernel's BPF time per program run
// (run_time_ns / run_cnt, load-independent). FLOWTAP_EBPF_OBJECT=<path> loads another object
// (A/B of two builds of bpf/socket_trace.bpf.c in one session); FLOWTAP_EBPF_CAP, _RING and
// _WAKEUP set capBytes (default 4096), ringBytes and wakeupBytes.
import { ChildProcess, execFile, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EbpfCollector, EbpfCollectorConfig } from '../services/capture/ebpf-collector';
import { medianCi, windowRate } from './stats';

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
  /**
   * Loss of each traced run against the untraced run just before it, percent, and their median:
   * slow drifts of the host's load (which moved requests/s by 1.7x between identical runs on the
   * shared VM) cancel within a pair.
   */
  pairedLossPercent: number[];
  pairedLossMedian: number;
  /**
   * Distribution-free confidence interval of that median (order statistics of the paired losses,
   * from the binomial distribution): what the host's noise allows one to say about the loss.
   */
  pairedLossCi: { level: number; low: number; high: number };
  /** The same pairing for the server's and wrk's CPU per request: increase per round, percent, and its median's interval. */
  pairedCpuIncreasePercent: number[];
  pairedCpuIncreaseCi: { level: number; low: number; high: number };
  /**
   * The server's responses per second in 100 ms windows of each run, 90th percentile (see
   * windowRate): the rate of the run's undisturbed moments. The host's interference comes as dips
   * of 0.1 - 0.7 s and steps of seconds that only ever slow a run, so this moves less between
   * identical runs than the run's average. Paired like the averages: loss per round, percent, median and interval.
   */
  withoutP90Rps: number[];
  withP90Rps: number[];
  pairedP90LossPercent: number[];
  pairedP90LossCi: { level: number; low: number; high: number };
  eventsPerRun: number[];
  lost: number;
  /** CPU the collector (this process: ring drain, decode, batching) used per run, in % of one core. */
  collectorCpuPercent: number[];
  collectorUsPerEvent: number[];
  /** bpf_stats over the traced runs, per program name (empty when kernel.bpf_stats_enabled is 0). */
  bpfStats: Record<string, { runNs: number; runs: number }>;
  /**
   * BPF run time of all the tracer's programs per event, ns (0 without bpf_stats). Includes the
   * entry programs run for every read/write of the host, so other load raises it.
   */
  bpfNsPerEvent: number;
}

function envOptions(): EbpfCollectorConfig {
  const num = (name: string): number | undefined => (process.env[name] ? Number(process.env[name]) : undefined);
  return {
    capBytes: num('FLOWTAP_EBPF_CAP') ?? 4096, ringBytes: num('FLOWTAP_EBPF_RING'), wakeupBytes: num('FLOWTAP_EBPF_WAKEUP'),
    objectPath: process.env.FLOWTAP_EBPF_OBJECT || undefined,
  };
}

interface ProgStats { name: string; runNs: number; runs: number }

/** run_time_ns/run_cnt of every loaded socket-tracer program (by id), when bpf_stats is on. */
function progStats(): Map<number, ProgStats> {
  const out = new Map<number, ProgStats>();
  if (fs.readFileSync('/proc/sys/kernel/bpf_stats_enabled', 'utf8').trim() !== '1') return out;
  const progs = JSON.parse(execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8', maxBuffer: 64 << 20 })) as
    { id: number; name?: string; run_time_ns?: number; run_cnt?: number }[];
  for (const p of progs) {
    if (p.name && /^(enter_|exit_|raw_sys_|tls_|sock_|io_exit_)/.test(p.name)) out.set(p.id, { name: p.name, runNs: p.run_time_ns ?? 0, runs: p.run_cnt ?? 0 });
  }
  return out;
}

/**
 * CPU (utime + stime of its children, seconds) of a shell whose last output line is its own
 * /proc/$$/stat (`<command> && cat /proc/$$/stat`); undefined when that line is missing.
 */
function shellChildrenCpu(out: string): number | undefined {
  const stat = out.trim().split('\n').pop()!.split(') ')[1]?.split(' ') ?? [];
  return stat.length > 14 ? (Number(stat[13]) + Number(stat[14])) / 100 : undefined;
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
function wrkRun(port: number, seconds: number, serverPid: number): Promise<{ rps: number; requests: number; cpu: number; p90Rps: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', `wrk -t1 -c32 -d${seconds}s http://127.0.0.1:${port}/ && cat /proc/$$/stat`], { stdio: ['ignore', 'pipe', 'inherit'] });
    const windows = new ResponseWindows(serverPid);
    let out = '';
    child.stdout!.on('data', (d) => { out += d; });
    child.on('close', () => {
      const rates = windows.stop();
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
      const requests = /(\d+) requests in/.exec(out);
      const cpu = shellChildrenCpu(out);
      if (rps && requests && cpu !== undefined) resolve({ rps: Number(rps[1]), requests: Number(requests[1]), cpu, p90Rps: windowRate(rates) });
      else reject(new Error(`wrk printed no Requests/sec:\n${out}`));
    });
  });
}

/** Write syscalls of a process so far (/proc/<pid>/io syscw): the bench's server makes one writev per response. */
function writeSyscalls(pid: number): number {
  return Number(/syscw: (\d+)/.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'))![1]);
}

/**
 * The server's responses per second in 100 ms windows, from its write syscalls, while a run
 * lasts. Each window's rate uses the time that really passed (timers are late under load).
 */
class ResponseWindows {
  private readonly rates: number[] = [];
  private readonly timer: NodeJS.Timeout;
  private last: number;
  private lastAt = process.hrtime.bigint();

  constructor(private readonly pid: number) {
    this.last = writeSyscalls(pid);
    this.timer = setInterval(() => {
      const now = process.hrtime.bigint();
      const count = writeSyscalls(this.pid);
      this.rates.push((count - this.last) / (Number(now - this.lastAt) / 1e9));
      this.last = count;
      this.lastAt = now;
    }, 100);
  }

  stop(): number[] {
    clearInterval(this.timer);
    return this.rates;
  }
}

function wrk(port: number, seconds: number): number {
  const out = execFileSync('wrk', ['-t1', '-c32', `-d${seconds}s`, `http://127.0.0.1:${port}/`], { encoding: 'utf8' });
  const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!m) throw new Error(`wrk printed no Requests/sec:\n${out}`);
  return Number(m[1]);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export async function measureEbpfOverhead(seconds = 5, rounds = 3, hook: 'raw' | 'tracepoints' = 'tracepoints', objectPath?: string): Promise<OverheadResult> {
  const server: ChildProcess = spawn(process.execPath, ['-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve) => server.stdout!.once('data', (d) => resolve(Number(String(d).trim()))));
    wrk(port, 1); // warm-up
    const result: OverheadResult = {
      hook, withoutRps: [], withRps: [], withoutUsPerRequest: [], withUsPerRequest: [], load: [], lossPercent: 0, pairedLossPercent: [], pairedLossMedian: 0, pairedLossCi: { level: 0, low: NaN, high: NaN },
      pairedCpuIncreasePercent: [], pairedCpuIncreaseCi: { level: 0, low: NaN, high: NaN },
      withoutP90Rps: [], withP90Rps: [], pairedP90LossPercent: [], pairedP90LossCi: { level: 0, low: NaN, high: NaN },
      eventsPerRun: [], lost: 0, collectorCpuPercent: [], collectorUsPerEvent: [], bpfStats: {}, bpfNsPerEvent: 0,
    };
    let bpfNs = 0;
    let bpfEvents = 0;
    const serverPid = server.pid!;
    const untracedRun = async (): Promise<void> => {
      const s0 = cpuSeconds(serverPid);
      const plain = await wrkRun(port, seconds, serverPid);
      result.withoutRps.push(plain.rps);
      result.withoutP90Rps.push(plain.p90Rps);
      result.withoutUsPerRequest.push((cpuSeconds(serverPid) - s0 + plain.cpu) * 1e6 / plain.requests);
    };
    const tracedRun = async (): Promise<void> => {
      let events = 0;
      const options = { ...envOptions(), syscallHook: hook };
      if (objectPath) options.objectPath = objectPath;
      const collector = EbpfCollector.start(options, (batch) => { events += batch.count; });
      if (collector.packetOnly) throw new Error(collector.statusMessage);
      // CPU of the consumer while wrk runs (loading, attaching and detaching are not per event).
      const cpu0 = process.cpuUsage();
      const wall0 = Date.now();
      const s1 = cpuSeconds(serverPid);
      const stats0 = progStats();
      const traced = await wrkRun(port, seconds, serverPid);
      result.withP90Rps.push(traced.p90Rps);
      const stats1 = progStats();
      result.withUsPerRequest.push((cpuSeconds(serverPid) - s1 + traced.cpu) * 1e6 / traced.requests);
      result.load.push(Number(fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]));
      collector.drain();
      const cpu = process.cpuUsage(cpu0);
      result.collectorCpuPercent.push((cpu.user + cpu.system) / 10 / (Date.now() - wall0));
      result.collectorUsPerEvent.push((cpu.user + cpu.system) / Math.max(events, 1));
      result.withRps.push(traced.rps);
      result.eventsPerRun.push(events);
      if (stats1.size > 0) {
        for (const [id, after] of stats1) {
          const before = stats0.get(id);
          if (!before) continue;
          const acc = result.bpfStats[after.name] ?? (result.bpfStats[after.name] = { runNs: 0, runs: 0 });
          acc.runNs += after.runNs - before.runNs;
          acc.runs += after.runs - before.runs;
          bpfNs += after.runNs - before.runNs;
        }
        bpfEvents += events;
      }
      result.lost += collector.drops.ringbuf_full;
      // Until its links are gone the tracer still runs: the next run must not start before.
      await collector.close();
    };
    // The order within a pair alternates (untraced first in even rounds, traced first in odd
    // ones): whatever the run before leaves behind (the server's garbage, the loader's work)
    // then weighs on both sides equally instead of always on the traced one.
    for (let r = 0; r < rounds; r++) {
      if (r % 2 === 0) {
        await untracedRun();
        await tracedRun();
      } else {
        await tracedRun();
        await untracedRun();
      }
    }
    result.lossPercent = 100 * (1 - median(result.withRps) / median(result.withoutRps));
    result.pairedLossPercent = result.withRps.map((w, i) => 100 * (1 - w / result.withoutRps[i]));
    result.pairedLossMedian = median(result.pairedLossPercent);
    result.pairedLossCi = medianCi(result.pairedLossPercent);
    result.pairedCpuIncreasePercent = result.withUsPerRequest.map((w, i) => 100 * (w / result.withoutUsPerRequest[i] - 1));
    result.pairedCpuIncreaseCi = medianCi(result.pairedCpuIncreasePercent);
    result.pairedP90LossPercent = result.withP90Rps.map((w, i) => 100 * (1 - w / result.withoutP90Rps[i]));
    result.pairedP90LossCi = medianCi(result.pairedP90LossPercent);
    result.bpfNsPerEvent = bpfEvents > 0 ? bpfNs / bpfEvents : 0;
    return result;
  } finally {
    server.kill();
  }
}

/** Builds bpf/socket_trace.bpf.c with -DVARIANT_<variant> into a temp dir (flags as bpf/build.sh's); returns the object's path. */
export function buildTracerVariant(variant: 'HOOKS_ONLY' | 'FLOOR'): string {
  const bpfDir = path.resolve(__dirname, '..', '..', 'bpf');
  const obj = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-variant-')), `socket_trace_${variant.toLowerCase()}.bpf.o`);
  execFileSync('clang', ['-O2', '-g', '-target', 'bpf', '-D__TARGET_ARCH_x86', `-DVARIANT_${variant}`, `-I${bpfDir}`, '-Wall', '-Wno-unused-function',
    '-c', path.join(bpfDir, 'socket_trace.bpf.c'), '-o', obj]);
  return obj;
}

/**
 * The wrk benchmark for the hooks alone, the floor of any tracer that reports these events, and
 * the shipped tracer, one after another (each paired with its own untraced runs).
 */
export async function measureTracerFloor(seconds = 3, rounds = 15): Promise<{ variant: string; result: OverheadResult }[]> {
  const variants: { variant: string; object?: string }[] = [
    { variant: 'hooks only', object: buildTracerVariant('HOOKS_ONLY') },
    { variant: 'floor', object: buildTracerVariant('FLOOR') },
    { variant: 'shipped', object: process.env.FLOWTAP_EBPF_OBJECT || undefined },
  ];
  const out: { variant: string; result: OverheadResult }[] = [];
  for (const v of variants) out.push({ variant: v.variant, result: await measureEbpfOverhead(seconds, rounds, 'tracepoints', v.object) });
  return out;
}

/** Builds one of test/ebpf/*.c into a temp dir; returns the binary's path. */
function buildCProgram(name: string): string {
  const source = path.resolve(__dirname, '..', '..', 'test', 'ebpf', `${name}.c`);
  const bin = path.join(fs.mkdtempSync(path.join(os.tmpdir(), `flowtap-${name}-`)), name);
  execFileSync('clang', ['-O2', '-o', bin, source]);
  return bin;
}

export interface PingPongResult {
  /** CPU µs (both processes, user + system) per socket syscall, one figure per round. */
  withoutUs: number[];
  withUs: number[];
  lost: number;
}

/**
 * Prices the tracer per traced socket syscall: a C ping-pong of 100 B messages over one TCP
 * loopback connection (4 syscalls per round trip), CPU time from getrusage, rounds alternating
 * without and with the tracer. CPU time, not wall time: other load on the machine moves it less.
 */
export async function measurePingPong(rounds = 5, hook: 'raw' | 'tracepoints' = 'tracepoints', messages = 200_000, program: 'pingpong' | 'selfpair' = 'pingpong'): Promise<PingPongResult> {
  const bin = buildCProgram(program);
  // Asynchronous: this event loop drains the ring meanwhile (a blocked loop would let it fill and
  // the tracer would drop events, which is cheaper than delivering them).
  const once = (): Promise<number> => new Promise((resolve, reject) => {
    execFile(bin, [String(messages)], (err, out) => (err ? reject(err) : resolve(Number(out.trim()))));
  });
  const r = await alternate(rounds, hook, once);
  return { withoutUs: r.without, withUs: r.with, lost: r.lost };
}

/**
 * `rounds` times: `once` without the tracer, then with it attached (the collector drains the ring
 * meanwhile, since `once` is asynchronous); `lost` sums the events the ring dropped.
 */
async function alternate(rounds: number, hook: 'raw' | 'tracepoints', once: () => Promise<number>): Promise<{ without: number[]; with: number[]; lost: number }> {
  const result = { without: [] as number[], with: [] as number[], lost: 0 };
  for (let r = 0; r < rounds; r++) {
    result.without.push(await once());
    const collector = EbpfCollector.start({ ...envOptions(), syscallHook: hook }, () => undefined);
    if (collector.packetOnly) throw new Error(collector.statusMessage);
    result.with.push(await once());
    collector.drain();
    result.lost += collector.drops.ringbuf_full;
    await collector.close();
  }
  return result;
}

/** utime + stime (seconds) of a command run by a shell, from the shell's cutime + cstime. */
function childCpuSeconds(command: string): Promise<number> {
  return new Promise((resolve, reject) => {
    execFile('sh', ['-c', `${command} && cat /proc/$$/stat`], (err, out) => {
      if (err) return reject(err);
      const cpu = shellChildrenCpu(out);
      if (cpu !== undefined) resolve(cpu);
      else reject(new Error(`no /proc stat line after ${command}:\n${out}`));
    });
  });
}

/**
 * Prices the tracer for I/O that is not on a socket: each write runs the send entry program, and
 * on kernels without the sock/ tracepoints each read and write that moves bytes also runs an
 * exit program up to the socket check. CPU ns per syscall of dd copying 512 B blocks from
 * /dev/zero to /dev/null, rounds alternating.
 */
export async function measureFileIo(rounds = 3, hook: 'raw' | 'tracepoints' = 'tracepoints', blocks = 2_000_000): Promise<{ withoutNs: number[]; withNs: number[]; lost: number }> {
  const once = async (): Promise<number> =>
    (await childCpuSeconds(`dd if=/dev/zero of=/dev/null bs=512 count=${blocks} 2>/dev/null`)) * 1e9 / (2 * blocks);
  const r = await alternate(rounds, hook, once);
  return { withoutNs: r.without, withNs: r.with, lost: r.lost };
}

if (require.main === module && process.argv[2] === 'floor') {
  const seconds = Number(process.argv[3] ?? 3);
  const rounds = Number(process.argv[4] ?? 15);
  measureTracerFloor(seconds, rounds).then((all) => {
    console.log(`ebpf floor: wrk -t1 -c32 ${seconds}s x ${rounds} pairs per variant, Node http server, 512 B responses, loopback; loss per pair, median (CI)`);
    for (const { variant, result: r } of all) {
      const ci = (c: { level: number; low: number; high: number }): string => `${Math.round(100 * c.level)} % CI ${c.low.toFixed(1)} – ${c.high.toFixed(1)} %`;
      console.log(`  ${variant.padEnd(10)} at the 90th percentile of 100 ms rates ${median(r.pairedP90LossPercent).toFixed(1)} % (${ci(r.pairedP90LossCi)}),`
        + ` requests/s ${r.pairedLossMedian.toFixed(1)} % (${ci(r.pairedLossCi)}), CPU per request +${median(r.pairedCpuIncreasePercent).toFixed(1)} %,`
        + ` events per run ${Math.round(median(r.eventsPerRun)).toLocaleString('en')}, lost ${r.lost}`);
    }
  }).catch((err) => { console.error(err); process.exitCode = 1; });
} else if (require.main === module && process.argv[2] === 'fileio') {
  const rounds = Number(process.argv[3] ?? 3);
  const hook = process.argv[4] === 'raw' ? 'raw' : 'tracepoints';
  measureFileIo(rounds, hook).then((r) => {
    const f = (xs: number[]): string => `${xs.map((x) => x.toFixed(0)).join(', ')} (median ${median(xs).toFixed(0)})`;
    console.log(`ebpf fileio (${hook} hook): dd of 512 B blocks /dev/zero -> /dev/null, CPU ns per read or write, ${rounds} rounds`);
    console.log(`  without tracer: ${f(r.withoutNs)}`);
    console.log(`  with tracer:    ${f(r.withNs)}  +${(median(r.withNs) - median(r.withoutNs)).toFixed(0)} ns  load ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`);
  }).catch((err) => { console.error(err); process.exitCode = 1; });
} else if (require.main === module && (process.argv[2] === 'pingpong' || process.argv[2] === 'selfpair')) {
  const program = process.argv[2];
  const rounds = Number(process.argv[3] ?? 5);
  const hook = process.argv[4] === 'raw' ? 'raw' : 'tracepoints';
  // selfpair prints nanoseconds, pingpong microseconds: both are shown in µs.
  measurePingPong(rounds, hook, program === 'selfpair' ? 150_000 : 200_000, program).then((r) => {
    const us = (xs: number[]): number[] => (program === 'selfpair' ? xs.map((x) => x / 1000) : xs);
    r = { ...r, withoutUs: us(r.withoutUs), withUs: us(r.withUs) };
    const f = (xs: number[]): string => `${xs.map((x) => x.toFixed(2)).join(', ')} (median ${median(xs).toFixed(2)})`;
    console.log(program === 'selfpair'
      ? `ebpf selfpair (${hook} hook): one thread, HTTP-shaped write/read/writev/read on one TCP loopback connection, CPU µs per socket syscall, ${rounds} rounds`
      : `ebpf ping-pong (${hook} hook): 100 B TCP loopback write/read, CPU µs per socket syscall, ${rounds} rounds`);
    console.log(`  without tracer: ${f(r.withoutUs)}`);
    console.log(`  with tracer:    ${f(r.withUs)}  +${(median(r.withUs) - median(r.withoutUs)).toFixed(2)} µs  lost: ${r.lost}  load ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]}`);
  }).catch((err) => { console.error(err); process.exitCode = 1; });
} else if (require.main === module) {
  const seconds = Number(process.argv[2] ?? 5);
  const rounds = Number(process.argv[3] ?? 3);
  const hook = process.argv[4] === 'raw' ? 'raw' : 'tracepoints';
  measureEbpfOverhead(seconds, rounds, hook).then((r) => {
    const fmt = (x: number): string => Math.round(x).toLocaleString('en');
    console.log(`ebpf overhead (${hook} hook): wrk -t1 -c32 ${seconds}s x ${rounds}, Node http server, 512 B responses, loopback`);
    console.log(`  without tracer: ${r.withoutRps.map(fmt).join(', ')} req/s (median ${fmt(median(r.withoutRps))})`);
    console.log(`  with tracer:    ${r.withRps.map(fmt).join(', ')} req/s (median ${fmt(median(r.withRps))})`);
    console.log(`  loss: ${r.lossPercent.toFixed(1)} % (medians); per round ${r.pairedLossPercent.map((x) => x.toFixed(1)).join(', ')} %, median ${r.pairedLossMedian.toFixed(1)} %`
      + ` (${Math.round(100 * r.pairedLossCi.level)} % CI ${r.pairedLossCi.low.toFixed(1)} – ${r.pairedLossCi.high.toFixed(1)} %)`);
    const p90Ci = r.pairedP90LossCi;
    console.log(`  loss at the 90th percentile of 100 ms rates: per round ${r.pairedP90LossPercent.map((x) => x.toFixed(1)).join(', ')} %, median ${median(r.pairedP90LossPercent).toFixed(1)} %`
      + ` (${Math.round(100 * p90Ci.level)} % CI ${p90Ci.low.toFixed(1)} – ${p90Ci.high.toFixed(1)} %)`);
    const byOrder = (odd: number) => r.pairedLossPercent.filter((_, i) => i % 2 === odd);
    if (r.pairedLossPercent.length > 1) {
      console.log(`  paired loss by order: traced second ${median(byOrder(0)).toFixed(1)} %, traced first ${median(byOrder(1)).toFixed(1)} % (medians)`);
    }
    console.log(`  events per run: ${r.eventsPerRun.map(fmt).join(', ')}  lost: ${r.lost}`);
    const cpuCi = r.pairedCpuIncreaseCi;
    console.log(`  server+wrk CPU per request: without ${r.withoutUsPerRequest.map((x) => x.toFixed(1)).join(', ')} µs, with ${r.withUsPerRequest.map((x) => x.toFixed(1)).join(', ')} µs (median +${(100 * (median(r.withUsPerRequest) / median(r.withoutUsPerRequest) - 1)).toFixed(1)} %;`
      + ` per round median +${median(r.pairedCpuIncreasePercent).toFixed(1)} %, ${Math.round(100 * cpuCi.level)} % CI ${cpuCi.low.toFixed(1)} – ${cpuCi.high.toFixed(1)} %)  load ${r.load.join(', ')}`);
    if (r.bpfNsPerEvent > 0) {
      const busy = Object.entries(r.bpfStats).filter(([, v]) => v.runs > 0).sort(([a], [b]) => a.localeCompare(b));
      console.log(`  bpf_stats ns per run: ${busy.map(([n, v]) => `${n} ${Math.round(v.runNs / v.runs)} (${fmt(v.runs)})`).join(', ')}`);
      console.log(`  BPF time per event (all programs): ${Math.round(r.bpfNsPerEvent)} ns  (bpf_stats is on: its two clock reads per program run slow the traced runs)`);
    }
    console.log(`  collector CPU: ${r.collectorCpuPercent.map((x) => x.toFixed(0)).join(', ')} % of one core; ${r.collectorUsPerEvent.map((x) => x.toFixed(2)).join(', ')} µs per event`);
  }).catch((err) => { console.error(err); process.exitCode = 1; });
}
