// The SQL columns of each record type, derived from proto/flowtap.proto at run time (protobufjs
// reflection), so the tables follow the schema as the JSON lines do: same names, same order.
import fs from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';

export type RecordType = 'l4' | 'l7' | 'metrics';
export const RECORD_TYPES: readonly RecordType[] = ['l4', 'l7', 'metrics'];
export const TABLE_NAMES: Record<RecordType, string> = { l4: 'l4_flow_log', l7: 'l7_flow_log', metrics: 'metrics' };
/** The column each table is indexed, ordered and aged out by (µs for logs, seconds for metrics). */
export const TIME_COLUMNS: Record<RecordType, string> = { l4: 'end_time', l7: 'start_time', metrics: 'time' };
/** Seconds per unit of the time column. */
export const TIME_UNIT_SECONDS: Record<RecordType, number> = { l4: 1e-6, l7: 1e-6, metrics: 1 };

/** int: integers of `bits` (signed or not); text; bool (stored as 0/1). */
export interface Column {
  name: string;
  kind: 'int' | 'text' | 'bool';
  bits: 32 | 64;
  signed: boolean;
  /** May be null: optional fields, and metric columns a row's table does not have. */
  nullable: boolean;
}

function findProto(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'proto', 'flowtap.proto');
    if (fs.existsSync(file)) return file;
    if (path.dirname(dir) === dir) throw new Error('proto/flowtap.proto not found above ' + __dirname);
  }
}

let root: protobuf.Root | undefined;
function schema(): protobuf.Root {
  // keepCase: columns are the schema's snake_case names, as in the JSON lines.
  root ??= new protobuf.Root().loadSync(findProto(), { keepCase: true });
  return root;
}

/** A message type of the schema, for code that walks the wire format by field number. */
export function messageType(name: string): protobuf.Type {
  return schema().lookupType(`flowtap.${name}`);
}

function columnOf(field: protobuf.Field, nullable: boolean): Column {
  const t = field.type;
  if (t === 'string') return { name: field.name, kind: 'text', bits: 32, signed: false, nullable };
  if (t === 'bool') return { name: field.name, kind: 'bool', bits: 32, signed: false, nullable };
  const ints: Record<string, [32 | 64, boolean]> = {
    uint32: [32, false], fixed32: [32, false], int32: [32, true], sint32: [32, true], sfixed32: [32, true],
    uint64: [64, false], fixed64: [64, false], int64: [64, true], sint64: [64, true], sfixed64: [64, true],
  };
  const int = ints[t];
  if (!int) throw new Error(`no SQL column for ${field.name}: ${t}`);
  return { name: field.name, kind: 'int', bits: int[0], signed: int[1], nullable };
}

function messageColumns(name: string, nullable: boolean): Column[] {
  const type = schema().lookupType(`flowtap.${name}`);
  return type.fieldsArray
    .filter((f) => !(f.resolve().resolvedType instanceof protobuf.Type)) // nested messages are flattened by the caller
    .map((f) => columnOf(f, nullable || f.options?.proto3_optional === true));
}

let cached: Record<RecordType, Column[]> | undefined;

/** Columns per record type, in the order of the JSON lines. */
export function tableColumns(): Record<RecordType, Column[]> {
  if (cached) return cached;
  const l4 = messageColumns('L4FlowLog', false);
  // l7Row moves response_code next to response_status and keeps it even when absent (null).
  const l7raw = messageColumns('L7FlowLog', false);
  const code = l7raw.find((c) => c.name === 'response_code')!;
  const l7 = l7raw.filter((c) => c !== code);
  l7.splice(l7.findIndex((c) => c.name === 'response_status'), 0, { ...code, nullable: true });
  // A metric row: table and time always; tags and meters by table kind, so null where absent.
  const doc = messageColumns('Document', false);
  const metrics: Column[] = doc.map((c) => ({ ...c, nullable: c.name !== 'table' && c.name !== 'time' }));
  for (const c of [...messageColumns('FlowMeter', true), ...messageColumns('AppMeterValues', true)]) {
    if (!metrics.some((m) => m.name === c.name)) metrics.push(c);
  }
  cached = { l4, l7, metrics };
  return cached;
}

/** Field names of a nested meter message, in schema order (the flat tail of a metric row). */
export function meterFields(name: 'FlowMeter' | 'AppMeterValues'): string[] {
  return messageColumns(name, true).map((c) => c.name);
}

/**
 * Profiles are a table beside the three record types: one row per folded stack per process per
 * interval. They travel as whole ProfileBatch messages (the collector protocol's kind 9), not as
 * a fourth RecordType, since a batch's interval fields belong to all its rows.
 */
export const PROFILE_TABLE = 'profile';
export const PROFILE_TIME_COLUMN = 'end_time';
let profileCached: Column[] | undefined;

/** The interval's times and rate (ProfileBatch), then the stack's fields (ProfileStack). */
export function profileColumns(): Column[] {
  // lost_samples belongs to the interval, not to a stack: summing it over rows would overcount.
  profileCached ??= [
    ...messageColumns('ProfileBatch', false).filter((c) => c.name !== 'lost_samples'),
    ...messageColumns('ProfileStack', false),
  ];
  return profileCached;
}

/** A table of a store (SQLite, ClickHouse): the record types', then the profile table. */
export type TableKey = RecordType | 'profile';
export interface StoreTable {
  key: TableKey;
  table: string;
  columns: Column[];
  /** The column the table is indexed, ordered and aged out by, and its unit in seconds. */
  time: string;
  unitSeconds: number;
}

let storeCached: StoreTable[] | undefined;

/** Every table of a store, the three record types first. Profile times are µs like the logs'. */
export function storeTables(): readonly StoreTable[] {
  if (storeCached) return storeCached;
  const columns = tableColumns();
  storeCached = [
    ...RECORD_TYPES.map((type) => ({ key: type, table: TABLE_NAMES[type], columns: columns[type], time: TIME_COLUMNS[type], unitSeconds: TIME_UNIT_SECONDS[type] })),
    { key: 'profile', table: PROFILE_TABLE, columns: profileColumns(), time: PROFILE_TIME_COLUMN, unitSeconds: 1e-6 },
  ];
  return storeCached;
}
