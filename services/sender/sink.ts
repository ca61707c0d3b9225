// What every sink takes: one received batch, its encoded body (for sinks that forward protobuf),
// its JSON lines and its rows in the output contract (for sinks that store columns), computed
// when asked. A received batch is decoded once into columns (wire-batch.ts), not into objects.
import { flowtap } from '../../lib/proto';
import type { RecordType } from './columns';
import type { JsonWriter } from './json-writer';
import { documentRow, l4Row, l7Row, profileRows } from './records';
import type { WireTable } from './wire-batch';
import { decodeRecordBatch, numberColumn, rowObjects, writeJsonLines } from './wire-rows';

export type Row = Record<string, unknown>;

type AnyRecord = flowtap.IL4FlowLog | flowtap.IL7FlowLog | flowtap.IDocument;

export class SinkBatch {
  private rowsCache?: Row[];
  private recordsCache?: ReadonlyArray<AnyRecord>;
  /** The body decoded into columns (decode); absent for a batch built from record objects. */
  private readonly wire?: WireTable;
  private readonly wireBody?: Buffer;

  /**
   * A batch from record objects (the collector's frames); `body` may then be empty. Batches
   * received as bytes come from decode(), which reads the records without making objects.
   */
  constructor(
    readonly type: RecordType,
    /** The protobuf batch message (L4LogBatch, L7LogBatch or DocumentBatch) as received. */
    readonly body: Uint8Array,
    records?: ReadonlyArray<AnyRecord>,
    wire?: WireTable,
  ) {
    this.recordsCache = records;
    if (wire) {
      this.wire = wire;
      this.wireBody = asBuffer(body);
    }
  }

  /** The records as protobufjs objects, decoded on first use (the sinks that need them are rare). */
  get records(): ReadonlyArray<AnyRecord> {
    this.recordsCache ??= decodeRecords(this.type, this.body);
    return this.recordsCache;
  }

  get count(): number {
    return this.wire ? this.wire.count : this.records.length;
  }

  /** The rows of docs/schema.md, exactly as the JSON lines print them. */
  rows(): Row[] {
    if (!this.rowsCache) {
      if (this.wire) {
        this.rowsCache = rowObjects(this.type, this.wire, this.wireBody!);
      } else {
        const toRow: (r: never) => Row = this.type === 'l4' ? l4Row : this.type === 'l7' ? l7Row : documentRow;
        this.rowsCache = this.records.map((r) => toRow(r as never));
      }
    }
    return this.rowsCache;
  }

  /** Prints the rows as JSON lines (one per record) into `out`. */
  writeJsonLines(out: JsonWriter): void {
    if (this.wire) {
      writeJsonLines(this.type, this.wire, this.wireBody!, out);
      return;
    }
    for (const row of this.rows()) {
      out.text(JSON.stringify(row));
      out.byte(NEWLINE);
    }
  }

  /** Adds the flow ids of an L4 batch to `ids` (a replay's summary counts flows). */
  addFlowIds(ids: Set<number>): void {
    if (this.type !== 'l4') return;
    if (this.wire) {
      for (const id of numberColumn(this.type, this.wire, 'flow_id')) ids.add(id);
      return;
    }
    for (const log of this.records) ids.add(Number((log as flowtap.IL4FlowLog).flow_id));
  }

  /**
   * Decodes a received batch message of `type`. Throws on a malformed body. With `scratch`,
   * the columns are decoded into the arrays of the previous batch decoded with it, which that
   * batch then no longer has: for a caller that has finished with each batch before the next.
   */
  static decode(type: RecordType, body: Uint8Array, scratch?: DecodeScratch): SinkBatch {
    if (!scratch) return new SinkBatch(type, body, undefined, decodeRecordBatch(type, body));
    const table = decodeRecordBatch(type, body, scratch.tables.get(type));
    scratch.tables.set(type, table);
    return new SinkBatch(type, body, undefined, table);
  }

  /** Builds the batch message from records (tests, benchmarks, the collector). */
  static fromRecords(type: RecordType, records: SinkBatch['records']): SinkBatch {
    const body = type === 'l4'
      ? flowtap.L4LogBatch.encode({ logs: records as flowtap.IL4FlowLog[] }).finish()
      : type === 'l7'
        ? flowtap.L7LogBatch.encode({ logs: records as flowtap.IL7FlowLog[] }).finish()
        : flowtap.DocumentBatch.encode({ documents: records as flowtap.IDocument[] }).finish();
    return SinkBatch.decode(type, body);
  }
}

/**
 * One profile interval as received (a ProfileBatch message): its body for the sink that
 * forwards it (collector), its rows for the stores. Profiles come once per interval per agent,
 * so this decodes into objects.
 */
export class ProfileSinkBatch {
  private rowsCache?: Row[];

  constructor(readonly message: flowtap.IProfileBatch, readonly body: Uint8Array) {}

  /** Throws on a body that is not a ProfileBatch. */
  static decode(body: Uint8Array): ProfileSinkBatch {
    return new ProfileSinkBatch(flowtap.ProfileBatch.decode(asBuffer(body)), body);
  }

  /** Builds the message's body (tests, the collector's decoded frames). */
  static fromMessage(message: flowtap.IProfileBatch): ProfileSinkBatch {
    return new ProfileSinkBatch(message, flowtap.ProfileBatch.encode(message).finish());
  }

  /** Rows: one per stack. */
  get count(): number {
    return this.message.stacks?.length ?? 0;
  }

  /** The rows of docs/schema.md's profile section, as profile.jsonl prints them. */
  rows(): Row[] {
    this.rowsCache ??= profileRows(this.message);
    return this.rowsCache;
  }
}

/** Decoded columns kept from batch to batch (SinkBatch.decode), one table per record type. */
export class DecodeScratch {
  readonly tables = new Map<RecordType, WireTable>();
}

const NEWLINE = 10;

function asBuffer(body: Uint8Array): Buffer {
  return Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}

function decodeRecords(type: RecordType, body: Uint8Array): ReadonlyArray<AnyRecord> {
  // As a Buffer, so protobufjs decodes strings with Node's UTF-8 decoder, as the columns do.
  const buf = asBuffer(body);
  switch (type) {
    case 'l4': return flowtap.L4LogBatch.decode(buf).logs;
    case 'l7': return flowtap.L7LogBatch.decode(buf).logs;
    case 'metrics': return flowtap.DocumentBatch.decode(buf).documents;
  }
}

/** A destination for records. Drops are counted by reason in `drops` (records, not batches). */
export interface Sink {
  readonly name: string;
  readonly drops: Map<string, number>;
  /** Rows accepted per record type (written, queued for a remote, or spooled). */
  readonly written: Record<RecordType, number>;
  /** Takes what it needs from the batch before resolving: the sender reuses its columns for the next one. */
  write(batch: SinkBatch): Promise<void>;
  /** One profile interval; sinks without a profile store leave this out. */
  writeProfile?(batch: ProfileSinkBatch): Promise<void>;
  /** Profile rows (stacks) accepted: written, queued for a remote, or spooled. */
  readonly profileRows?: number;
  /** Rows accepted but not yet stored (a remote that is down). */
  pendingRows?(): number;
  /** Writes out what is buffered (a replay's end of stream). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export function countDrop(drops: Map<string, number>, reason: string, n = 1): void {
  drops.set(reason, (drops.get(reason) ?? 0) + n);
}
