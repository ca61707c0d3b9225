// The rows of the output contract (docs/schema.md) printed from a batch decoded by wire-batch.ts:
// as JSON lines straight into a JsonWriter, or as row objects for the sinks that store columns.
// Keys, their order and their values are those of records.ts (l4Row, l7Row, documentRow), which
// stay the reference for records that arrive as objects (the collector); test/sender checks
// both print the same bytes.
import { tableColumns, type RecordType } from './columns';
import { MAX_NUMBER_BYTES, printNumber, type JsonWriter } from './json-writer';
import { APP_TAGS, EDGE_TAGS, SINGLE_SIDE_TAGS } from './records';
import { decodeWireBatch, FieldKind, WireLayout, type WireTable } from './wire-batch';

const enum Format { NUMBER, BOOLEAN, STRING }

/** One key of a row: which table (0: the record, 1 + i: its child message i), column and format. */
interface Key {
  name: string;
  source: number;
  column: number;
  format: Format;
}

/**
 * The keys of one row shape, and the line it prints when every value is at its default (0,
 * false, ""): a line is copied from that template in runs, with only the values that differ
 * printed in between. Metric rows are mostly zero counters, so most of a line is one copy.
 */
class RowPlan {
  readonly names: string[];
  readonly sources: Int8Array;
  readonly columns: Int16Array;
  readonly formats: Int8Array;
  /** `{"k0":0,"k1":"",...}\n`, followed by 4 zero bytes (copies move 4 bytes at a time). */
  readonly template: Buffer;
  readonly templateView: DataView;
  readonly templateLength: number;
  /** Where key k's `,"name":` starts in the template, and where its value starts. */
  readonly keyAt: Int32Array;
  readonly valueAt: Int32Array;
  /** The most bytes a line takes besides its strings' own bytes. */
  readonly fixedBytes: number;
  readonly stringKeys: Int16Array;

  constructor(keys: Key[]) {
    this.names = keys.map((k) => k.name);
    this.sources = Int8Array.from(keys.map((k) => k.source));
    this.columns = Int16Array.from(keys.map((k) => k.column));
    this.formats = Int8Array.from(keys.map((k) => k.format));
    const defaultText = { [Format.NUMBER]: '0', [Format.BOOLEAN]: 'false', [Format.STRING]: '""' };
    let text = '';
    this.keyAt = new Int32Array(keys.length + 1);
    this.valueAt = new Int32Array(keys.length);
    keys.forEach((k, i) => {
      this.keyAt[i] = text.length;
      text += `${i === 0 ? '{' : ','}${JSON.stringify(k.name)}:`;
      this.valueAt[i] = text.length;
      text += defaultText[k.format];
    });
    this.keyAt[keys.length] = text.length;
    text += '}\n';
    this.templateLength = Buffer.byteLength(text);
    if (this.templateLength !== text.length) throw new Error('row keys must be ASCII');
    this.template = Buffer.alloc(this.templateLength + 4);
    this.template.write(text, 'latin1');
    this.templateView = new DataView(this.template.buffer, this.template.byteOffset, this.template.length);
    const valueBytes = (k: Key) => (k.format === Format.NUMBER ? MAX_NUMBER_BYTES : k.format === Format.BOOLEAN ? 5 : 2);
    this.fixedBytes = keys.reduce((n, k) => n + valueBytes(k), this.templateLength + 4);
    this.stringKeys = Int16Array.from(keys.flatMap((k, i) => (k.format === Format.STRING ? [i] : [])));
  }
}

/** The key of field `name` of `layout` (or of its child message `child`). */
function keyOf(layout: WireLayout, name: string, child?: string): Key {
  const source = child === undefined ? 0 : 1 + layout.childColumn(child);
  const of = child === undefined ? layout : layout.children[source - 1];
  if (of.strNames.includes(name)) return { name, source, column: of.strColumn(name), format: Format.STRING };
  const format = of.kindOf[of.nameOf.indexOf(name)] === FieldKind.BOOL ? Format.BOOLEAN : Format.NUMBER;
  return { name, source, column: of.numColumn(name), format };
}

/** A record type's layout and row shapes; metric rows have four (edge or not, application or not). */
interface TypePlan {
  layout: WireLayout;
  /** Index into plans for row r of a batch. */
  shapeOf(table: WireTable, body: Buffer, r: number): number;
  plans: RowPlan[];
}

const plans = new Map<RecordType, TypePlan>();

function logPlan(type: 'l4' | 'l7'): TypePlan {
  const layout = new WireLayout(type === 'l4' ? 'L4FlowLog' : 'L7FlowLog');
  const keys = tableColumns()[type].map((c) => keyOf(layout, c.name));
  return { layout, shapeOf: () => 0, plans: [new RowPlan(keys)] };
}

const MAP_DOT = Buffer.from('_map.');
const APPLICATION = Buffer.from('application');

function indexOfBytes(src: Buffer, start: number, end: number, pattern: Buffer): number {
  const last = end - pattern.length;
  outer: for (let i = start; i <= last; i++) {
    for (let j = 0; j < pattern.length; j++) if (src[i + j] !== pattern[j]) continue outer;
    return i;
  }
  return -1;
}

function metricPlan(): TypePlan {
  const layout = new WireLayout('Document');
  const tableCol = layout.strColumn('table');
  const shapes: RowPlan[] = [];
  // Shape index: edge (table has `_map.`) * 2 + application (table starts with `application`).
  for (const edge of [false, true]) {
    for (const app of [false, true]) {
      const child = app ? 'app_meter' : 'flow_meter';
      const meter = layout.children[layout.childColumn(child)];
      shapes.push(new RowPlan([
        keyOf(layout, 'table'), keyOf(layout, 'time'),
        ...(edge ? EDGE_TAGS : SINGLE_SIDE_TAGS).map((tag) => keyOf(layout, tag)),
        ...(app ? APP_TAGS.map((tag) => keyOf(layout, tag)) : []),
        ...meter.numNames.map((f) => keyOf(layout, f, child)),
      ]));
    }
  }
  const shapeOf = (table: WireTable, body: Buffer, r: number): number => {
    const at = 2 * (r * table.strWidth + tableCol);
    const start = table.str[at];
    const end = table.str[at + 1];
    const edge = indexOfBytes(body, start, end, MAP_DOT) >= 0;
    const app = indexOfBytes(body, start, Math.min(end, start + APPLICATION.length), APPLICATION) === start;
    return (edge ? 2 : 0) + (app ? 1 : 0);
  };
  return { layout, shapeOf, plans: shapes };
}

function planOf(type: RecordType): TypePlan {
  let plan = plans.get(type);
  if (!plan) {
    plan = type === 'metrics' ? metricPlan() : logPlan(type);
    plans.set(type, plan);
  }
  return plan;
}

/**
 * Decodes a batch message of `type` (L4LogBatch, L7LogBatch, DocumentBatch). Throws on a
 * malformed body. Given `reuse` (a table this returned before, done with), decodes into it.
 */
export function decodeRecordBatch(type: RecordType, body: Uint8Array, reuse?: WireTable): WireTable {
  return decodeWireBatch(planOf(type).layout, body, reuse);
}

/** The table a key reads from: the record's or one of its child messages'. */
function sourceTables(table: WireTable, plan: RowPlan): WireTable[] {
  return Array.from(plan.sources, (s) => (s === 0 ? table : table.children[s - 1]));
}

/** The bytes of row r's strings as they are on the wire (escaping aside). */
function stringBytes(plan: RowPlan, tables: WireTable[], r: number): number {
  let n = 0;
  const { stringKeys, columns } = plan;
  for (let i = 0; i < stringKeys.length; i++) {
    const k = stringKeys[i];
    const t = tables[k];
    const at = 2 * (r * t.strWidth + columns[k]);
    n += t.str[at + 1] - t.str[at];
  }
  return n;
}

/** Copies template[from, to) to buf[p]; may write 3 bytes past the end (room is reserved). */
function copyRun(plan: RowPlan, from: number, to: number, buf: Buffer, view: DataView, p: number): number {
  const n = to - from;
  if (n > 160) { // a native copy costs ~100 ns, as much as 160 bytes in words
    plan.template.copy(buf, p, from, to);
  } else {
    const src = plan.templateView;
    for (let i = 0; i < n; i += 4) view.setInt32(p + i, src.getInt32(from + i, true), true);
  }
  return p + n;
}

/**
 * Prints every row of a decoded batch as one JSON line each. Room for a whole line is reserved
 * up front, so the loop writes without checks; a string that needs escaping goes through
 * JsonWriter (JSON.stringify) and the rest of the line reserves again.
 */
export function writeJsonLines(type: RecordType, table: WireTable, body: Buffer, out: JsonWriter): void {
  const typePlan = planOf(type);
  const tablesByShape = typePlan.plans.map((p) => sourceTables(table, p));
  for (let r = 0; r < table.count; r++) {
    const shape = typePlan.shapeOf(table, body, r);
    const plan = typePlan.plans[shape];
    const tables = tablesByShape[shape];
    const { columns, formats, keyAt, valueAt } = plan;
    const lineBytes = plan.fixedBytes + stringBytes(plan, tables, r);
    let buf = out.reserve(lineBytes);
    let view = out.view;
    let p = out.pos;
    // The template from here on is still to be copied (up to the next value that is not a default).
    let from = 0;
    for (let k = 0; k < formats.length; k++) {
      const t = tables[k];
      const format = formats[k];
      if (format === Format.STRING) {
        const at = 2 * (r * t.strWidth + columns[k]);
        const start = t.str[at];
        const end = t.str[at + 1];
        if (start === end) continue;
        p = copyRun(plan, from, valueAt[k], buf, view, p);
        from = keyAt[k + 1];
        const open = p;
        buf[p++] = 34;
        let i = start;
        for (; i < end; i++) {
          const c = body[i];
          if (c < 0x20 || c === 0x22 || c === 0x5c || c >= 0x80) break;
          buf[p++] = c;
        }
        if (i === end) {
          buf[p++] = 34;
        } else {
          out.pos = open;
          out.utf8String(body, start, end);
          buf = out.reserve(lineBytes);
          view = out.view;
          p = out.pos;
        }
        continue;
      }
      const v = t.num[r * t.numWidth + columns[k]];
      if (v === 0) continue;
      p = copyRun(plan, from, valueAt[k], buf, view, p);
      from = keyAt[k + 1];
      if (format === Format.NUMBER) {
        p = printNumber(buf, p, v);
      } else {
        for (let i = 0; i < TRUE.length; i++) buf[p++] = TRUE[i];
      }
    }
    p = copyRun(plan, from, plan.templateLength, buf, view, p);
    out.pos = p;
  }
}

const TRUE = Buffer.from('true');

/** The rows of a decoded batch as objects (what records.ts gives for the same records). */
export function rowObjects(type: RecordType, table: WireTable, body: Buffer): Record<string, unknown>[] {
  const typePlan = planOf(type);
  const tablesByShape = typePlan.plans.map((p) => sourceTables(table, p));
  const rows: Record<string, unknown>[] = new Array(table.count);
  for (let r = 0; r < table.count; r++) {
    const shape = typePlan.shapeOf(table, body, r);
    const { names, columns, formats } = typePlan.plans[shape];
    const tables = tablesByShape[shape];
    const row: Record<string, unknown> = {};
    for (let k = 0; k < formats.length; k++) {
      const t = tables[k];
      if (formats[k] === Format.STRING) {
        const at = 2 * (r * t.strWidth + columns[k]);
        row[names[k]] = body.toString('utf8', t.str[at], t.str[at + 1]);
      } else {
        const v = t.num[r * t.numWidth + columns[k]];
        row[names[k]] = formats[k] === Format.BOOLEAN ? v !== 0 : v !== v ? null : v;
      }
    }
    rows[r] = row;
  }
  return rows;
}

/** One number column of every row (e.g. the flow ids of an L4 batch). */
export function numberColumn(type: RecordType, table: WireTable, name: string): Float64Array {
  const col = planOf(type).layout.numColumn(name);
  const out = new Float64Array(table.count);
  for (let r = 0; r < table.count; r++) out[r] = table.num[r * table.numWidth + col];
  return out;
}
