// Every service's own health, for Prometheus: batches and records in and out, drops by reason,
// batch processing time, the sizes of what each stage holds, and Node's process metrics.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import client from 'prom-client';

/** A stage's drop counters: plain numbers it increments, read at scrape time. */
export type DropCounts = Map<string, number> | Record<string, number>;

function entries(counts: DropCounts): Iterable<[string, number]> {
  return counts instanceof Map ? counts.entries() : Object.entries(counts);
}

/**
 * Running totals (counts that only grow, read from a stage or the kernel) turned into the
 * increments a prom-client Counter takes.
 */
export class TotalsSeen {
  private readonly seen = new Map<string, number>();

  /** How much `key`'s total grew since the previous call (0 if it did not). */
  growth(key: string, total: number): number {
    const delta = total - (this.seen.get(key) ?? 0);
    this.seen.set(key, total);
    return delta > 0 ? delta : 0;
  }
}

export class ServiceMetrics {
  readonly registry = new client.Registry();
  readonly batchesIn: client.Counter<'kind'>;
  readonly recordsIn: client.Counter<'kind'>;
  readonly batchesOut: client.Counter<'kind' | 'target'>;
  readonly recordsOut: client.Counter<'kind' | 'target'>;
  readonly drops: client.Counter<'reason'>;
  readonly batchSeconds: client.Histogram<'kind'>;
  private readonly sizes = new Map<string, () => number>();
  private readonly dropSources: Array<{ prefix: string; counts: () => DropCounts }> = [];
  private readonly dropsSeen = new TotalsSeen();
  private server?: http.Server;

  constructor(readonly service: string) {
    this.registry.setDefaultLabels({ service });
    client.collectDefaultMetrics({ register: this.registry, prefix: 'flowtap_' });
    const registers = [this.registry];
    this.batchesIn = new client.Counter({ name: 'flowtap_batches_in_total', help: 'Batches received, by message kind', labelNames: ['kind'], registers });
    this.recordsIn = new client.Counter({ name: 'flowtap_records_in_total', help: 'Records received, by message kind', labelNames: ['kind'], registers });
    this.batchesOut = new client.Counter({ name: 'flowtap_batches_out_total', help: 'Batches sent, by message kind and target service', labelNames: ['kind', 'target'], registers });
    this.recordsOut = new client.Counter({ name: 'flowtap_records_out_total', help: 'Records sent, by message kind and target service', labelNames: ['kind', 'target'], registers });
    const syncDrops = this.syncDrops.bind(this);
    this.drops = new client.Counter({
      name: 'flowtap_drops_total',
      help: 'Records or packets dropped, by reason',
      labelNames: ['reason'],
      registers,
      collect() { syncDrops(); },
    });
    this.batchSeconds = new client.Histogram({
      name: 'flowtap_batch_processing_seconds',
      help: 'Time to process one received batch, by message kind',
      labelNames: ['kind'],
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5],
      registers,
    });
    const sizes = this.sizes;
    new client.Gauge({
      name: 'flowtap_held_items',
      help: 'Items a stage holds now (flows, sessions, windows, queued batches), by what they are',
      labelNames: ['what'],
      registers,
      collect() {
        for (const [what, read] of sizes) this.set({ what }, read());
      },
    });
  }

  /** Reports `read()` as the size of `what` at every scrape. */
  trackSize(what: string, read: () => number): void {
    this.sizes.set(what, read);
  }

  /** Reports a stage's drop counters, each reason prefixed with `prefix` (e.g. "decode_"). */
  trackDrops(prefix: string, counts: () => DropCounts): void {
    this.dropSources.push({ prefix, counts });
  }

  private syncDrops(): void {
    for (const src of this.dropSources) {
      for (const [reason, total] of entries(src.counts())) {
        const key = src.prefix + reason;
        const delta = this.dropsSeen.growth(key, total);
        if (delta > 0) this.drops.inc({ reason: key }, delta);
      }
    }
  }

  /** Serves /metrics; port 0 picks a free port. Resolves to the port bound. */
  listen(host: string, port: number): Promise<number> {
    this.server = http.createServer(async (req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end('try /metrics\n');
        return;
      }
      try {
        const body = await this.registry.metrics();
        res.writeHead(200, { 'Content-Type': this.registry.contentType }).end(body);
      } catch (err) {
        res.writeHead(500).end(String(err));
      }
    });
    return new Promise((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(port, host, () => resolve((this.server!.address() as AddressInfo).port));
    });
  }

  close(): void {
    this.server?.close();
  }
}
