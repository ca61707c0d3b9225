// Runs the eBPF collector inside the capture service (live mode): socket-data batches go to l7,
// the agent's own processes are never traced (their traffic would trace itself), and whether
// eBPF is on is said once in the log and always in a gauge.
import fs from 'node:fs';
import client from 'prom-client';
import type { ServiceContext } from '../../lib/service';
import { TotalsSeen } from '../../lib/metrics';
import { Kind } from '../../lib/transport';
import { flowtap } from '../../lib/proto';
import { EbpfCollector } from './ebpf-collector';
import { ProfileCollector } from './ebpf-profiler';

/** Batches waiting to go to l7 past which new ones are dropped and counted (l7 is behind). */
const MAX_PENDING_BATCHES = 64;
const RESCAN_INTERVAL_MS = 10_000;

/** Pids of the agent's own processes: node running one of dist/services/<name>/main.js. */
export function agentPids(): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (/\/services\/(capture|flow|quadruple|l7|sender)\/main\.js/.test(cmdline)) pids.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

export function startEbpf(ctx: ServiceContext): EbpfCollector {
  const cfg = ctx.config.ebpf;
  let pending = 0;
  const backlog = { rows: 0 };
  const collector = EbpfCollector.start({
    enabled: cfg.enabled,
    socketTracer: cfg.socket_tracer,
    tls: cfg.tls,
    syscallHook: cfg.syscall_hook,
    capBytes: cfg.cap_bytes,
    processNames: cfg.process_names,
    excludePids: agentPids(),
  }, (batch) => {
    // The batch is reused when this returns: encode now, send in order behind earlier batches.
    if (pending >= MAX_PENDING_BATCHES) {
      backlog.rows += batch.count;
      return;
    }
    pending++;
    const count = batch.count;
    ctx.send('l7', Kind.SOCKET_DATA_BATCH, batch.encode(), count)
      .catch((err) => ctx.log.warn('socket data not sent', { error: (err as Error).message }))
      .finally(() => { pending--; });
  });
  if (collector.packetOnly) ctx.log.warn(collector.statusMessage);
  else ctx.log.info(collector.statusMessage);
  new client.Gauge({
    name: 'flowtap_ebpf_packet_only',
    help: '1 when the agent runs without eBPF (no root, BTF or tracefs, or turned off), 0 when the socket tracer runs',
    registers: [ctx.metrics.registry],
    collect() { this.set(collector.packetOnly); },
  });
  ctx.metrics.trackDrops('ebpf_', () => ({ ...collector.drops, l7_backlog: backlog.rows }));
  ctx.metrics.trackSize('ebpf_batches_pending', () => pending);
  const reclaimedSeen = new TotalsSeen();
  new client.Counter({
    name: 'flowtap_ebpf_socket_entries_reclaimed_total',
    help: 'Kernel socket map entries the sweep removed because their fd no longer was a socket, by reason (process_exited; fd_closed: close-on-exec, dup2, close_range)',
    labelNames: ['reason'],
    registers: [ctx.metrics.registry],
    collect() {
      for (const reason of ['process_exited', 'fd_closed'] as const) {
        // inc by 0 too: both series exist from the first scrape.
        this.inc({ reason }, reclaimedSeen.growth(reason, collector.reclaimed[reason]));
      }
    },
  });
  ctx.metrics.trackSize('ebpf_socket_entries', () => collector.mapCounts().socketInfo);
  if (!collector.packetOnly) {
    if (!collector.sweepsSockets) ctx.log.warn('eBPF socket map not swept: this process is not in the host pid namespace (run the agent with the host pid namespace); entries of exited processes stay until the map is full');
    const timer = setInterval(() => {
      for (const pid of agentPids()) collector.tracePid(pid, 'skip');
      collector.rescanTls();
      collector.sweepSockets();
    }, RESCAN_INTERVAL_MS);
    timer.unref();
  }
  startProfiles(ctx);
  return collector;
}

/** The running profiler and its interval timer, so stopProfiles can send the last interval. */
let profiles: { collector: ProfileCollector; timer?: NodeJS.Timeout; send(): Promise<void> } | undefined;

/**
 * Starts the on-CPU profiler when `ebpf.profiler` is on: every `profile_interval_s` the folded
 * stacks of the interval go to the sender as one ProfileBatch. Drops (by reason, prefix
 * `profile_`): send_failed (stacks of a batch the sender socket refused).
 */
function startProfiles(ctx: ServiceContext): void {
  const cfg = ctx.config.ebpf;
  if (!cfg.enabled || !cfg.profiler) return;
  const collector = ProfileCollector.start({ enabled: true });
  if (!collector.active) {
    ctx.log.warn(collector.statusMessage);
    return;
  }
  ctx.log.info(collector.statusMessage);
  const drops = { send_failed: 0 };
  const sent = { batches: 0, stacks: 0 };
  ctx.metrics.trackDrops('profile_', () => drops);
  ctx.metrics.trackSize('profile_batches_sent', () => sent.batches);
  const send = async (): Promise<void> => {
    const batch = collector.collect();
    if (!batch) return;
    const rows = batch.stacks?.length ?? 0;
    try {
      await ctx.send('sender', Kind.PROFILE_BATCH, flowtap.ProfileBatch.encode(batch).finish(), rows);
      sent.batches++;
      sent.stacks += rows;
    } catch (err) {
      drops.send_failed += rows;
      ctx.log.warn('profile batch not sent', { error: (err as Error).message });
    }
  };
  const timer = setInterval(() => void send(), cfg.profile_interval_s * 1000);
  timer.unref();
  profiles = { collector, timer, send };
}

/** Sends the last (partial) interval and detaches the profiler. Call before END_OF_STREAM. */
export async function stopProfiles(): Promise<void> {
  if (!profiles) return;
  const p = profiles;
  profiles = undefined;
  clearInterval(p.timer);
  await p.send();
  void p.collector.close();
}
