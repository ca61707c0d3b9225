// The on-CPU profiler on a real CPU-bound program: a C program (built here with clang, frame
// pointers kept) spends its time in flowtap_hot_loop, called from flowtap_cold_caller; the
// folded profile must put that function on top. nm of the same binary is the symbol oracle.
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ebpfStatus, DEFAULT_PROFILE_OBJECT } from '../../native/ebpf';
import { ProfileCollector } from '../../services/capture/ebpf-profiler';
import { flowtap } from '../../lib/proto';
import { sleep } from './helpers';

const SOURCE = `
__attribute__((noinline)) unsigned long flowtap_hot_loop(unsigned long n) {
  unsigned long x = 0;
  for (unsigned long i = 0; i < n; i++) x = x * 6364136223846793005UL + i;
  return x;
}
__attribute__((noinline)) void flowtap_cold_caller(void) {
  volatile unsigned long n = 100000000UL; /* read each time: the call cannot be hoisted */
  for (;;) { volatile unsigned long r = flowtap_hot_loop(n); (void)r; }
}
int main(void) { flowtap_cold_caller(); return 0; }
`;

/** utime + stime of a process, seconds (/proc/<pid>/stat fields 14 and 15, in clock ticks). */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  return (Number(fields[11]) + Number(fields[12])) / ticks;
}

const available = ebpfStatus(DEFAULT_PROFILE_OBJECT);
const maybe = available.available ? test.serial : test.serial.skip;

maybe('a CPU-bound process has its hot function on top of its profile', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-prof-'));
  const src = path.join(dir, 'hot.c');
  const bin = path.join(dir, 'hot');
  fs.writeFileSync(src, SOURCE);
  execFileSync('clang', ['-O2', '-fno-omit-frame-pointer', '-o', bin, src]);
  const nm = execFileSync('nm', [bin], { encoding: 'utf8' });
  t.regex(nm, / T flowtap_hot_loop$/m, 'the oracle knows the function');
  const hot = spawn(bin, [], { stdio: 'ignore' });
  const profiler = ProfileCollector.start({ enabled: true, pid: hot.pid, frequency: 99 });
  try {
    t.true(profiler.active, profiler.statusMessage);
    profiler.collect(); // start a clean interval
    const cpu0 = cpuSeconds(hot.pid!);
    // Sample until the process had 1.5 s of CPU (sooner on an idle machine; give up after 15 s).
    const until = Date.now() + 15_000;
    while (cpuSeconds(hot.pid!) - cpu0 < 1.5 && Date.now() < until) await sleep(250);
    const batch = profiler.collect()!;
    const cpu = cpuSeconds(hot.pid!) - cpu0;
    t.truthy(batch, 'samples collected');
    // Through the wire form, as the sender receives it.
    const decoded = flowtap.ProfileBatch.decode(flowtap.ProfileBatch.encode(batch).finish());
    t.is(decoded.sample_hz, 99);
    const stacks = (decoded.stacks as flowtap.ProfileStack[]).filter((s) => s.pid === hot.pid);
    const total = stacks.reduce((n, s) => n + s.count, 0);
    // The oracle for the count: the CPU time the kernel charged the process meanwhile, at 99 Hz
    // (on a busy machine the process gets less than the 2 s it asks for).
    const expected = cpu * 99;
    t.true(total >= 50, `samples: ${total}`);
    t.true(Math.abs(total - expected) <= Math.max(0.3 * expected, 10), `samples ${total}, expected ${expected.toFixed(0)} from ${cpu.toFixed(2)} s of CPU`);
    const leafCounts = new Map<string, number>();
    for (const s of stacks) {
      const userFrames = s.stack.split(';').filter((f) => !f.endsWith('_[k]'));
      const leaf = userFrames[userFrames.length - 1];
      leafCounts.set(leaf, (leafCounts.get(leaf) ?? 0) + s.count);
    }
    const top = [...leafCounts.entries()].sort((a, b) => b[1] - a[1])[0];
    t.is(top[0], 'flowtap_hot_loop', JSON.stringify([...leafCounts]));
    t.true(top[1] / total > 0.8, `hot share ${top[1]}/${total}`);
    const heaviest = [...stacks].sort((a, b) => b.count - a.count)[0];
    t.is(heaviest.process_kname, 'hot');
    t.regex(heaviest.stack, /^hot;.*main;flowtap_cold_caller;flowtap_hot_loop/, heaviest.stack);
  } finally {
    hot.kill();
    profiler.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

maybe('a disabled profiler stays inert', (t) => {
  const p = ProfileCollector.start({});
  t.false(p.active);
  t.is(p.collect(), undefined);
});
