// Log throttles on packet time (no timers): what they keep is marked `sampled` when anything of
// the same kind was dropped, so a reader knows the log is not complete.
//
// - ReservoirThrottle (L4 flow logs): at most `perSecond` records per second, as a uniform random
//   sample of each 4-second bucket of packet time (Vitter's algorithm R, capacity 4 x perSecond).
//   Records are held until their bucket ends, because no record can be known to be kept before
//   the bucket's last record has been seen.
// - LeakyBucketThrottle (L7 flow logs): a record passes when the bucket has room; the bucket
//   drains at `perSecond` records per second of packet time, holds at most `perSecond` (the burst).
//   Records pass at once, in order; under overload what passes is spread evenly over time.

/** A record a throttle can mark as sampled (L4FlowLog and L7FlowLog both have the field). */
export interface Sampleable {
  sampled?: boolean | null;
}

const US_PER_SEC = 1_000_000;

/** xorshift32: a small seedable generator, so a test (or a replay) samples the same way twice. */
export class XorShift32 {
  private s: number;
  constructor(seed: number) {
    this.s = (seed >>> 0) || 0x9e3779b9;
  }
  /** A uniform integer in [0, n), n <= 2^32. */
  below(n: number): number {
    let x = this.s;
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    this.s = x;
    // 53-bit product keeps the modulo bias negligible for the n used here (<= 2^26).
    return Math.floor((x / 4294967296) * n);
  }
}

export class ReservoirThrottle<T extends Sampleable> {
  static readonly BUCKET_SEC = 4;
  /** Records dropped by the throttle, all time. */
  dropped = 0;
  private readonly capacity: number;
  private readonly reservoir: T[] = [];
  /** Records offered in the current bucket (kept or not). */
  private seen = 0;
  /** Start of the current bucket, µs (-1: none yet). */
  private bucketStartUs = -1;
  private readonly rng: XorShift32;

  /** `perSecond` = Infinity passes every record at once (no delay, no sampling). */
  constructor(readonly perSecond: number, private readonly emit: (record: T) => void, seed = (Math.random() * 2 ** 32) >>> 0) {
    this.capacity = Number.isFinite(perSecond) ? Math.max(1, Math.floor(perSecond)) * ReservoirThrottle.BUCKET_SEC : Infinity;
    this.rng = new XorShift32(seed);
  }

  /** Records held, waiting for their bucket to end. */
  get held(): number {
    return this.reservoir.length;
  }

  /**
   * Offers a record of packet time `timeUs`. A record older than the current bucket (logs are
   * emitted late by design: minute ends, closes) counts in the current bucket.
   */
  add(record: T, timeUs: number): void {
    if (this.capacity === Infinity) { this.emit(record); return; }
    this.advance(timeUs);
    if (this.bucketStartUs < 0) this.bucketStartUs = this.bucketStart(timeUs);
    this.seen++;
    if (this.reservoir.length < this.capacity) { this.reservoir.push(record); return; }
    // Algorithm R: the n-th record replaces a random kept one with probability capacity / n.
    const j = this.rng.below(this.seen);
    if (j < this.capacity) this.reservoir[j] = record;
    this.dropped++;
  }

  /** Packet time moved to `nowUs`: a bucket that has ended emits what it kept. */
  advance(nowUs: number): void {
    if (this.bucketStartUs >= 0 && nowUs >= this.bucketStartUs + ReservoirThrottle.BUCKET_SEC * US_PER_SEC) this.flush();
  }

  /** Emits what the current bucket kept (end of stream, or its end in packet time). */
  flush(): void {
    const sampled = this.seen > this.reservoir.length;
    for (const r of this.reservoir) {
      if (sampled) r.sampled = true;
      this.emit(r);
    }
    this.reservoir.length = 0;
    this.seen = 0;
    this.bucketStartUs = -1;
  }

  private bucketStart(timeUs: number): number {
    const b = ReservoirThrottle.BUCKET_SEC * US_PER_SEC;
    return timeUs - (timeUs % b);
  }
}

export class LeakyBucketThrottle<T extends Sampleable> {
  /** Records dropped by the throttle, all time. */
  dropped = 0;
  /** Room left, in records x 1e6 (integers: µs times records per second, so no rounding drift). */
  private room: number;
  private readonly fullRoom: number;
  private readonly rate: number;
  private lastUs = -1;
  /** Packet time of the last drop: records passed within the following second are marked sampled. */
  private lastDropUs = -Infinity;

  /** `perSecond` = Infinity passes every record. */
  constructor(readonly perSecond: number) {
    this.rate = Number.isFinite(perSecond) ? Math.max(1, Math.floor(perSecond)) : Infinity;
    this.fullRoom = this.rate * US_PER_SEC;
    this.room = this.fullRoom;
  }

  /**
   * True when `record` (of packet time `timeUs`) may pass; false when it is dropped (counted).
   * A record passed within a second after a drop is marked sampled.
   */
  admit(record: T, timeUs: number): boolean {
    if (this.fullRoom === Infinity) return true;
    if (timeUs > this.lastUs) {
      if (this.lastUs >= 0) this.room = Math.min(this.fullRoom, this.room + (timeUs - this.lastUs) * this.rate);
      this.lastUs = timeUs;
    }
    if (this.room >= US_PER_SEC) {
      this.room -= US_PER_SEC;
      if (this.lastUs - this.lastDropUs < US_PER_SEC) record.sampled = true;
      return true;
    }
    this.dropped++;
    this.lastDropUs = this.lastUs;
    return false;
  }
}
