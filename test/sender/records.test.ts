// The rows of the output contract are what protobufjs' own toObject (defaults, longs as numbers)
// gives for each record, with response_code moved before response_status and null when absent:
// the fast column loop of records.ts must print the same JSON, byte for byte.
import test from 'ava';
import { flowtap } from '../../lib/proto';
import { documentRow, l4Row, l7Row } from '../../services/sender/records';
import { SinkBatch } from '../../services/sender/sink';
import { corpusRecords, syntheticL7 } from './corpus-records';

const OPTS = { defaults: true, longs: Number, bytes: String };

function referenceL7(log: flowtap.L7FlowLog): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(flowtap.L7FlowLog.toObject(log, OPTS))) {
    if (k === 'response_status') out.response_code = log.response_code ?? null;
    if (k !== 'response_code') out[k] = v;
  }
  return out;
}

function referenceDoc(doc: flowtap.Document): Record<string, unknown> {
  const row: Record<string, unknown> = { table: doc.table, time: Number(doc.time) };
  const edge = doc.table.includes('_map.');
  const app = doc.table.startsWith('application');
  for (const tag of edge ? ['ip_0', 'ip_1', 'server_port', 'protocol', 'vlan'] : ['ip', 'side', 'server_port', 'protocol', 'vlan']) row[tag] = (doc as never)[tag];
  if (app) for (const tag of ['l7_protocol', 'endpoint']) row[tag] = (doc as never)[tag];
  const meter = app
    ? flowtap.AppMeterValues.toObject(flowtap.AppMeterValues.fromObject(doc.app_meter ?? {}), OPTS)
    : flowtap.FlowMeter.toObject(flowtap.FlowMeter.fromObject(doc.flow_meter ?? {}), OPTS);
  return Object.assign(row, meter);
}

test('rows print the same JSON as protobufjs toObject of the schema', (t) => {
  const r = corpusRecords();
  const l4 = SinkBatch.fromRecords('l4', r.l4).records as flowtap.L4FlowLog[];
  // Absent and zero response codes (a DNS rcode 0) must stay apart.
  const noCode = syntheticL7(2, 1).map((l, i) => ({ ...l, response_code: i === 0 ? undefined : 0 }));
  const l7 = SinkBatch.fromRecords('l7', [...r.l7, ...syntheticL7(50, 1), ...noCode]).records as flowtap.L7FlowLog[];
  const docs = SinkBatch.fromRecords('metrics', r.metrics).records as flowtap.Document[];
  t.deepEqual(l7.slice(-2).map((l) => l7Row(l).response_code), [null, 0]);
  t.true(new Set(docs.map((d) => d.table)).size >= 3);
  for (const log of l4) t.is(JSON.stringify(l4Row(log)), JSON.stringify(flowtap.L4FlowLog.toObject(log, OPTS)));
  for (const log of l7) t.is(JSON.stringify(l7Row(log)), JSON.stringify(referenceL7(log)));
  for (const doc of docs) t.is(JSON.stringify(documentRow(doc)), JSON.stringify(referenceDoc(doc)));
});
