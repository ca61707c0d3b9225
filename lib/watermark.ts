// The packet time a stage with several upstreams may move its clock to.
//
// A tick from an upstream promises that nothing older follows on that upstream's socket. With
// several upstreams, a tick that one of them relays can overtake data still queued on another's
// socket (quadruple hears flow's tick again from l7, and l7 may be seconds ahead of quadruple's
// backlog from flow). So the clock may only move to the oldest of the upstreams' latest ticks.
// Upstreams that have ended no longer hold it back; one that has not ticked yet does.

export class Watermark {
  private readonly latest = new Map<string, number>();
  private readonly ended = new Set<string>();
  private current = -Infinity;

  constructor(private readonly upstreams: readonly string[]) {}

  /** The clock so far (-Infinity before every live upstream has ticked). */
  get timeUs(): number {
    return this.current;
  }

  /**
   * Records a tick from `source`; returns the new watermark when it moved forward, else
   * undefined. Ticks from a service that is not an upstream are ignored.
   */
  tick(source: string, timeUs: number): number | undefined {
    if (!this.upstreams.includes(source)) return undefined;
    if (!(timeUs <= (this.latest.get(source) ?? -Infinity))) this.latest.set(source, timeUs);
    return this.advance();
  }

  /** `source` has sent everything; returns the new watermark when that moved it forward. */
  end(source: string): number | undefined {
    this.ended.add(source);
    return this.advance();
  }

  /** True once every upstream has ended. */
  get allEnded(): boolean {
    return this.upstreams.every((u) => this.ended.has(u));
  }

  /** A new stream begins (after an end of stream from every upstream). */
  reset(): void {
    this.latest.clear();
    this.ended.clear();
    this.current = -Infinity;
  }

  private advance(): number | undefined {
    let oldest = Infinity;
    for (const u of this.upstreams) {
      if (this.ended.has(u)) continue;
      const t = this.latest.get(u);
      if (t === undefined) return undefined;
      if (t < oldest) oldest = t;
    }
    if (oldest === Infinity || !(oldest > this.current)) return undefined;
    this.current = oldest;
    return oldest;
  }
}
