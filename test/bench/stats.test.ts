// The median's confidence interval the eBPF overhead bench prints, against the order statistics
// that published tables of the sign test give (n = 7, 15, 20).
import test from 'ava';
import { medianCi, windowRate } from '../../bench/stats';

const ranks = (n: number): number[] => Array.from({ length: n }, (_, i) => (i * 7919) % n + 1); // 1..n, shuffled

test('n = 15: the 4th and 12th values, 96.5 %', (t) => {
  const ci = medianCi(ranks(15));
  t.deepEqual([ci.low, ci.high], [4, 12]);
  t.is(ci.level.toFixed(4), '0.9648');
});

test('n = 20: the 6th and 15th values, 95.9 %', (t) => {
  const ci = medianCi(ranks(20));
  t.deepEqual([ci.low, ci.high], [6, 15]);
  t.is(ci.level.toFixed(4), '0.9586');
});

test('n = 7: no inner pair reaches 95 %, so the extremes at 98.4 %; n = 5 only reaches 93.8 %', (t) => {
  const seven = medianCi(ranks(7));
  t.deepEqual([seven.low, seven.high, seven.level.toFixed(4)], [1, 7, '0.9844']);
  const five = medianCi([3, 1, 2, 5, 4]);
  t.deepEqual([five.low, five.high, five.level.toFixed(4)], [1, 5, '0.9375']);
  t.true(Number.isNaN(medianCi([]).low));
});

// 100 ms response rates of the bench's Node server without the tracer (recorded on this VM,
// 2026-11-24): wrk connecting, a plateau near 55 k with one dip to 21.8 k, wrk stopping.
const recorded = [30705, 41537, 53623, 54355, 50717, 52196, 52175, 51321, 56193, 57780, 56617, 54816, 21800, 56956, 57356, 52261, 55041, 3000];

test('window rate: the 90th percentile of the steady windows, which a dip does not move', (t) => {
  // 15 steady windows (the first two and the last left out); nearest rank below: floor(0.9 * 14) = 12,
  // the 13th smallest, 56,956.
  t.is(windowRate(recorded), 56956);
  const noDip = recorded.map((x) => (x === 21800 ? 55000 : x));
  t.is(windowRate(noDip), 56956);
  // Whereas the mean of the steady windows moves by 4.3 %.
  const mean = (xs: number[]): number => xs.slice(2, -1).reduce((a, b) => a + b, 0) / (xs.length - 3);
  t.true(mean(noDip) / mean(recorded) > 1.04);
});

test('window rate: NaN for a run too short to have steady windows', (t) => {
  t.true(Number.isNaN(windowRate([1, 2, 3])));
  t.is(windowRate([1, 2, 40, 3]), 40);
});
