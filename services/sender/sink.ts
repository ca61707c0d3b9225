// What every sink takes: one received batch, its encoded body (for sinks that forward protobuf)
// and its rows in the output contract (for sinks that store columns), computed once when asked.
import { flowtap } from '../../lib/proto';
import type { RecordType } from './columns';
import { documentRow, l4Row, l7Row } from './records';

export type Row = Record<string, unknown>;

export class SinkBatch {
  private rowsCache?: Row[];

  constructor(
    readonly type: RecordType,
    /** The protobuf batch message (L4LogBatch, L7LogBatch or DocumentBatch) as received. */
    readonly body: Uint8Array,
    readonly records: ReadonlyArray<flowtap.IL4FlowLog | flowtap.IL7FlowLog | flowtap.IDocument>,
  ) {}

  get count(): number {
    return this.records.length;
  }

  /** The rows of docs/schema.md, exactly as the JSON lines print them. */
  rows(): Row[] {
    if (!this.rowsCache) {
      const toRow: (r: never) => Row = this.type === 'l4' ? l4Row : this.type === 'l7' ? l7Row : documentRow;
      this.rowsCache = this.records.map((r) => toRow(r as never));
    }
    return this.rowsCache;
  }

  /** Decodes a received batch message of `type`. Throws on a malformed body. */
  static decode(type: RecordType, body: Uint8Array): SinkBatch {
    switch (type) {
      case 'l4': return new SinkBatch(type, body, flowtap.L4LogBatch.decode(body).logs);
      case 'l7': return new SinkBatch(type, body, flowtap.L7LogBatch.decode(body).logs);
      case 'metrics': return new SinkBatch(type, body, flowtap.DocumentBatch.decode(body).documents);
    }
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

/** A destination for records. Drops are counted by reason in `drops` (records, not batches). */
export interface Sink {
  readonly name: string;
  readonly drops: Map<string, number>;
  /** Rows accepted per record type (written, queued for a remote, or spooled). */
  readonly written: Record<RecordType, number>;
  write(batch: SinkBatch): Promise<void>;
  /** Profile rows (records.ts profileRows); sinks without a profile store leave this out. */
  writeProfile?(rows: readonly Row[]): Promise<void>;
  /** Profile rows accepted. */
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
