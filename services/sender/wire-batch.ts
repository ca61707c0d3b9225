// Decodes a record batch (L4LogBatch, L7LogBatch, DocumentBatch) straight from its protobuf wire
// bytes into columns: per message type one Float64Array of numbers and one Int32Array of string
// byte ranges into the body, so a batch of 1024 records costs a few typed arrays instead of 1024
// objects. The JSON lines are printed from these columns and strings are only materialised for
// the sinks that ask for row objects. Values are those protobufjs decodes: 64-bit integers as
// plain numbers, strings as Node decodes the UTF-8, absent fields at their proto3 default, an
// absent `optional` field as NaN (null in a row), the last occurrence of a repeated field winning.
import type protobuf from 'protobufjs';
import { ProtoReader, ProtoWireError } from '../../lib/proto-wire';
import { messageType } from './columns';

export const enum FieldKind { UINT32, INT32, UINT64, INT64, BOOL, STRING, MESSAGE }

const KIND_OF_TYPE: Record<string, FieldKind> = {
  uint32: FieldKind.UINT32, int32: FieldKind.INT32, uint64: FieldKind.UINT64, int64: FieldKind.INT64,
  bool: FieldKind.BOOL, string: FieldKind.STRING,
};

/** Where each field of one message type goes: a number column, a string column or a child message. */
export class WireLayout {
  /** By field number: the field's kind, or -1 for a field this layout skips. */
  readonly kindOf: Int8Array;
  /** By field number: its column among the numbers, the strings or the children (by kind). */
  readonly columnOf: Int16Array;
  readonly nameOf: string[] = [];
  readonly numNames: string[] = [];
  readonly strNames: string[] = [];
  readonly children: WireLayout[] = [];
  readonly childNames: string[] = [];
  /** Per number column: 0, or NaN for an `optional` field (absent stays visible). */
  readonly numDefaults: number[] = [];

  constructor(readonly messageName: string) {
    const type: protobuf.Type = messageType(messageName);
    const maxId = Math.max(...type.fieldsArray.map((f) => f.id));
    this.kindOf = new Int8Array(maxId + 1).fill(-1);
    this.columnOf = new Int16Array(maxId + 1);
    for (const field of type.fieldsArray) {
      if (field.repeated || field.map) throw new Error(`${messageName}.${field.name}: repeated fields have no column`);
      this.nameOf[field.id] = field.name;
      const nested = field.resolve().resolvedType;
      if (nested && 'fieldsArray' in nested) {
        this.kindOf[field.id] = FieldKind.MESSAGE;
        this.columnOf[field.id] = this.children.length;
        this.children.push(new WireLayout(nested.name));
        this.childNames.push(field.name);
        continue;
      }
      const kind = KIND_OF_TYPE[field.type];
      if (kind === undefined) throw new Error(`${messageName}.${field.name}: no wire decoder for ${field.type}`);
      this.kindOf[field.id] = kind;
      if (kind === FieldKind.STRING) {
        this.columnOf[field.id] = this.strNames.length;
        this.strNames.push(field.name);
      } else {
        this.columnOf[field.id] = this.numNames.length;
        this.numNames.push(field.name);
        this.numDefaults.push(field.options?.proto3_optional === true ? NaN : 0);
      }
    }
  }

  numColumn(name: string): number {
    const i = this.numNames.indexOf(name);
    if (i < 0) throw new Error(`${this.messageName} has no number field ${name}`);
    return i;
  }

  strColumn(name: string): number {
    const i = this.strNames.indexOf(name);
    if (i < 0) throw new Error(`${this.messageName} has no string field ${name}`);
    return i;
  }

  childColumn(name: string): number {
    const i = this.childNames.indexOf(name);
    if (i < 0) throw new Error(`${this.messageName} has no message field ${name}`);
    return i;
  }
}

/** `count` decoded records of one message type, by column. */
export class WireTable {
  readonly numWidth: number;
  readonly strWidth: number;
  /** Row r, number column c: num[r * numWidth + c] (the array may be longer than count rows). */
  num: Float64Array;
  /** Row r, string column c: bytes [str[2 * (r * strWidth + c)], str[... + 1]) of the body. */
  str: Int32Array;
  readonly children: WireTable[];
  private readonly hasNaNDefaults: boolean;

  constructor(readonly layout: WireLayout, public count: number) {
    this.numWidth = layout.numNames.length;
    this.strWidth = layout.strNames.length;
    this.num = new Float64Array(count * this.numWidth);
    this.str = new Int32Array(count * this.strWidth * 2);
    this.children = layout.children.map((child) => new WireTable(child, count));
    this.hasNaNDefaults = layout.numDefaults.some((d) => d !== 0);
    if (this.hasNaNDefaults) this.fillDefaults();
  }

  /**
   * Empties the table for `count` new rows at their defaults, keeping its arrays when they are
   * big enough: a stream of batches then allocates no columns after the first few.
   */
  refill(count: number): void {
    this.count = count;
    const numLength = count * this.numWidth;
    const strLength = 2 * count * this.strWidth;
    if (this.num.length < numLength) this.num = new Float64Array(numLength);
    else this.num.fill(0, 0, numLength);
    if (this.str.length < strLength) this.str = new Int32Array(strLength);
    else this.str.fill(0, 0, strLength);
    for (const child of this.children) child.refill(count);
    if (this.hasNaNDefaults) this.fillDefaults();
  }

  private fillDefaults(): void {
    const defaults = this.layout.numDefaults;
    const num = this.num;
    for (let r = 0; r < this.count; r++) {
      const base = r * this.numWidth;
      for (let c = 0; c < this.numWidth; c++) num[base + c] = defaults[c];
    }
  }

  /** Puts row r back to the defaults (a message field seen twice: the last one replaces the first). */
  resetRow(r: number): void {
    const base = r * this.numWidth;
    const defaults = this.layout.numDefaults;
    for (let c = 0; c < this.numWidth; c++) this.num[base + c] = defaults[c];
    if (this.strWidth > 0) this.str.fill(0, 2 * r * this.strWidth, 2 * (r + 1) * this.strWidth);
    for (const child of this.children) child.resetRow(r);
  }
}

/** The reader of every batch (decoding is synchronous: one at a time). */
const reader = new ProtoReader();

/** Decodes the record at the reader (up to its `end`) into row `row` of `table`. */
function decodeMessage(table: WireTable, row: number, rd: ProtoReader): void {
  const layout = table.layout;
  const { kindOf, columnOf } = layout;
  const num = table.num;
  const str = table.str;
  const numBase = row * table.numWidth;
  const strBase = row * table.strWidth;
  const end = rd.end;
  while (rd.pos < end) {
    const tag = rd.uint32();
    const fieldNo = tag >>> 3;
    const wireType = tag & 7;
    const kind = fieldNo < kindOf.length ? kindOf[fieldNo] : -1;
    if (kind < 0) {
      rd.skip(wireType);
      continue;
    }
    const col = columnOf[fieldNo];
    if (kind === FieldKind.STRING || kind === FieldKind.MESSAGE) {
      if (wireType !== 2) throw new ProtoWireError(`${layout.messageName}.${layout.nameOf[fieldNo]}: wire type ${wireType}, expected 2`);
      const len = rd.length();
      const start = rd.pos;
      const stop = start + len;
      if (kind === FieldKind.STRING) {
        str[2 * (strBase + col)] = start;
        str[2 * (strBase + col) + 1] = stop;
      } else {
        const child = table.children[col];
        child.resetRow(row);
        const outerEnd = rd.end;
        rd.end = stop;
        decodeMessage(child, row, rd);
        rd.end = outerEnd;
      }
      rd.pos = stop;
      continue;
    }
    if (wireType !== 0) throw new ProtoWireError(`${layout.messageName}.${layout.nameOf[fieldNo]}: wire type ${wireType}, expected 0`);
    switch (kind) {
      case FieldKind.UINT64: num[numBase + col] = rd.uint64(); break;
      case FieldKind.UINT32: num[numBase + col] = rd.uint32(); break;
      case FieldKind.INT32: num[numBase + col] = rd.int32(); break;
      case FieldKind.BOOL: num[numBase + col] = rd.bool() ? 1 : 0; break;
      default: num[numBase + col] = rd.int64();
    }
  }
}

/**
 * Decodes a batch message whose field 1 is the repeated record (`logs`, `documents`); other
 * fields are skipped. Throws ProtoWireError on bytes that are not such a message.
 */
export function decodeWireBatch(layout: WireLayout, body: Uint8Array, reuse?: WireTable): WireTable {
  const rd = reader.reset(body);
  const end = body.length;
  let count = 0;
  while (rd.pos < end) {
    const tag = rd.uint32();
    const fieldNo = tag >>> 3;
    const wireType = tag & 7;
    if (fieldNo === 1 && wireType !== 2) throw new ProtoWireError(`batch field 1: wire type ${wireType}, expected 2`);
    if (fieldNo === 1) count++;
    rd.skip(wireType);
  }
  let table: WireTable;
  if (reuse && reuse.layout === layout) {
    table = reuse;
    table.refill(count);
  } else {
    table = new WireTable(layout, count);
  }
  let row = 0;
  rd.reset(body);
  while (rd.pos < end) {
    const tag = rd.uint32();
    if (tag >>> 3 !== 1) {
      rd.skip(tag & 7);
      continue;
    }
    const len = rd.length();
    rd.end = rd.pos + len;
    decodeMessage(table, row++, rd);
    rd.end = end;
  }
  return table;
}
