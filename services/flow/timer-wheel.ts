// A timer wheel of 1-second buckets over slot numbers, for flow expiry without scanning every
// flow per tick. Deadlines move later on almost every packet, so they are updated lazily: a slot
// stays in the bucket it was linked into, and when that bucket comes round the slot is either
// expired or relinked into the bucket of its current deadline. Only a deadline that moves
// *earlier* (a FIN shortening a 300 s timeout to 5 s) relinks at once. Deadlines are not stored:
// the owner computes a slot's current one on demand (for flows: last packet + its state's timeout).

const NONE = -1;
/** `linkedSec` of a slot not linked into any bucket. */
const NOT_LINKED = -0x80000000;
const US_PER_S = 1e6;

export class TimerWheel {
  private readonly bucketCount: number;
  private readonly heads: Int32Array;
  private prev: Int32Array;
  private next: Int32Array;
  /**
   * Second of the bucket a slot is linked into, relative to `baseSec` (32 bits hold 68 years
   * either way), or NOT_LINKED.
   */
  private linkedSec: Int32Array;
  private baseSec = -1;
  /** Every bucket of seconds before this one has been processed (-1: none yet). */
  private cursorSec = -1;

  /** `deadlineOf(slot)`: the slot's current deadline in µs (may be later than its bucket: lazy). */
  constructor(capacity: number, private readonly deadlineOf: (slot: number) => number, bucketCount = 1024) {
    this.bucketCount = bucketCount;
    this.heads = new Int32Array(bucketCount).fill(NONE);
    this.prev = new Int32Array(capacity).fill(NONE);
    this.next = new Int32Array(capacity).fill(NONE);
    this.linkedSec = new Int32Array(capacity).fill(NOT_LINKED);
  }

  grow(capacity: number): void {
    const grow32 = (a: Int32Array, fill: number) => { const b = new Int32Array(capacity).fill(fill); b.set(a); return b; };
    this.prev = grow32(this.prev, NONE);
    this.next = grow32(this.next, NONE);
    this.linkedSec = grow32(this.linkedSec, NOT_LINKED);
  }

  /** Links the slot by its deadline (`deadlineOf(slot)` must now return `deadlineUs`) if needed. */
  schedule(slot: number, deadlineUs: number): void {
    const sec = Math.max(Math.floor(deadlineUs / US_PER_S), this.cursorSec);
    if (this.baseSec < 0) this.baseSec = sec;
    const linked = this.linkedSec[slot];
    if (linked !== NOT_LINKED) {
      if (sec - this.baseSec >= linked) return; // lazy: found later when its bucket comes round
      this.unlink(slot);
    }
    this.link(slot, sec);
  }

  cancel(slot: number): void {
    if (this.linkedSec[slot] !== NOT_LINKED) this.unlink(slot);
  }

  /**
   * Calls `onExpire(slot)` for every slot whose deadline is <= nowUs (the slot is unlinked
   * first; the callback may free it). Visits at most one round of buckets however long the gap.
   */
  expire(nowUs: number, onExpire: (slot: number) => void): void {
    const nowSec = Math.floor(nowUs / US_PER_S);
    if (this.cursorSec < 0) this.cursorSec = nowSec;
    if (this.baseSec < 0) this.baseSec = nowSec;
    const from = Math.max(this.cursorSec, nowSec - this.bucketCount + 1);
    for (let sec = from; sec <= nowSec; sec++) {
      const b = sec % this.bucketCount;
      let slot = this.heads[b];
      while (slot !== NONE) {
        const following = this.next[slot];
        const deadline = this.deadlineOf(slot);
        if (deadline <= nowUs) {
          this.unlink(slot);
          onExpire(slot);
        } else {
          const due = Math.max(Math.floor(deadline / US_PER_S), nowSec);
          if (due - this.baseSec !== this.linkedSec[slot]) {
            this.unlink(slot);
            this.link(slot, due);
          }
        }
        slot = following;
      }
    }
    // The current second's bucket may hold deadlines later in this second: revisit it next time.
    if (nowSec > this.cursorSec) this.cursorSec = nowSec;
  }

  private link(slot: number, sec: number): void {
    const b = sec % this.bucketCount;
    const head = this.heads[b];
    this.prev[slot] = NONE;
    this.next[slot] = head;
    if (head !== NONE) this.prev[head] = slot;
    this.heads[b] = slot;
    this.linkedSec[slot] = sec - this.baseSec;
  }

  private unlink(slot: number): void {
    const p = this.prev[slot];
    const n = this.next[slot];
    if (p !== NONE) this.next[p] = n;
    else this.heads[(this.linkedSec[slot] + this.baseSec) % this.bucketCount] = n;
    if (n !== NONE) this.prev[n] = p;
    this.prev[slot] = NONE;
    this.next[slot] = NONE;
    this.linkedSec[slot] = NOT_LINKED;
  }
}
