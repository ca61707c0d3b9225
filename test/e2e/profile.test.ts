// eBPF profiles end to end: the five services in live mode with the profiler on (1 s intervals)
// while a CPU-bound C program (built here with clang, frame pointers kept) spins in a known
// function; after SIGTERM, profile.jsonl and the SQLite `profile` table must both say that
// function is where that pid spent its time. Oracles: nm of the binary for the symbol, and the
// CPU time the kernel charged the process (/proc/<pid>/stat) for the sample count at 99 Hz.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
import Database from 'better-sqlite3';
import { DEFAULT_PROFILE_OBJECT, ebpfStatus } from '../../native/ebpf';
import { sleep, startAgent } from '../support/live-agent';

const HZ = 99;

// Same shape as test/ebpf/profiler.test.ts: a hot leaf under a cold caller, both kept out of line.
const SOURCE = `
__attribute__((noinline)) unsigned long flowtap_hot_loop(unsigned long n) {
  unsigned long x = 0;
  for (unsigned long i = 0; i < n; i++) x = x * 6364136223846793005UL + i;
  return x;
}
__attribute__((noinline)) void flowtap_cold_caller(void) {
  volatile unsigned long n = 100000000UL;
  for (;;) { volatile unsigned long r = flowtap_hot_loop(n); (void)r; }
}
int main(void) { flowtap_cold_caller(); return 0; }
`;

/** utime + stime of a live process, seconds. */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  return (Number(fields[11]) + Number(fields[12])) / ticks;
}

interface ProfileRow { start_time: number; end_time: number; sample_hz: number; pid: number; process_kname: string; stack: string; count: number }

/** Samples per user-space leaf frame (kernel frames, suffixed _[k], are left out). */
function leafCounts(rows: ProfileRow[]): Map<string, number> {
  const leaves = new Map<string, number>();
  for (const r of rows) {
    const user = r.stack.split(';').filter((f) => !f.endsWith('_[k]'));
    const leaf = user[user.length - 1];
    leaves.set(leaf, (leaves.get(leaf) ?? 0) + r.count);
  }
  return leaves;
}

const canProfile = process.getuid?.() === 0 && fs.existsSync('/sys/kernel/btf/vmlinux') && ebpfStatus(DEFAULT_PROFILE_OBJECT).available;

(canProfile ? test.serial : test.serial.skip)('the hot function of a CPU-bound process tops its stacks in profile.jsonl and the SQLite profile table', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-profile-'));
  const bin = path.join(dir, 'hot');
  fs.writeFileSync(`${bin}.c`, SOURCE);
  execFileSync('clang', ['-O2', '-fno-omit-frame-pointer', '-o', bin, `${bin}.c`]);
  t.regex(execFileSync('nm', [bin], { encoding: 'utf8' }), / T flowtap_hot_loop$/m, 'the oracle knows the function');

  const agent = startAgent({
    portBase: 23000 + (process.pid % 300) * 10,
    config: [
      'capture: { source: live, interfaces: ["ft-none*"] }',
      // The socket tracer follows no process here; the profiler samples every CPU.
      'ebpf: { process_names: ["ft-none"], profiler: true, profile_interval_s: 1 }',
      'sender: { output_dir: $DATA, sinks: [jsonl, sqlite] }',
    ],
  });
  const data = path.join(agent.dir, 'data');
  const hot = spawn(bin, [], { stdio: 'ignore' });
  t.teardown(() => {
    hot.kill('SIGKILL');
    agent.kill();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const jsonlFile = path.join(data, 'profile.jsonl');
  const readJsonl = (): ProfileRow[] => (fs.existsSync(jsonlFile)
    ? fs.readFileSync(jsonlFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as ProfileRow) : []);

  // Run until the sender has written a few intervals with the program in them (at most 20 s).
  const until = Date.now() + 20_000;
  while (Date.now() < until && new Set(readJsonl().filter((r) => r.pid === hot.pid).map((r) => r.end_time)).size < 3) await sleep(250);
  const cpu = cpuSeconds(hot.pid!);
  await agent.stop();
  hot.kill('SIGKILL');

  const fromJsonl = readJsonl().filter((r) => r.pid === hot.pid);
  t.true(fromJsonl.length > 0, `profile rows of pid ${hot.pid}: ${agent.stderr()}`);
  for (const r of fromJsonl) {
    t.is(r.process_kname, 'hot');
    t.is(r.sample_hz, HZ);
    t.true(r.end_time > r.start_time && r.count > 0, JSON.stringify(r));
  }
  const total = fromJsonl.reduce((n, r) => n + r.count, 0);
  // Every sample is a tick of CPU the kernel charged; some fall before the profiler started.
  t.true(total >= 50 && total <= cpu * HZ * 1.3 + 10, `samples ${total}, CPU ${cpu.toFixed(2)} s -> ${(cpu * HZ).toFixed(0)} at ${HZ} Hz`);
  const leaves = [...leafCounts(fromJsonl)].sort((a, b) => b[1] - a[1]);
  t.is(leaves[0][0], 'flowtap_hot_loop', JSON.stringify(leaves));
  t.true(leaves[0][1] / total > 0.8, `hot share ${leaves[0][1]}/${total}`);
  const heaviest = [...fromJsonl].sort((a, b) => b.count - a.count)[0];
  t.regex(heaviest.stack, /^hot;.*main;flowtap_cold_caller;flowtap_hot_loop/, heaviest.stack);

  // The SQLite table holds the same rows.
  const db = new Database(path.join(data, 'flowtap.db'), { readonly: true });
  const fromSql = db.prepare('SELECT start_time, end_time, sample_hz, pid, process_kname, stack, count FROM profile WHERE pid = ?').all(hot.pid) as ProfileRow[];
  db.close();
  const key = (r: ProfileRow) => JSON.stringify([r.start_time, r.end_time, r.sample_hz, r.pid, r.process_kname, r.stack, r.count]);
  t.deepEqual(fromSql.map(key).sort(), fromJsonl.map(key).sort());
  const sqlLeaves = [...leafCounts(fromSql)].sort((a, b) => b[1] - a[1]);
  t.is(sqlLeaves[0][0], 'flowtap_hot_loop');
});
