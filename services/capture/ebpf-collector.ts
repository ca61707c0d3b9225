// The capture process's eBPF collector (the seed's EbpfCollector): owns the socket tracer, turns
// its ring-buffer batches into SocketDataBatch rows, and says once whether the host runs
// packet-only. No timers of its own: rows are handed over at the end of every ring delivery.
import fs from 'node:fs';
import { EbpfSocketTracer, ebpfStatus, EbpfStatus, EbpfTracerCounters } from '../../native/ebpf';
import { SocketDataBatch } from './ebpf-socket-batch';
import { SocketRecordDecoder } from './ebpf-socket-records';
import { DEFAULT_TLS_BINARIES, scanTlsTargets } from './ebpf-tls-targets';

export interface EbpfCollectorConfig {
  /** Master switch; false: packet-only without trying. Default true. */
  enabled?: boolean;
  /** Socket tracer on syscall tracepoints. Default true. */
  socketTracer?: boolean;
  /** Payload bytes captured per syscall, 0..8192. Default 4096. */
  capBytes?: number;
  /** Bytes of each CPU's record area (see EbpfSocketTracerOptions.ringBytes). Default 2 MiB. */
  ringBytes?: number;
  /** Wake the reader once this many bytes wait in a CPU's area (see EbpfSocketTracerOptions.wakeupBytes). */
  wakeupBytes?: number;
  /** Kernel socket map entries. Default 65536. */
  socketMapEntries?: number;
  /** Trace only these processes (empty: all). */
  includePids?: number[];
  /** Never trace these processes; the collector's own pid is always added (its ZeroMQ traffic). */
  excludePids?: number[];
  /** Keep only processes with these names (comm; filtered in user space). Empty: all. */
  processNames?: string[];
  /** Rows per SocketDataBatch. Default 1024. */
  batchRows?: number;
  /** Compiled object path (default: bpf/socket_trace.bpf.o). */
  objectPath?: string;
  /** TLS plaintext through uprobes on SSL_read/SSL_write. Default true. */
  tls?: boolean;
  /** Executables (basenames) with OpenSSL linked in to probe too. Default ['node', 'nodejs']. */
  tlsBinaries?: string[];
  /** More files to probe (libssl in unusual places). */
  tlsPaths?: string[];
  /** Syscall hook (see EbpfSocketTracerOptions.syscallHook); default 'tracepoints'. */
  syscallHook?: 'raw' | 'tracepoints';
  /** Data from the sock/ tracepoints when the kernel has them (see EbpfSocketTracerOptions.sockHooks). Default true. */
  sockHooks?: boolean;
}

/**
 * Receives each filled batch. The batch is reused after the call returns: encode it
 * (`batch.encode()`) or copy what you need before returning.
 */
export type SocketDataSink = (batch: SocketDataBatch) => void;

export class EbpfCollector {
  /** 1 when the agent runs packet-only (no eBPF): expose as a gauge, e.g. flowtap_ebpf_packet_only. */
  readonly packetOnly: 0 | 1;
  /** Why, in one line: log it once at start. */
  readonly statusMessage: string;
  /** Events lost or dropped, by reason; running totals for a Prometheus counter (see `drops` getter). */
  private readonly decoder = new SocketRecordDecoder();
  private readonly batch: SocketDataBatch;
  private tracer: EbpfSocketTracer | undefined;
  private rowsOut = 0;
  private readonly tlsTried = new Set<string>();
  private tlsConfig: { enabled: boolean; binaries: string[]; paths: string[] } = { enabled: false, binaries: [], paths: [] };
  /** Files with TLS uprobes attached, and the last reason a candidate was refused. */
  readonly tlsFiles: string[] = [];
  tlsLastError = '';

  /**
   * Whether sweepSockets can run: a tracer is attached and this process sees the kernel's own
   * pids in /proc (not in a child pid namespace, where every entry would look stale).
   */
  readonly sweepsSockets: boolean;

  private constructor(status: EbpfStatus, tracer: EbpfSocketTracer | undefined, private readonly sink: SocketDataSink, rows: number) {
    this.tracer = tracer;
    this.packetOnly = tracer ? 0 : 1;
    this.sweepsSockets = tracer !== undefined && inInitPidNamespace();
    this.statusMessage = status.message;
    this.batch = new SocketDataBatch(rows);
  }

  /**
   * Checks the host, loads and attaches the tracer and starts delivering to `sink`. Never throws:
   * when eBPF cannot run (not root, no BTF, no tracefs, object not built, kernel refused), the
   * collector is inert with packetOnly = 1 and statusMessage saying why.
   */
  static start(config: EbpfCollectorConfig, sink: SocketDataSink): EbpfCollector {
    const rows = config.batchRows ?? 1024;
    if (config.enabled === false || config.socketTracer === false) {
      return new EbpfCollector({ available: false, message: 'eBPF disabled by configuration: running packet-only' }, undefined, sink, rows);
    }
    const status = ebpfStatus(config.objectPath);
    if (!status.available) return new EbpfCollector(status, undefined, sink, rows);
    const include = config.includePids ?? [];
    const exclude = [...(config.excludePids ?? []), process.pid];
    let tracer: EbpfSocketTracer;
    try {
      tracer = EbpfSocketTracer.open({
        objectPath: config.objectPath,
        capBytes: config.capBytes,
        ringBytes: config.ringBytes,
        wakeupBytes: config.wakeupBytes,
        socketMapEntries: config.socketMapEntries,
        pidMode: include.length > 0 ? 'include' : 'exclude',
        pids: include.length > 0 ? include : exclude,
        syscallHook: config.syscallHook,
        sockHooks: config.sockHooks,
      });
    } catch (err) {
      const e = err as Error & { code?: string };
      const first = e.message.split('\n')[0];
      return new EbpfCollector({ available: false, message: `eBPF unavailable (${e.code ?? 'load_failed'}: ${first}): running packet-only` }, undefined, sink, rows);
    }
    const hook = tracer.syscallHook === 'raw' ? 'raw_syscalls through tp_btf' : 'syscalls/ tracepoints';
    const data = tracer.dataHook === 'sock' ? 'data from sock/ tracepoints' : 'data at syscall exits';
    const collector = new EbpfCollector({ available: true, message: `eBPF socket tracer attached (${hook}, ${data})` }, tracer, sink, rows);
    if (include.length > 0) for (const pid of exclude) collector.decoder.excludePid(pid);
    if (config.processNames && config.processNames.length > 0) collector.decoder.onlyComms(config.processNames);
    tracer.onBatch((records, _count, headerBytes, payloadStart) => collector.onRecords(records, headerBytes, payloadStart));
    collector.tlsConfig = { enabled: config.tls !== false, binaries: config.tlsBinaries ?? DEFAULT_TLS_BINARIES, paths: config.tlsPaths ?? [] };
    collector.rescanTls();
    return collector;
  }

  private onRecords(records: Buffer, headerBytes: number, payloadStart: number): void {
    this.decoder.resyncClock();
    let o = 0;
    while (o < headerBytes) {
      o = this.decoder.decode(records, o, headerBytes, payloadStart, this.batch);
      if (o < headerBytes || this.batch.full) this.flush();
    }
    // Rows go out at the end of every delivery (the addon delivers at least every flushIntervalMs).
    this.flush();
  }

  private flush(): void {
    if (this.batch.count === 0) return;
    this.rowsOut += this.batch.count;
    try {
      this.sink(this.batch);
    } finally {
      this.batch.reset();
    }
  }

  /**
   * Looks for TLS libraries and binaries not probed yet and attaches to them; returns how many
   * files were newly attached. Call it every few seconds (the caller's timer): libraries already
   * probed cover new processes by themselves, a rescan only finds new files.
   */
  rescanTls(): number {
    if (!this.tracer || !this.tlsConfig.enabled) return 0;
    let added = 0;
    for (const file of scanTlsTargets(this.tlsConfig.binaries, this.tlsConfig.paths).files) {
      if (this.tlsTried.has(file)) continue;
      this.tlsTried.add(file);
      try {
        if (this.tracer.attachTls(file) > 0) {
          this.tlsFiles.push(file);
          added++;
        }
      } catch (err) {
        this.tlsLastError = `${file}: ${(err as Error).message.split('\n')[0]}`;
      }
    }
    return added;
  }

  /** Delivers what the kernel holds now (call before shutdown so no event stays in the ring). */
  drain(): void {
    this.tracer?.drain();
  }

  /** Rows handed to the sink so far. */
  get rows(): number {
    return this.rowsOut;
  }

  /**
   * Events lost or dropped, by reason (running totals):
   * ringbuf_full (the CPU's record area or the TLS ring was full: event lost), tls_busy (a
   * preempted TLS probe held the CPU's TLS scratch: plaintext lost), area_corrupt (malformed
   * records skipped), active_map_full (syscall not traced),
   * socket_map_full (socket not remembered), read_user_fault (payload not captured),
   * tls_no_fd (TLS plaintext whose socket was not found: lost),
   * mmsg_unreported (messages of a sendmmsg/recvmmsg past the first 16 of the call: lost),
   * short_record / bad_kind (malformed record), oversize_payload (a record larger than the addon's
   * whole payload area: skipped), excluded_pid / excluded_comm
   * (filtered in user space by configuration).
   */
  get drops(): Record<string, number> {
    const c: EbpfTracerCounters | undefined = this.tracer?.counters();
    return {
      ringbuf_full: c?.ringbufFull ?? 0,
      active_map_full: c?.activeMapFull ?? 0,
      socket_map_full: c?.socketMapFull ?? 0,
      read_user_fault: c?.readUserFault ?? 0,
      tls_no_fd: c?.tlsNoFd ?? 0,
      mmsg_unreported: c?.mmsgUnreported ?? 0,
      oversize_payload: c?.oversize ?? 0,
      tls_busy: c?.tlsBusy ?? 0,
      area_corrupt: c?.areaCorrupt ?? 0,
      ...this.decoder.drops,
    };
  }

  /**
   * Forgets kernel socket entries of sockets closed without close(2) (process exit, close-on-exec,
   * dup2, close_range), which would otherwise fill the map on a long-running host. Call it every
   * few seconds. Returns false, having done nothing, when `sweepsSockets` is false.
   */
  sweepSockets(): boolean {
    if (!this.tracer || !this.sweepsSockets) return false;
    const n = this.tracer.sweepSocketInfo();
    this.reclaimed.process_exited += n.processExited;
    this.reclaimed.fd_closed += n.fdClosed;
    return true;
  }

  /** Socket entries sweepSockets removed so far, by reason (running totals for a counter). */
  readonly reclaimed = { process_exited: 0, fd_closed: 0 };

  /** Kernel-side map sizes for gauges and tests (sockets remembered). */
  mapCounts(): { socketInfo: number } {
    return this.tracer?.mapCounts() ?? { socketInfo: 0 };
  }

  /** Adds a process to the kernel filter at run time (e.g. a new agent process to exclude). */
  tracePid(pid: number, mark: 'trace' | 'skip' | 'forget'): void {
    this.tracer?.tracePid(pid, mark);
  }

  unref(): void {
    this.tracer?.unref();
  }

  /** Delivers what is queued, then detaches; the promise settles once the programs no longer run. */
  close(): Promise<void> {
    if (!this.tracer) return Promise.resolve();
    this.tracer.drain();
    const detached = this.tracer.close();
    this.tracer = undefined;
    return detached;
  }
}

/** True when /proc/self/status lists one pid (NSpid): this process sees the kernel's own pids. */
function inInitPidNamespace(): boolean {
  try {
    const line = /^NSpid:\s*(.*)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return line !== null && line[1].trim().split(/\s+/).length === 1;
  } catch {
    return false;
  }
}
