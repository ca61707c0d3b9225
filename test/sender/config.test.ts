// The sender: section of the config: defaults, and strict checks that name the key.
import test from 'ava';
import { ConfigError, parseConfig } from '../../lib/config';

test('sender defaults: jsonl and sqlite, a bounded spool, zstd', (t) => {
  const cfg = parseConfig('', 'test').sender;
  t.deepEqual(cfg.sinks, ['jsonl', 'sqlite']);
  t.is(cfg.collector.compression, 'zstd');
  t.true(cfg.collector.spool_max_bytes > 0);
});

test('sender settings are checked strictly', (t) => {
  const bad: Array<[string, RegExp]> = [
    ['sender: { sinks: [kafka] }', /sender\.sinks\[0\]: "kafka" is not one of/],
    ['sender: { sinks: [] }', /sender\.sinks: at least one/],
    ['sender: { sinks: [jsonl, jsonl] }', /listed twice/],
    ['sender: { collector: { address: "nohostport" } }', /sender\.collector\.address/],
    ['sender: { collector: { address: "h:70000" } }', /sender\.collector\.address/],
    ['sender: { collector: { compression: lz5 } }', /sender\.collector\.compression/],
    ['sender: { collector: { spool_max_bytes: 0 } }', /spool_max_bytes/],
    ['sender: { collector: { reconnect_min_ms: 500, reconnect_max_ms: 100 } }', /reconnect_max_ms/],
    ['sender: { clickhouse: { url: "ftp://x" } }', /sender\.clickhouse\.url/],
    ['sender: { clickhouse: { database: "a;drop" } }', /sender\.clickhouse\.database/],
    ['sender: { sqlite: { retention_hours: -1 } }', /retention_hours/],
    ['sender: { sqlite: { vacuum: true } }', /sender\.sqlite\.vacuum: unknown setting/],
  ];
  for (const [yaml, message] of bad) {
    const err = t.throws(() => parseConfig(yaml, 'f.yaml'), { instanceOf: ConfigError }, yaml);
    t.regex(err!.message, message);
  }
  const ok = parseConfig('sender: { sinks: [collector, clickhouse], collector: { address: "collector.example:20033", agent_id: 42 } }', 'ok');
  t.is(ok.sender.collector.agent_id, 42);
});
