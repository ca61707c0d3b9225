// Running totals read at scrape time become Counter increments: each growth counted once, and a
// total that goes back (a restarted source) neither subtracts nor counts twice.
import test from 'ava';
import { ServiceMetrics, TotalsSeen } from '../../lib/metrics';

test('TotalsSeen gives the growth since the previous reading, per key', (t) => {
  const seen = new TotalsSeen();
  t.is(seen.growth('a', 5), 5);
  t.is(seen.growth('a', 5), 0);
  t.is(seen.growth('b', 2), 2);
  t.is(seen.growth('a', 9), 4);
  t.is(seen.growth('a', 3), 0, 'a total that went back adds nothing');
  t.is(seen.growth('a', 4), 1, 'and counts on from where it went back to');
});

test('drop counters of a stage reach flowtap_drops_total once per growth, by prefixed reason', async (t) => {
  const metrics = new ServiceMetrics('test');
  const counts = { malformed: 0, too_short: 0 };
  metrics.trackDrops('decode_', () => counts);
  const scrape = async (reason: string): Promise<number> => {
    const m = (await metrics.registry.getSingleMetric('flowtap_drops_total')!.get()).values.find((v) => v.labels.reason === reason);
    return m ? m.value : 0;
  };
  counts.malformed = 3;
  t.is(await scrape('decode_malformed'), 3);
  t.is(await scrape('decode_malformed'), 3, 'a second scrape adds nothing');
  counts.malformed = 7;
  counts.too_short = 1;
  t.is(await scrape('decode_malformed'), 7);
  t.is(await scrape('decode_too_short'), 1);
});
