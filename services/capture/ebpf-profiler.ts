// The on-CPU profiler's user-space half: every interval (the caller's timer) it reads the BPF
// stack counts, resolves the frames and folds them into one ProfileBatch: stacks per process,
// root first, as flame-graph tools read them. Runs packet-only-safe: start() never throws.
import { EbpfProfiler, RawProfileSample, ebpfStatus, DEFAULT_PROFILE_OBJECT } from '../../native/ebpf';
import { flowtap } from '../../lib/proto';
import { Symbolizer } from './ebpf-symbols';

export interface ProfilerConfig {
  /** Default false: profiling every CPU costs a little on every CPU. */
  enabled?: boolean;
  /** Samples per second per CPU. Default 99. */
  frequency?: number;
  /** Only this process (0: all). */
  pid?: number;
  /** Include kernel frames. Default true. */
  kernelStacks?: boolean;
  objectPath?: string;
}

/** Folds raw samples into stacks per process. Exported for tests; pure apart from the symbolizer. */
export function foldSamples(samples: RawProfileSample[], symbols: Symbolizer, kernelStacks = true): flowtap.IProfileStack[] {
  symbols.newInterval();
  const folded = new Map<string, flowtap.IProfileStack>();
  for (const s of samples) {
    const frames: string[] = [];
    // Frames come leaf first; non-leaf user frames are return addresses, so look one byte back
    // (a call at a function's very end would otherwise resolve to the next function).
    for (let i = s.user.length - 1; i >= 0; i--) frames.push(symbols.user(s.pid, i === 0 ? s.user[i] : s.user[i] - 1));
    if (kernelStacks) for (let i = s.kernel.length - 1; i >= 0; i--) frames.push(`${symbols.kernel.lookup(s.kernel[i])}_[k]`);
    if (frames.length === 0) frames.push('[unknown]');
    const stack = `${s.comm};${frames.join(';')}`;
    const key = `${s.pid}\u0000${stack}`;
    const prev = folded.get(key);
    if (prev) prev.count = (prev.count ?? 0) + s.count;
    else folded.set(key, { pid: s.pid, process_kname: s.comm, stack, count: s.count });
  }
  return [...folded.values()];
}

export class ProfileCollector {
  readonly statusMessage: string;
  private readonly symbols = new Symbolizer();
  private lastUs: number;
  private lastLost = 0;

  private constructor(private profiler: EbpfProfiler | undefined, message: string, private readonly kernelStacks: boolean) {
    this.statusMessage = message;
    this.lastUs = Date.now() * 1000;
  }

  /** Attaches the profiler, or stays inert (`active` false) with statusMessage saying why. */
  static start(config: ProfilerConfig): ProfileCollector {
    const kernel = config.kernelStacks !== false;
    if (!config.enabled) return new ProfileCollector(undefined, 'profiler disabled by configuration', kernel);
    const objectPath = config.objectPath ?? DEFAULT_PROFILE_OBJECT;
    const status = ebpfStatus(objectPath);
    if (!status.available) return new ProfileCollector(undefined, status.message.replace('running packet-only', 'no profiles'), kernel);
    try {
      const p = EbpfProfiler.open({ objectPath, frequency: config.frequency, pid: config.pid });
      return new ProfileCollector(p, `on-CPU profiler at ${p.frequency} Hz per CPU`, kernel);
    } catch (err) {
      const e = err as Error & { code?: string };
      return new ProfileCollector(undefined, `profiler unavailable (${e.code ?? 'load_failed'}: ${e.message.split('\n')[0]})`, kernel);
    }
  }

  get active(): boolean {
    return this.profiler !== undefined;
  }

  /**
   * The interval since the previous call as a ProfileBatch (send it as MessageKind PROFILE_BATCH
   * to the sender), or undefined when inactive or nothing was sampled.
   */
  collect(nowUs = Date.now() * 1000): flowtap.IProfileBatch | undefined {
    if (!this.profiler) return undefined;
    const raw = this.profiler.collect();
    const lost = this.profiler.counters().samplesMapFull;
    const batch: flowtap.IProfileBatch = {
      start_time: this.lastUs, end_time: nowUs, sample_hz: this.profiler.frequency,
      stacks: foldSamples(raw, this.symbols, this.kernelStacks), lost_samples: lost - this.lastLost,
    };
    this.lastUs = nowUs;
    this.lastLost = lost;
    return batch.stacks!.length > 0 ? batch : undefined;
  }

  /** Settles once the sampling has stopped. */
  close(): Promise<void> {
    const detached = this.profiler?.close() ?? Promise.resolve();
    this.profiler = undefined;
    return detached;
  }
}
