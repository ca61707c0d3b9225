import test from 'ava';
import { Watermark } from '../../lib/watermark';

test('the clock follows the slowest upstream, not a tick relayed ahead of queued data', (t) => {
  // quadruple: flow's own ticks and l7's relay of them; l7 may be far ahead of flow's backlog.
  const w = new Watermark(['flow', 'l7']);
  t.is(w.tick('l7', 20e6), undefined, 'no clock until every upstream has ticked');
  t.is(w.tick('flow', 7e6), 7e6);
  t.is(w.tick('l7', 21e6), undefined, 'l7 running ahead does not move it');
  t.is(w.tick('flow', 8e6), 8e6);
  t.is(w.tick('flow', 8e6), undefined, 'a repeated tick is not a new one');
  t.is(w.tick('flow', 5e6), undefined, 'nor an older one');
  t.is(w.timeUs, 8e6);
});

test('an upstream that ended no longer holds the clock back', (t) => {
  // l7 in a replay: capture reads the file ahead of flow and ends first.
  const w = new Watermark(['flow', 'capture']);
  t.is(w.tick('flow', 3e6), undefined);
  t.is(w.end('capture'), 3e6, 'the end releases the clock to the other upstream');
  t.false(w.allEnded);
  t.is(w.tick('flow', 4e6), 4e6);
  t.is(w.end('flow'), undefined);
  t.true(w.allEnded);
  w.reset();
  t.is(w.timeUs, -Infinity);
  t.false(w.allEnded);
});

test('ticks from a service that is not an upstream are ignored', (t) => {
  const w = new Watermark(['capture']);
  t.is(w.tick('sender', 9e6), undefined);
  t.is(w.tick('capture', 1e6), 1e6);
});
