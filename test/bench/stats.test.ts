// The median's confidence interval the eBPF overhead bench prints, against the order statistics
// that published tables of the sign test give (n = 7, 15, 20).
import test from 'ava';
import { medianCi } from '../../bench/stats';

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
