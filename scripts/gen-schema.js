#!/usr/bin/env node
// Writes docs/schema.md from proto/flowtap.proto, so the documented output contract cannot drift
// from the schema: `node scripts/gen-schema.js` rewrites it, `--check` fails if it is stale
// (test/lib/schema-doc.test.ts runs the check).
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const protobuf = require('protobufjs');

const root = path.resolve(__dirname, '..');
const doc = path.join(root, 'docs', 'schema.md');

const RECORDS = [
  ['l4_flow_log', 'L4FlowLog', 'One line per flow per minute, and one when the flow closes (`l4_flow_log.jsonl`).'],
  ['l7_flow_log', 'L7FlowLog', 'One line per request with its response (`l7_flow_log.jsonl`).'],
  ['metrics', 'Document', 'One line per metric row (`metrics.jsonl`): the tags below, then the meter fields of the table, flat.'],
  ['flow meter', 'FlowMeter', 'Meter fields of the `network.*` and `network_map.*` tables.'],
  ['app meter', 'AppMeterValues', 'Meter fields of the `application.*` and `application_map.*` tables.'],
  ['profile', 'ProfileStack', 'With `ebpf.profiler` on: one row per folded on-CPU stack per process per interval (`profile.jsonl`, table `profile` in SQLite, ClickHouse and the collector\'s store), with the interval\'s `start_time`, `end_time` (µs) and `sample_hz` beside these fields. The interval\'s `lost_samples` travels to the collector with the interval but is not a column (it belongs to no one stack).'],
];

function render() {
  const pb = new protobuf.Root();
  pb.loadSync(path.join(root, 'proto', 'flowtap.proto'), { keepCase: true, alternateCommentMode: true });
  const ns = pb.lookup('flowtap');
  const out = [
    '# Output schema',
    '',
    'Generated from `proto/flowtap.proto` by `node scripts/gen-schema.js`; edit the proto, not this file.',
    '',
    'Every record is one JSON object per line. Times are microseconds since the epoch unless a field',
    'says otherwise. `_0` is the client side and `_1` the server side; `tx` is client to server, `rx`',
    'server to client. Names follow the DeepFlow agent\'s flow-log tables where one exists.',
    '',
  ];
  for (const [title, type, intro] of RECORDS) {
    const t = ns.lookupType(type);
    out.push(`## ${title}`, '', intro, '', '| field | type | meaning |', '|---|---|---|');
    for (const f of t.fieldsArray.sort((a, b) => a.id - b.id)) {
      if (type === 'Document' && (f.name === 'flow_meter' || f.name === 'app_meter')) continue;
      const kind = f.repeated ? `${f.type}[]` : f.type;
      const shown = kind === 'bytes' ? 'address' : f.options && f.options.proto3_optional ? `${kind} or null` : kind;
      out.push(`| ${f.name} | ${shown} | ${(f.comment || '').replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

const text = render();
if (process.argv.includes('--check')) {
  const current = fs.existsSync(doc) ? fs.readFileSync(doc, 'utf8') : '';
  if (current !== text) {
    process.stderr.write('docs/schema.md is stale: run node scripts/gen-schema.js\n');
    process.exit(1);
  }
} else {
  fs.writeFileSync(doc, text);
}
