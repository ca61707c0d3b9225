// A timer wheel of 1-second buckets over slot numbers, for flow expiry without scanning every
// flow per tick. Deadlines move later on almost every packet, so they are updated lazily: a slot
// stays in the bucket it was linked into, and when that bucket comes round the slot is either
// expired or relinked into the bucket of its current deadline. Only a deadline that moves
// *earlier* (a FIN shortening a 300 s timeout to 5 s) relinks at once.

const NONE = -1;
const US_PER_S = 1e6;

export class TimerWheel {
  private readonly bucketCount: number;
  private readonly heads: Int32Array;
  private prev: Int32Array;
  private next: Int32Array;
  /** Second of the bucket a slot is linked into, or -1 when not linked. */
  private linkedSec: Float64Array;
  /** The slot's current deadline in µs (may be later than its bucket: lazy). */
  deadlineUs: Float64Array;
  /** Every bucket of seconds before this one has been processed. */
  private cursorSec = -1;

  constructor(capacity: number, bucketCount = 1024) {
    this.bucketCount = bucketCount;
    this.heads = new Int32Array(bucketCount).fill(NONE);
    this.prev = new Int32Array(capacity).fill(NONE);
    this.next = new Int32Array(capacity).fill(NONE);
    this.linkedSec = new Float64Array(capacity).fill(-1);
    this.deadlineUs = new Float64Array(capacity);
  }

  grow(capacity: number): void {
    const old = this.prev.length;
    const grow32 = (a: Int32Array) => { const b = new Int32Array(capacity).fill(NONE); b.set(a); return b; };
    this.prev = grow32(this.prev);
    this.next = grow32(this.next);
    const linked = new Float64Array(capacity).fill(-1);
    linked.set(this.linkedSec);
    this.linkedSec = linked;
    const dl = new Float64Array(capacity);
    dl.set(this.deadlineUs.subarray(0, old));
    this.deadlineUs = dl;
  }

  /** Sets the slot's deadline, linking it if needed. */
  schedule(slot: number, deadlineUs: number): void {
    this.deadlineUs[slot] = deadlineUs;
    const sec = Math.max(Math.floor(deadlineUs / US_PER_S), this.cursorSec);
    const linked = this.linkedSec[slot];
    if (linked >= 0) {
      if (sec >= linked) return; // lazy: found later when its bucket comes round
      this.unlink(slot);
    }
    this.link(slot, sec);
  }

  cancel(slot: number): void {
    if (this.linkedSec[slot] >= 0) this.unlink(slot);
  }

  /**
   * Calls `onExpire(slot)` for every slot whose deadline is <= nowUs (the slot is unlinked
   * first; the callback may free it). Visits at most one round of buckets however long the gap.
   */
  expire(nowUs: number, onExpire: (slot: number) => void): void {
    const nowSec = Math.floor(nowUs / US_PER_S);
    if (this.cursorSec < 0) this.cursorSec = nowSec;
    const from = Math.max(this.cursorSec, nowSec - this.bucketCount + 1);
    for (let sec = from; sec <= nowSec; sec++) {
      const b = sec % this.bucketCount;
      let slot = this.heads[b];
      while (slot !== NONE) {
        const following = this.next[slot];
        const deadline = this.deadlineUs[slot];
        if (deadline <= nowUs) {
          this.unlink(slot);
          onExpire(slot);
        } else {
          const due = Math.max(Math.floor(deadline / US_PER_S), nowSec);
          if (due !== this.linkedSec[slot]) {
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
    this.linkedSec[slot] = sec;
  }

  private unlink(slot: number): void {
    const p = this.prev[slot];
    const n = this.next[slot];
    if (p !== NONE) this.next[p] = n;
    else this.heads[this.linkedSec[slot] % this.bucketCount] = n;
    if (n !== NONE) this.prev[n] = p;
    this.prev[slot] = NONE;
    this.next[slot] = NONE;
    this.linkedSec[slot] = -1;
  }
}
