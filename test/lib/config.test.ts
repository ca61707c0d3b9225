import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { ConfigError, defaultConfig, loadConfig, parseConfig } from '../../lib/config';

const ROOT = path.resolve(__dirname, '..', '..', '..');

test('the shipped flowtap.yaml is valid and keeps the documented defaults', (t) => {
  const cfg = parseConfig(fs.readFileSync(path.join(ROOT, 'flowtap.yaml'), 'utf8'), 'flowtap.yaml');
  t.deepEqual(cfg.metrics.ports, { capture: 9101, flow: 9102, quadruple: 9103, l7: 9104, sender: 9105 });
  t.is(cfg.metrics.listen_address, '127.0.0.1');
  t.is(cfg.capture.payload_cut, 1024);
  t.deepEqual(cfg.flow.timeouts, defaultConfig().flow.timeouts);
});

test('an empty file gives the defaults', (t) => {
  t.deepEqual(parseConfig('', 'x.yaml'), defaultConfig());
});

test('unknown keys, wrong types and bad values are errors that name the key', (t) => {
  const bad: Array<[string, RegExp]> = [
    ['captur: {}', /x\.yaml: captur: unknown setting/],
    ['capture: { payload_cut: "big" }', /capture\.payload_cut: expected number, got string/],
    ['capture: { source: tape }', /capture\.source: "tape" is not one of live, file/],
    ['capture: { source: file }', /capture\.file: required/],
    ['metrics: { ports: { flow: 70000 } }', /metrics\.ports\.flow: must be a port number/],
    ['flow: { timeouts: { udp: -1 } }', /flow\.timeouts\.udp: must be a positive number/],
    ['sender: { sinks: [tape] }', /sender\.sinks\[0\]: "tape" is not one of/],
    ['ebpf: { syscall_hook: kprobes }', /ebpf\.syscall_hook: "kprobes" is not one of tracepoints, raw/],
    ['capture: [1, 2', /not valid YAML/],
  ];
  for (const [text, message] of bad) {
    const err = t.throws(() => parseConfig(text, 'x.yaml'), { instanceOf: ConfigError });
    t.regex(err!.message, message, text);
  }
});

test('a missing config file is a clear error', (t) => {
  const err = t.throws(() => loadConfig('/nonexistent/flowtap.yaml'), { instanceOf: ConfigError });
  t.regex(err!.message, /cannot read config file \/nonexistent\/flowtap\.yaml: ENOENT/);
});
