// The shell every service shares: config, logs, metrics server, runtime directory, the inlet
// and outlets, the receive loop with end-of-stream accounting, and orderly exits. A service's
// main.ts supplies only what is its own: how to handle each kind of batch and how to flush.
import { ConfigError, loadConfig, type Config, type ServiceName } from './config';
import { Logger } from './log';
import { ServiceMetrics } from './metrics';
import { flowtap } from './proto';
import { downstreamsOf, endpointOf, prepareRuntimeDir, UPSTREAMS } from './topology';
import { Inlet, Kind, Outlet } from './transport';
import { Watermark } from './watermark';

export const kindName = (kind: number): string => flowtap.MessageKind[kind] ?? `unknown_${kind}`;

/** Messages a service may send to the `flowtap replay` command that started it (Node IPC). */
export type ParentMessage =
  | { type: 'ready'; service: string }
  | { type: 'progress'; bytes: number; totalBytes: number; packets: number }
  | { type: 'summary'; service: string; counts: Record<string, number> };

export class ServiceContext {
  readonly log: Logger;
  readonly metrics: ServiceMetrics;
  /** True when started by `flowtap replay`: exit once the stream has ended and is flushed. */
  readonly replay = process.env.FLOWTAP_MODE === 'replay';
  /** Set by SIGTERM/SIGINT: finish the stream (flush, forward END_OF_STREAM) and exit. */
  draining = false;
  /**
   * True from the moment every upstream has ended the stream (and this stage has flushed and
   * passed END_OF_STREAM on) until anything arrives again. pm2 stops the services one after
   * another, upstream first: a stage then ends its stream before its own signal comes, and must
   * not wait for a second END_OF_STREAM that no upstream will send.
   */
  streamEnded = false;
  /** Ends a stage's receive loop (closes its inlet); set while the loop runs. */
  stopReceiving: (() => void) | undefined;
  private readonly outlets = new Map<ServiceName, Outlet>();

  constructor(readonly name: ServiceName, readonly config: Config) {
    this.log = new Logger(name, config.log_level);
    this.metrics = new ServiceMetrics(name);
  }

  outlet(target: ServiceName): Outlet {
    let out = this.outlets.get(target);
    if (!out) {
      out = new Outlet(target, endpointOf(this.config.runtime_dir, target), this.config.transport.high_water_mark);
      this.outlets.set(target, out);
    }
    return out;
  }

  /** Sends one encoded batch and counts it. */
  async send(target: ServiceName, kind: number, body: Uint8Array, records: number): Promise<void> {
    await this.outlet(target).send(kind, body);
    const labels = { kind: kindName(kind), target };
    this.metrics.batchesOut.inc(labels);
    this.metrics.recordsOut.inc(labels, records);
  }

  /** Sends a control message to every downstream service. */
  async broadcastControl(kind: flowtap.Control.Kind, timeUs: number): Promise<void> {
    for (const target of downstreamsOf(this.name)) {
      await this.outlet(target).sendControl(kind, timeUs, this.name);
    }
  }

  tellParent(msg: ParentMessage): void {
    if (this.replay && process.send) process.send(msg);
  }

  closeOutlets(): void {
    for (const out of this.outlets.values()) out.close();
  }
}

/**
 * Collects records into batches of `batchSize` for one target, so that every message that
 * crosses a process boundary carries many records.
 */
export class BatchOut<T> {
  private pending: T[] = [];

  constructor(
    private readonly ctx: ServiceContext,
    private readonly target: ServiceName,
    private readonly kind: number,
    private readonly encode: (records: T[]) => Uint8Array,
    private readonly batchSize = ctx.config.transport.batch_size,
  ) {}

  readonly push = (record: T): void => {
    this.pending.push(record);
  };

  get size(): number {
    return this.pending.length;
  }

  /** Sends full batches; with `all`, the partial last one too. */
  async flush(all = false): Promise<void> {
    while (this.pending.length >= this.batchSize || (all && this.pending.length > 0)) {
      const chunk = this.pending.length <= this.batchSize ? this.pending : this.pending.slice(0, this.batchSize);
      this.pending = this.pending.length <= this.batchSize ? [] : this.pending.slice(this.batchSize);
      await this.ctx.send(this.target, this.kind, this.encode(chunk), chunk.length);
    }
  }
}

export interface StageHandlers {
  /** One received batch of `kind` (never CONTROL). Throwing counts the batch as malformed. */
  onBatch(kind: number, body: Buffer): Promise<void>;
  /** Packet time advanced to `timeUs` upstream while no data came. */
  onTick(timeUs: number): Promise<void>;
  /** Every upstream has ended: flush everything held; the shell then forwards END_OF_STREAM. */
  onEndOfStream(): Promise<void>;
}

export interface SourceHandlers {
  /** Produces the stream (capture); resolves when it has ended and END_OF_STREAM is sent. */
  run(): Promise<void>;
  /** Stops producing, sends what is held and END_OF_STREAM. */
  stop(): Promise<void>;
}

export interface ServiceDefinition {
  name: ServiceName;
  /** Builds the stage; a source (capture) produces the stream with `run` instead of onBatch. */
  setup(ctx: ServiceContext): Promise<Partial<StageHandlers> | SourceHandlers>;
}

/** On SIGTERM a service waits this long for the end of the stream from its upstreams. */
const DRAIN_TIMEOUT_MS = 4000;

function fail(log: Logger | undefined, name: string, err: unknown, code: number): never {
  const msg = err instanceof Error ? err.message : String(err);
  if (log) log.error(msg, { stack: err instanceof Error ? err.stack : undefined });
  else process.stderr.write(`flowtap-${name}: ${msg}\n`);
  process.exit(code);
}

export async function runService(def: ServiceDefinition): Promise<void> {
  // Listen for the replay's start word from the first moment: a message that arrives before
  // its listener is lost.
  const started = process.env.FLOWTAP_MODE === 'replay' ? startSignal() : Promise.resolve();
  let config: Config;
  try {
    config = loadConfig();
  } catch (err) {
    fail(undefined, def.name, err, err instanceof ConfigError ? 2 : 1);
  }
  const ctx = new ServiceContext(def.name, config);
  const { log, metrics } = ctx;
  process.on('uncaughtException', (err) => fail(log, def.name, err, 1));
  process.on('unhandledRejection', (err) => fail(log, def.name, err, 1));
  // Exit by letting the event loop run dry rather than by process.exit(): ZeroMQ delivers what is
  // still queued (linger -1) when its context ends with the process, and process.exit() can cut
  // that short. A handle left open by mistake must not keep a finished service alive, though.
  let drainTimer: NodeJS.Timeout | undefined;
  let exiting = false;
  const exit = () => {
    if (exiting) return;
    exiting = true;
    clearTimeout(drainTimer);
    ctx.closeOutlets();
    metrics.close();
    // The parent's IPC channel must not keep a finished service alive. Unref it rather than
    // disconnect: under pm2 its metrics module (@pm2/io) calls process.exit(1) on its next send
    // over a disconnected channel, which reported every stop as a failure and could cut the
    // ZeroMQ delivery short.
    process.channel?.unref();
    setTimeout(() => {
      log.warn('still running 10 s after the end; exiting');
      process.exit(0);
    }, 10_000).unref();
  };
  let stage: Partial<StageHandlers> | SourceHandlers | undefined;
  // Stopping drains the pipeline: the source sends END_OF_STREAM, every stage flushes what it
  // holds (open flows, sessions, windows) and passes it on, so `npm stop` loses nothing.
  const stop = (signal: string) => {
    if (ctx.draining) return;
    ctx.draining = true;
    log.info('stopping: draining the stream', { signal });
    const source = stage !== undefined && 'stop' in stage;
    drainTimer = setTimeout(() => {
      log.warn(source ? 'could not send everything held before the drain timeout; exiting'
        : 'no end of stream from upstream in time; exiting with data still held', { timeout_ms: DRAIN_TIMEOUT_MS });
      ctx.stopReceiving?.();
      exit();
    }, DRAIN_TIMEOUT_MS).unref();
    if (stage && 'stop' in stage) {
      stage.stop().then(() => {
        log.info('drained; exiting');
        exit();
      }, (err) => fail(log, def.name, err, 1));
    } else if (ctx.streamEnded) {
      log.info('the stream had already ended upstream and was flushed');
      ctx.stopReceiving?.();
    }
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));

  prepareRuntimeDir(config.runtime_dir);
  const port = await metrics.listen(config.metrics.listen_address, config.metrics.ports[def.name]);
  stage = await def.setup(ctx);
  log.info('started', { pid: process.pid, metrics: `http://${config.metrics.listen_address}:${port}/metrics`, replay: ctx.replay });

  if ('run' in stage) {
    await started;
    await stage.run();
  } else {
    await receiveLoop(ctx, stage);
  }
  if (ctx.draining) {
    log.info('drained; exiting');
    exit();
  } else if (ctx.replay) {
    log.info('end of stream flushed; exiting');
    exit();
  }
}

/**
 * In a replay the source waits for the word to start until every other service has bound its
 * socket: a service that exits at the end of the stream must not leave messages queued for a
 * receiver that does not exist yet.
 */
function startSignal(): Promise<void> {
  return new Promise((resolve) => {
    const onMessage = (msg: { type?: string }) => {
      if (msg?.type !== 'start') return;
      process.off('message', onMessage);
      resolve();
    };
    process.on('message', onMessage);
  });
}

async function receiveLoop(ctx: ServiceContext, stage: Partial<StageHandlers>): Promise<void> {
  const { config, log, metrics } = ctx;
  const inlet = new Inlet(endpointOf(config.runtime_dir, ctx.name), config.transport.high_water_mark);
  await inlet.bind();
  ctx.stopReceiving = () => inlet.close();
  ctx.tellParent({ type: 'ready', service: ctx.name });
  const clock = new Watermark(UPSTREAMS[ctx.name]);
  let malformed = 0;
  metrics.trackDrops('', () => ({ malformed_batch: malformed }));

  const tick = async (timeUs: number) => {
    await stage.onTick?.(timeUs);
    await ctx.broadcastControl(flowtap.Control.Kind.TICK, timeUs);
  };

  for await (const { kind, body } of inlet.messages()) {
    const label = { kind: kindName(kind) };
    metrics.batchesIn.inc(label);
    ctx.streamEnded = false;
    if (kind === Kind.CONTROL) {
      let control: flowtap.Control;
      try {
        control = flowtap.Control.decode(body);
      } catch {
        malformed++;
        continue;
      }
      if (control.kind === flowtap.Control.Kind.TICK) {
        const timeUs = clock.tick(control.source, Number(control.time_us));
        if (timeUs !== undefined) await tick(timeUs);
        continue;
      }
      log.info('end of stream from upstream', { source: control.source });
      const timeUs = clock.end(control.source);
      if (!clock.allEnded) {
        if (timeUs !== undefined) await tick(timeUs);
        continue;
      }
      await stage.onEndOfStream?.();
      await ctx.broadcastControl(flowtap.Control.Kind.END_OF_STREAM, control.time_us);
      clock.reset();
      if (ctx.replay || ctx.draining) break;
      ctx.streamEnded = true;
      continue;
    }
    const endTimer = metrics.batchSeconds.startTimer(label);
    try {
      await stage.onBatch?.(kind, body);
    } catch (err) {
      malformed++;
      log.warn('dropped a malformed batch', { kind: label.kind, error: (err as Error).message });
    }
    endTimer();
  }
  ctx.stopReceiving = undefined;
  inlet.close();
}
