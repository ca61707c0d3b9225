// Typed wrapper of the eBPF socket tracer in the flowtap_native addon (native/src/ebpf_socket_tracer.cc),
// plus the checks that decide whether the agent can trace sockets at all or runs packet-only.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface EbpfSocketTracerOptions {
  /** The compiled CO-RE object. Default: bpf/socket_trace.bpf.o of this checkout. */
  objectPath?: string;
  /** Payload bytes copied per syscall (0..8192). Default 4096. */
  capBytes?: number;
  /**
   * Bytes of each CPU's record area (one per possible CPU), rounded up to a power of two, 64 KiB
   * to 256 MiB; the TLS probes' ring buffer gets as much. Default 2 MiB.
   */
  ringBytes?: number;
  /** Sockets tracked at once (kernel hash map entries). Default 65536. */
  socketMapEntries?: number;
  /** 'exclude': trace every process but `pids`; 'include': trace only `pids`. Default 'exclude'. */
  pidMode?: 'exclude' | 'include';
  /** Processes to skip or to trace, per pidMode. The collector adds its own pid to 'exclude'. */
  pids?: number[];
  /** Largest batch handed to JS, bytes. Default 1 MiB. */
  batchBytes?: number;
  /**
   * The kernel wakes the reader only when this many bytes wait in a CPU's area (default a
   * quarter of the area); below that the reader drains every flushIntervalMs. Waking per event costs more
   * than tracing it, and each wakeup is a self-IPI (a VM exit in a guest): at 10 ms drains the
   * timer keeps up with tens of MB/s, so wakeups are only for bursts.
   */
  wakeupBytes?: number;
  /** Drain period, ms: the most an event waits in its area at low rates. Default 10. */
  flushIntervalMs?: number;
  /**
   * Where the syscall programs attach: 'raw' (raw_syscalls sys_enter/sys_exit through tp_btf,
   * one program each, filtered by syscall number; x86-64 only) or 'tracepoints' (one program per
   * syscalls/sys_{enter,exit}_* tracepoint). Default 'tracepoints': measured on this VM, 'raw'
   * is no cheaper on socket or file I/O and adds a program run to every other syscall of the
   * host (docs/benchmarks.md).
   */
  syscallHook?: 'raw' | 'tracepoints';
  /**
   * Report sends and receives from sock/sock_{send,recv}_length (Linux 6.4+; only socket I/O
   * runs a program) when the kernel has them. false: from the syscall exits, as on older
   * kernels (tests use it to cover that path). Default true.
   */
  sockHooks?: boolean;
}

/** Running totals kept by the eBPF programs (summed over CPUs) and the loader. */
export interface EbpfTracerCounters {
  /** Events lost: the CPU's record area was full (JS too slow or ringBytes too small). */
  ringbufFull: number;
  /** Sockets not remembered: socket map full (events still sent, role unknown on later ones). */
  socketMapFull: number;
  /** Syscalls not traced: the in-flight syscall map was full. */
  activeMapFull: number;
  /** Payload copies that faulted on the user buffer (event sent without those bytes). */
  readUserFault: number;
  /** Events written to the record areas or the TLS ring. */
  events: number;
  /** TLS reads/writes whose socket could not be found (plaintext lost). */
  tlsNoFd: number;
  /** Messages of a sendmmsg/recvmmsg past the first 16 of the call: not reported. */
  mmsgUnreported: number;
  /** Records larger than a batch (never with the shipped object). */
  oversize: number;
  /** TLS plaintext lost: a TLS probe found its CPU's TLS scratch held by a preempted one. */
  tlsBusy: number;
  /** Records the reader found malformed (never with the shipped object); the CPU's area was skipped to its head. */
  areaCorrupt: number;
}

export interface EbpfMapCounts {
  /** Sockets the kernel side remembers; 0 once every traced socket was closed. */
  socketInfo: number;
}

/**
 * Called per batch. `records` holds `count` ring records split in two: the first `headerBytes`
 * are 112-byte entries [u32 record size, u32 payload offset, 104-byte header (struct sock_event,
 * bpf/socket_trace.h)], 8-aligned so typed-array views work; each record's captured bytes lie at
 * `payloadStart` + its payload offset (`payloadBytes` in all). See
 * services/capture/ebpf-socket-records.ts. `records` is one reused Buffer: its contents are
 * valid only during the call.
 */
export type EbpfBatchCallback = (records: Buffer, count: number, headerBytes: number, payloadStart: number, payloadBytes: number) => void;

/** socket_info entries one sweep removed, by why their fd no longer was a socket. */
export interface EbpfSweepCounts {
  /** The process had exited (its fds were closed without close(2)). */
  processExited: number;
  /** The process lives on, the fd is gone or another file (exec's close-on-exec, dup2, close_range). */
  fdClosed: number;
}

interface NativeTracer {
  start(cb: EbpfBatchCallback): void;
  counters(): EbpfTracerCounters;
  mapCounts(): EbpfMapCounts;
  sweepSocketInfo(): EbpfSweepCounts;
  setPidFilter(pid: number, mark: number): boolean;
  attachTls(path: string): number;
  drain(): number;
  /** Settles once the programs are detached (background thread: up to seconds). */
  close(): Promise<void>;
  ref(): void;
  unref(): void;
  sockHooks(): boolean;
}

interface NativeAddon {
  EbpfSocketTracer?: new (opts: Record<string, unknown>) => NativeTracer;
}

const repoRoot = fs.existsSync(path.join(__dirname, '..', 'bpf')) ? path.join(__dirname, '..') : path.join(__dirname, '..', '..');
export const DEFAULT_SOCKET_TRACE_OBJECT = path.join(repoRoot, 'bpf', 'socket_trace.bpf.o');

function loadAddon(): NativeAddon {
  const file = path.join('build', 'Release', 'flowtap_native.node');
  const candidates = [path.join(__dirname, file), path.join(__dirname, '..', '..', 'native', file)];
  const found = candidates.find((c) => fs.existsSync(c));
  if (!found) throw new Error(`flowtap_native addon not built (looked in ${candidates.join(', ')})`);
  return require(found) as NativeAddon;
}

/** Why eBPF cannot run here, or `undefined` when it can be tried. */
export type EbpfUnavailableReason = 'not_root' | 'no_btf' | 'no_tracefs' | 'no_object' | 'no_addon';

export interface EbpfStatus {
  available: boolean;
  reason?: EbpfUnavailableReason;
  /** One line for the log, e.g. "eBPF unavailable (no_btf: ...): running packet-only". */
  message: string;
}

function tracefsPresent(): boolean {
  return ['/sys/kernel/tracing/events/syscalls', '/sys/kernel/debug/tracing/events/syscalls'].some((p) => fs.existsSync(p));
}

/**
 * Checks the preconditions cheaply (no program is loaded). tracefs is mounted by the addon when
 * missing, so a missing tracefs only counts when we are not root (we could not mount it).
 */
export function ebpfStatus(objectPath = DEFAULT_SOCKET_TRACE_OBJECT): EbpfStatus {
  const no = (reason: EbpfUnavailableReason, why: string): EbpfStatus => ({
    available: false, reason, message: `eBPF unavailable (${reason}: ${why}): running packet-only`,
  });
  if (typeof process.geteuid === 'function' && process.geteuid() !== 0) return no('not_root', 'loading BPF programs needs root');
  if (!fs.existsSync('/sys/kernel/btf/vmlinux')) return no('no_btf', 'the kernel exposes no /sys/kernel/btf/vmlinux');
  if (!fs.existsSync(objectPath)) return no('no_object', `${objectPath} not built (bash bpf/build.sh)`);
  try {
    if (!loadAddon().EbpfSocketTracer) return no('no_addon', 'the native addon was built without the eBPF tracer');
  } catch (err) {
    return no('no_addon', (err as Error).message);
  }
  if (!tracefsPresent() && !fs.existsSync('/sys/kernel/tracing')) return no('no_tracefs', 'no tracefs mount point');
  return { available: true, message: 'eBPF socket tracer available' };
}

/** An Error from the addon: `code` is an errno name (EPERM, ENOENT, EINVAL, ...). */
export interface EbpfError extends Error {
  code?: string;
  errno?: number;
}

export class EbpfSocketTracer {
  private closed = false;

  /**
   * Where sends and receives are reported: 'sock' (sock/ tracepoints) or 'syscall-exit' (kernels
   * before 6.4, or when asked for).
   */
  readonly dataHook: 'sock' | 'syscall-exit';

  /** Where the syscall programs are attached: 'raw' only when asked for on x86-64. */
  private constructor(private readonly native: NativeTracer, readonly syscallHook: 'raw' | 'tracepoints') {
    this.dataHook = native.sockHooks() ? 'sock' : 'syscall-exit';
  }

  /** Loads and attaches the programs; throws EbpfError (with the libbpf log tail) when the kernel refuses. */
  static open(opts: EbpfSocketTracerOptions = {}): EbpfSocketTracer {
    const Native = loadAddon().EbpfSocketTracer;
    if (!Native) throw new Error('flowtap_native lacks EbpfSocketTracer');
    const hook = opts.syscallHook === 'raw' && process.arch === 'x64' ? 'raw' : 'tracepoints';
    return new EbpfSocketTracer(new Native({
      objectPath: opts.objectPath ?? DEFAULT_SOCKET_TRACE_OBJECT,
      capBytes: opts.capBytes ?? 4096,
      ringBytes: opts.ringBytes ?? 2 << 20,
      socketMapEntries: opts.socketMapEntries ?? 65536,
      pidMode: opts.pidMode === 'include' ? 1 : 0,
      pids: opts.pids ?? [],
      batchBytes: opts.batchBytes ?? 1 << 20,
      wakeupBytes: opts.wakeupBytes, // undefined: the addon's default, a quarter of an area
      flushIntervalMs: opts.flushIntervalMs ?? 10,
      rawSyscalls: hook === 'raw' ? 1 : 0,
      sockHooks: opts.sockHooks === false ? 0 : 1,
    }), hook);
  }

  /** Starts delivery from the event loop; keeps the loop alive until close() (or unref()). */
  onBatch(cb: EbpfBatchCallback): void {
    this.native.start(cb);
  }

  /** Delivers what the ring holds now, synchronously (shutdown, tests). Returns records delivered. */
  drain(): number {
    return this.closed ? 0 : this.native.drain();
  }

  counters(): EbpfTracerCounters {
    return this.native.counters();
  }

  mapCounts(): EbpfMapCounts {
    return this.closed ? { socketInfo: 0 } : this.native.mapCounts();
  }

  /**
   * Removes socket map entries whose fd no longer is a socket (/proc/<pid>/fd is checked). Only
   * close(2) removes entries in the kernel; exits, close-on-exec, dup2 and close_range do not.
   * Walks the map: call it every few seconds, not per event. /proc must show the kernel's pids.
   */
  sweepSocketInfo(): EbpfSweepCounts {
    return this.closed ? { processExited: 0, fdClosed: 0 } : this.native.sweepSocketInfo();
  }

  /** Adds (trace or skip, per pidMode) or removes a process from the kernel-side filter. */
  tracePid(pid: number, mark: 'trace' | 'skip' | 'forget'): void {
    if (!this.closed) this.native.setPidFilter(pid, mark === 'trace' ? 1 : mark === 'skip' ? 2 : 0);
  }

  /**
   * Uprobes on SSL_read/SSL_write (+ _ex) in the ELF file at `path` (libssl.so.3, or a binary
   * with OpenSSL linked in such as node). Covers every process mapping the file, now and later.
   * Returns the functions attached (0: this file was attached before); throws EbpfError ENOENT
   * when the file has none of them.
   */
  attachTls(path: string): number {
    if (this.closed) throw new Error('tracer is closed');
    return this.native.attachTls(path);
  }

  ref(): void { if (!this.closed) this.native.ref(); }
  unref(): void { if (!this.closed) this.native.unref(); }

  /**
   * Stops delivery at once; the programs are detached and the maps freed in the background. The
   * promise settles when no program runs any more; until then it keeps the event loop alive, as
   * pending I/O would. Safe to call twice.
   */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return this.native.close();
  }
}

export const DEFAULT_PROFILE_OBJECT = path.join(repoRoot, 'bpf', 'profile.bpf.o');

/** One counted (pid, tid, stacks) key of an interval; frames are leaf first. */
export interface RawProfileSample {
  pid: number;
  tid: number;
  comm: string;
  count: number;
  user: Float64Array;
  kernel: BigUint64Array;
  /** errno of a failed user stack walk (e.g. EFAULT), 0 when walked. */
  userStackError: number;
}

interface NativeProfiler {
  collect(): RawProfileSample[];
  counters(): { samplesMapFull: number; samples: number };
  close(): Promise<void>;
}

export interface EbpfProfilerOptions {
  objectPath?: string;
  /** Samples per second per CPU. Default 99 (off the beat of 100 Hz timers). */
  frequency?: number;
  /** Profile only this process (0: all). */
  pid?: number;
}

/** The on-CPU profiler: perf_event clock per CPU -> BPF stack counts, read per interval. */
export class EbpfProfiler {
  private closed = false;

  private constructor(private readonly native: NativeProfiler, readonly frequency: number) {}

  static open(opts: EbpfProfilerOptions = {}): EbpfProfiler {
    const Native = (loadAddon() as { EbpfProfiler?: new (o: Record<string, unknown>) => NativeProfiler }).EbpfProfiler;
    if (!Native) throw new Error('flowtap_native lacks EbpfProfiler');
    const frequency = opts.frequency ?? 99;
    return new EbpfProfiler(new Native({ objectPath: opts.objectPath ?? DEFAULT_PROFILE_OBJECT, frequency, pid: opts.pid ?? 0 }), frequency);
  }

  /** Reads and clears the counts since the previous call. */
  collect(): RawProfileSample[] {
    return this.closed ? [] : this.native.collect();
  }

  counters(): { samplesMapFull: number; samples: number } {
    return this.closed ? { samplesMapFull: 0, samples: 0 } : this.native.counters();
  }

  /** Detaches in the background; the promise settles when the sampling has stopped. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return this.native.close();
  }
}
