// Turns decoded records into the flat objects of the output contract (docs/schema.md): the
// JSON lines now, and the SQL rows of later sinks. Field names are the schema's, unchanged.
import { flowtap } from '../../lib/proto';

const TO_OBJECT: Parameters<typeof flowtap.L4FlowLog.toObject>[1] = { defaults: true, longs: Number, bytes: String };

export function l4Row(log: flowtap.L4FlowLog): Record<string, unknown> {
  return flowtap.L4FlowLog.toObject(log, TO_OBJECT);
}

export function l7Row(log: flowtap.L7FlowLog): Record<string, unknown> {
  const row = flowtap.L7FlowLog.toObject(log, TO_OBJECT);
  // response_code is optional: DNS rcode 0 is a real code, so absence must stay visible.
  const withCode: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    if (k === 'response_status') withCode.response_code = log.response_code ?? null;
    if (k !== 'response_code') withCode[k] = v;
  }
  return withCode;
}

const SINGLE_SIDE_TAGS = ['ip', 'side', 'server_port', 'protocol', 'vlan'] as const;
const EDGE_TAGS = ['ip_0', 'ip_1', 'server_port', 'protocol', 'vlan'] as const;
const APP_TAGS = ['l7_protocol', 'endpoint'] as const;

/** A metric row: table, time, the table's tags, then its meter fields, flat. */
export function documentRow(doc: flowtap.Document): Record<string, unknown> {
  const row: Record<string, unknown> = { table: doc.table, time: Number(doc.time) };
  const edge = doc.table.includes('_map.');
  const app = doc.table.startsWith('application');
  for (const tag of edge ? EDGE_TAGS : SINGLE_SIDE_TAGS) row[tag] = doc[tag];
  if (app) for (const tag of APP_TAGS) row[tag] = doc[tag];
  const meter = app
    ? flowtap.AppMeterValues.toObject(flowtap.AppMeterValues.fromObject(doc.app_meter ?? {}), TO_OBJECT)
    : flowtap.FlowMeter.toObject(flowtap.FlowMeter.fromObject(doc.flow_meter ?? {}), TO_OBJECT);
  return Object.assign(row, meter);
}
