// Profile intervals shaped as capture's profiler sends them (services/capture/ebpf-profiler.ts:
// one ProfileBatch per interval, folded stacks per process "comm;root;...;leaf" with kernel
// frames suffixed _[k] at the leaf end), and the stored rows they must become, spelled out here
// from the messages rather than by the sender's own row code.
import Database from 'better-sqlite3';
import { flowtap } from '../../lib/proto';

/** A type, not an interface, so it passes as a Record<string, unknown>. */
export type ProfileRow = {
  start_time: number;
  end_time: number;
  sample_hz: number;
  pid: number;
  process_kname: string;
  stack: string;
  count: number;
};

const COMMS = ['nginx', 'postgres', 'node', 'java', 'café-worker'];
const USER_FRAMES = ['main', 'run_loop', 'handle_request', 'parse_headers', 'memcpy', '[unknown]', 'std::vector<int>::push_back', 'ngx_http_process_request_line'];
const KERNEL_FRAMES = ['entry_SYSCALL_64_after_hwframe_[k]', 'do_syscall_64_[k]', '__x64_sys_write_[k]', 'tcp_sendmsg_[k]'];

/**
 * `intervals` consecutive 10 s intervals from `firstUs`, each with `stacksPer` distinct stacks
 * (`stackDepth` user frames each, so tests can make big ones), like capture's ProfileBatch.
 */
export function syntheticProfiles(intervals: number, stacksPer: number, firstUs = 1_764_000_000_000_000, stackDepth = 6): flowtap.IProfileBatch[] {
  const out: flowtap.IProfileBatch[] = [];
  for (let k = 0; k < intervals; k++) {
    const stacks: flowtap.IProfileStack[] = [];
    for (let i = 0; i < stacksPer; i++) {
      const comm = COMMS[i % COMMS.length];
      const pid = 1000 + (i % COMMS.length) * 7 + (k % 3);
      const frames = [comm];
      for (let d = 0; d < stackDepth; d++) frames.push(USER_FRAMES[(i + d * 3) % USER_FRAMES.length]);
      frames.push(`fn_${k}_${i}`);
      if (i % 3 === 0) frames.push(...KERNEL_FRAMES.slice(0, 1 + (i % KERNEL_FRAMES.length)));
      stacks.push({ pid, process_kname: comm, stack: frames.join(';'), count: 1 + ((i * 37 + k) % 250) });
    }
    out.push({ start_time: firstUs + k * 10_000_000, end_time: firstUs + (k + 1) * 10_000_000, sample_hz: 99, stacks, lost_samples: k % 2 });
  }
  return out;
}

/** The rows a store must hold for these intervals: one per stack with its interval's fields. */
export function expectedProfileRows(batches: readonly flowtap.IProfileBatch[]): ProfileRow[] {
  return batches.flatMap((b) => (b.stacks ?? []).map((s) => ({
    start_time: Number(b.start_time), end_time: Number(b.end_time), sample_hz: Number(b.sample_hz),
    pid: Number(s.pid), process_kname: String(s.process_kname), stack: String(s.stack), count: Number(s.count),
  })));
}

/** A row as a comparable string (numbers as numbers: ClickHouse may quote 64-bit ones). */
export function profileKey(r: Record<string, unknown>): string {
  return JSON.stringify([Number(r.start_time), Number(r.end_time), Number(r.sample_hz), Number(r.pid), r.process_kname, r.stack, Number(r.count)]);
}

export function profileKeys(rows: ReadonlyArray<Record<string, unknown>>): string[] {
  return rows.map(profileKey).sort();
}

export function readSqliteProfile(file: string): ProfileRow[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare('SELECT * FROM profile ORDER BY rowid').all() as ProfileRow[];
  } finally {
    db.close();
  }
}
