// Turns decoded records into the flat objects of the output contract (docs/schema.md): the
// JSON lines and the SQL rows. Field names and order are the schema's (as protobufjs toObject
// with defaults gives them), built by a loop over the columns: no intermediate objects, as the
// sender does this for every record.
import { flowtap } from '../../lib/proto';
import { meterFields, profileColumns, tableColumns, type Column } from './columns';

type Loose = Record<string, unknown>;

function defaultOf(c: Column): unknown {
  return c.kind === 'text' ? '' : c.kind === 'bool' ? false : 0;
}

function flat(record: Loose, columns: readonly Column[]): Loose {
  const row: Loose = {};
  for (const c of columns) {
    const v = record[c.name];
    // response_code is optional: DNS rcode 0 is a real code, so absence stays visible as null.
    row[c.name] = v === undefined || v === null ? (c.nullable ? null : defaultOf(c)) : c.kind === 'int' ? Number(v) : v;
  }
  return row;
}

export function l4Row(log: flowtap.IL4FlowLog): Loose {
  return flat(log as Loose, tableColumns().l4);
}

export function l7Row(log: flowtap.IL7FlowLog): Loose {
  return flat(log as Loose, tableColumns().l7);
}

/** The tags of a metric row, by table kind: single-side, edge (`_map.`), and application's extra. */
export const SINGLE_SIDE_TAGS = ['ip', 'side', 'server_port', 'protocol', 'vlan'] as const;
export const EDGE_TAGS = ['ip_0', 'ip_1', 'server_port', 'protocol', 'vlan'] as const;
export const APP_TAGS = ['l7_protocol', 'endpoint'] as const;
let flowMeterFields: string[] | undefined;
let appMeterFields: string[] | undefined;

/** A metric row: table, time, the table's tags, then its meter fields, flat. */
export function documentRow(doc: flowtap.IDocument): Loose {
  const d = doc as Loose;
  const row: Loose = { table: doc.table ?? '', time: Number(doc.time ?? 0) };
  const table = String(row.table);
  const edge = table.includes('_map.');
  const app = table.startsWith('application');
  for (const tag of edge ? EDGE_TAGS : SINGLE_SIDE_TAGS) row[tag] = d[tag] ?? (tag === 'server_port' || tag === 'protocol' || tag === 'vlan' ? 0 : '');
  if (app) for (const tag of APP_TAGS) row[tag] = d[tag] ?? '';
  const meter = (app ? doc.app_meter : doc.flow_meter) as Loose | null | undefined;
  const fields = app ? (appMeterFields ??= meterFields('AppMeterValues')) : (flowMeterFields ??= meterFields('FlowMeter'));
  for (const f of fields) {
    const v = meter?.[f];
    row[f] = v === undefined || v === null ? 0 : Number(v);
  }
  return row;
}

/** The rows of one profile interval: each stack with the interval's start, end and sample rate. */
export function profileRows(batch: flowtap.IProfileBatch): Loose[] {
  const stacks = batch.stacks ?? [];
  const columns = profileColumns();
  const rows: Loose[] = new Array(stacks.length);
  for (let i = 0; i < stacks.length; i++) {
    const s = stacks[i];
    rows[i] = flat({ start_time: batch.start_time, end_time: batch.end_time, sample_hz: batch.sample_hz,
      pid: s.pid, process_kname: s.process_kname, stack: s.stack, count: s.count }, columns);
  }
  return rows;
}
