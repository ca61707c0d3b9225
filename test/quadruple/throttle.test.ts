// Throttles at five times their limit: the reservoir (L4 logs) keeps exactly the limit and what
// it keeps is a uniform sample; the leaky bucket (L7 logs) passes the limit per second, spread
// evenly over time. Uniformity is a Pearson chi-square test with 19 degrees of freedom (20 bins):
// the statistic must stay under 43.82, the 0.999 quantile of chi-square(19), i.e. a uniform
// sampler fails it one time in 1000 (the seeds are fixed, so the test is deterministic).
import test from 'ava';
import { flowtap } from '../../lib/proto';
import { LeakyBucketThrottle, ReservoirThrottle, XorShift32 } from '../../lib/throttle';
import { QuadrupleStage } from '../../services/quadruple/quadruple-stage';
import { PacketBatch } from '../../lib/packet-batch';

const CHI2_19_999 = 43.82;
const BINS = 20;

function chiSquare(observed: number[]): number {
  const total = observed.reduce((a, b) => a + b, 0);
  const expected = total / observed.length;
  return observed.reduce((a, o) => a + ((o - expected) ** 2) / expected, 0);
}

interface Rec { seq: number; pos: number; sampled?: boolean }

const LIMIT = 1000;
const T0_US = 1_700_000_000_000_000; // a multiple of 4 s

/** 5 x LIMIT records per second for `seconds` s, evenly spaced; returns what the throttle kept. */
function runReservoir(seconds: number, seed: number) {
  const kept: Rec[] = [];
  const th = new ReservoirThrottle<Rec>(LIMIT, (r) => kept.push(r), seed);
  const perSec = 5 * LIMIT;
  for (let k = 0; k < seconds * perSec; k++) {
    const t = T0_US + Math.floor((k * 1e6) / perSec);
    th.add({ seq: k, pos: k % (perSec * ReservoirThrottle.BUCKET_SEC) }, t);
  }
  th.flush();
  return { kept, th };
}

test('reservoir throttle at 5x its limit keeps exactly the limit, a uniform sample (chi-square)', (t) => {
  const seconds = 8;
  const { kept, th } = runReservoir(seconds, 12345);
  t.is(kept.length, LIMIT * seconds, 'exactly LIMIT per second');
  t.is(th.dropped, 4 * LIMIT * seconds, 'what it dropped is counted');
  t.true(kept.every((r) => r.sampled === true), 'kept records say they were sampled');
  // Each 4 s bucket keeps exactly 4 x LIMIT.
  const perBucket = new Map<number, number>();
  for (const r of kept) { const b = Math.floor(r.seq / (5 * LIMIT * 4)); perBucket.set(b, (perBucket.get(b) ?? 0) + 1); }
  t.deepEqual([...perBucket.values()], [4 * LIMIT, 4 * LIMIT]);
  // Uniform over the arrival position within the bucket: 20 bins of equal width.
  const bins = new Array<number>(BINS).fill(0);
  const bucketSize = 5 * LIMIT * 4;
  for (const r of kept) bins[Math.floor((r.pos * BINS) / bucketSize)]++;
  const chi2 = chiSquare(bins);
  t.log(`reservoir chi-square(19) = ${chi2.toFixed(2)} (threshold ${CHI2_19_999})`);
  t.true(chi2 < CHI2_19_999, `chi2 ${chi2}`);
  // The test has power: keeping the first LIMIT x 4 of each bucket fails it by far.
  const head = new Array<number>(BINS).fill(0);
  for (let k = 0; k < 2 * 4 * LIMIT; k++) head[Math.floor(((k % (4 * LIMIT)) * BINS) / bucketSize)]++;
  t.true(chiSquare(head) > CHI2_19_999);
});

test('reservoir throttle under its limit keeps everything, unmarked, and emits when the bucket ends', (t) => {
  const kept: Rec[] = [];
  const th = new ReservoirThrottle<Rec>(LIMIT, (r) => kept.push(r), 1);
  for (let k = 0; k < 100; k++) th.add({ seq: k, pos: k }, T0_US + k * 1000);
  t.is(kept.length, 0, 'held until the 4 s bucket ends');
  th.advance(T0_US + 4e6 - 1);
  t.is(kept.length, 0);
  th.advance(T0_US + 4e6);
  t.deepEqual(kept.map((r) => r.seq), Array.from({ length: 100 }, (_, k) => k));
  t.true(kept.every((r) => r.sampled !== true));
  t.is(th.dropped, 0);
});

test('leaky bucket at 5x its limit passes the limit per second, spread evenly over time (chi-square)', (t) => {
  const th = new LeakyBucketThrottle<Rec>(LIMIT);
  const rng = new XorShift32(777);
  const seconds = 10;
  // 5 x LIMIT records per second at random times (uniform order statistics per second).
  const times: number[] = [];
  for (let s = 0; s < seconds; s++) {
    const ts = Array.from({ length: 5 * LIMIT }, () => rng.below(1_000_000)).sort((a, b) => a - b);
    for (const x of ts) times.push(T0_US + s * 1e6 + x);
  }
  const keptTimes: number[] = [];
  let sampled = 0;
  for (let k = 0; k < times.length; k++) {
    const r: Rec = { seq: k, pos: 0 };
    if (th.admit(r, times[k])) { keptTimes.push(times[k]); if (r.sampled) sampled++; }
  }
  t.is(th.dropped + keptTimes.length, times.length, 'every record kept or counted as dropped');
  const perSecond = new Array<number>(seconds).fill(0);
  for (const x of keptTimes) perSecond[Math.floor((x - T0_US) / 1e6)]++;
  t.log(`leaky bucket per second: ${perSecond.join(' ')}`);
  // Second 0 also spends the initial burst (the bucket starts with room for LIMIT).
  for (let s = 1; s < seconds; s++) t.true(Math.abs(perSecond[s] - LIMIT) <= 1, `second ${s}: ${perSecond[s]}`);
  t.true(perSecond[0] <= 2 * LIMIT);
  // After the burst, what passes is spread evenly: 20 bins over seconds 1..9.
  const bins = new Array<number>(BINS).fill(0);
  for (const x of keptTimes) {
    const rel = x - T0_US - 1e6;
    if (rel >= 0) bins[Math.floor((rel * BINS) / ((seconds - 1) * 1e6))]++;
  }
  const chi2 = chiSquare(bins);
  t.log(`leaky bucket chi-square(19) = ${chi2.toFixed(2)} (threshold ${CHI2_19_999})`);
  t.true(chi2 < CHI2_19_999, `chi2 ${chi2}`);
  t.true(sampled >= keptTimes.length - 2 * LIMIT, 'records passed while others are dropped say they were sampled');
});

test('the quadruple stage throttles L4 logs: at 5x the limit it keeps 4 x limit per 4 s bucket and counts the rest', (t) => {
  const logs: flowtap.IL4FlowLog[] = [];
  const limit = 50;
  const q = new QuadrupleStage({ onDocument: () => undefined, onL4Log: (l) => logs.push(l) }, { l4LogPerSecond: limit, throttleSeed: 9 });
  const ip = (a: number) => { const b = new Uint8Array(16); PacketBatch.setIpv4(b, 0, Uint8Array.of(10, 0, 0, a), 0); return b; };
  const sec0 = T0_US / 1e6;
  let id = 1;
  for (let s = 0; s < 4; s++) {
    const flows: flowtap.IFlow[] = [];
    for (let k = 0; k < 5 * limit; k++, id++) {
      flows.push({ flow_id: id, start_time: (sec0 + s) * 1e6, end_time: (sec0 + s) * 1e6, report_time: (sec0 + s) * 1e6,
        ip_0: ip(1), ip_1: ip(2), client_port: 1000 + k, server_port: 80, protocol: 6, packet_tx: 1, byte_tx: 60,
        is_new_flow: true, is_closed: true, close_type: 'finish' });
    }
    q.addFlows(flows);
  }
  q.advance((sec0 + 4) * 1e6);
  t.is(logs.length, 4 * limit);
  t.is(q.drops.l4_log_throttled, 16 * limit);
  t.true(logs.every((l) => l.sampled === true));
  q.flush();
  t.is(logs.length, 4 * limit);
});
