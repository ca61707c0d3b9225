// Copies what a socket delivers into plain records, so tests can compare after the blocks are released.
import {
  AfPacketSocket, INDEX_CAPLEN, INDEX_FLAGS, INDEX_IFINDEX, INDEX_OFFSET, INDEX_ORIGLEN, INDEX_TS_NSEC,
  INDEX_TS_SEC, INDEX_VLAN, INDEX_WORDS,
} from '../../native/index';

export interface CapturedFrame {
  bytes: Buffer;
  origLen: number;
  tsSec: number;
  tsNsec: number;
  ifindex: number;
  vlan: number;
  flags: number;
}

export interface Collector {
  frames: CapturedFrame[];
  blocks: number;
}

export function collect(sock: AfPacketSocket): Collector {
  const c: Collector = { frames: [], blocks: 0 };
  sock.onBlock((block, index, count, done) => {
    c.blocks++;
    for (let i = 0; i < count; i++) {
      const e = i * INDEX_WORDS;
      const off = index[e + INDEX_OFFSET];
      c.frames.push({
        bytes: Buffer.from(block.subarray(off, off + index[e + INDEX_CAPLEN])),
        origLen: index[e + INDEX_ORIGLEN],
        tsSec: index[e + INDEX_TS_SEC],
        tsNsec: index[e + INDEX_TS_NSEC],
        ifindex: index[e + INDEX_IFINDEX],
        vlan: index[e + INDEX_VLAN],
        flags: index[e + INDEX_FLAGS],
      });
    }
    done();
  });
  return c;
}

/**
 * Distinct frames with their counts, sorted: compares captures as multisets (arrival order
 * across CPUs may vary, and ava compares Maps in insertion order).
 */
export function multiset(hexFrames: Iterable<string>): Array<[string, number]> {
  const m = new Map<string, number>();
  for (const h of hexFrames) m.set(h, (m.get(h) ?? 0) + 1);
  return [...m.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}
