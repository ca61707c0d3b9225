// Kafka wire protocol (kafka.apache.org/protocol). Every message is `int32 size` + body; a request
// header names the API (api_key, api_version), a correlation id and the client id; a response
// carries only the correlation id, so the flow state remembers each request's API to read its
// response. Only the first bytes of a message are read (header, first topic, top-level error):
// the rest is returned as bytes to skip, so a 1 MiB Produce costs what a 100-byte one does.
import {
  CHECK_NONE, CHECK_REQUEST, CHECK_RESPONSE, CheckResult, Emit, L7Parser, ParseContext,
  PARSE_INVALID, PARSE_NEED_MORE, ResponseStatus, newMessage,
} from '../parser';

/** API names by api_key, as the Kafka protocol guide lists them. */
export const KAFKA_API_NAMES = [
  'Produce', 'Fetch', 'ListOffsets', 'Metadata', 'LeaderAndIsr', 'StopReplica', 'UpdateMetadata',
  'ControlledShutdown', 'OffsetCommit', 'OffsetFetch', 'FindCoordinator', 'JoinGroup', 'Heartbeat',
  'LeaveGroup', 'SyncGroup', 'DescribeGroups', 'ListGroups', 'SaslHandshake', 'ApiVersions',
  'CreateTopics', 'DeleteTopics', 'DeleteRecords', 'InitProducerId', 'OffsetForLeaderEpoch',
  'AddPartitionsToTxn', 'AddOffsetsToTxn', 'EndTxn', 'WriteTxnMarkers', 'TxnOffsetCommit',
  'DescribeAcls', 'CreateAcls', 'DeleteAcls', 'DescribeConfigs', 'AlterConfigs',
  'AlterReplicaLogDirs', 'DescribeLogDirs', 'SaslAuthenticate', 'CreatePartitions',
  'CreateDelegationToken', 'RenewDelegationToken', 'ExpireDelegationToken',
  'DescribeDelegationToken', 'DeleteGroups', 'ElectLeaders', 'IncrementalAlterConfigs',
  'AlterPartitionReassignments', 'ListPartitionReassignments', 'OffsetDelete',
  'DescribeClientQuotas', 'AlterClientQuotas', 'DescribeUserScramCredentials',
  'AlterUserScramCredentials', 'Vote', 'BeginQuorumEpoch', 'EndQuorumEpoch', 'DescribeQuorum',
  'AlterPartition', 'UpdateFeatures', 'Envelope', 'FetchSnapshot', 'DescribeCluster',
  'DescribeProducers', 'BrokerRegistration', 'BrokerHeartbeat', 'UnregisterBroker',
  'DescribeTransactions', 'ListTransactions', 'AllocateProducerIds', 'ConsumerGroupHeartbeat',
  'ConsumerGroupDescribe', 'ControllerRegistration', 'GetTelemetrySubscriptions', 'PushTelemetry',
  'AssignReplicasToDirs', 'ListClientMetricsResources', 'DescribeTopicPartitions',
];

/**
 * First "flexible" version per api_key (compact strings, tagged fields, request header v2 and
 * response header v1); 0 = flexible from the start, 99 = never.
 */
const FIRST_FLEXIBLE = [
  9, 12, 6, 9, 4, 2, 6, 3, 8, 6, 3, 6, 4, 4, 4, 5, 3, 99, 3, 5, 4, 2, 2, 4, 3, 3, 3, 1, 3, 2, 2, 2,
  4, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 0, 0, 99, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/**
 * Responses whose body starts with the error code, after a throttle time from the version given
 * here (-1: no top-level error code read).
 */
const THROTTLE_BEFORE_ERROR_FROM = new Int8Array(KAFKA_API_NAMES.length).fill(-1);
const ERROR_FIRST = new Uint8Array(KAFKA_API_NAMES.length);
for (const [key, from] of [[10, 1], [11, 2], [12, 1], [13, 1], [14, 1], [16, 1], [22, 0], [25, 0], [26, 0], [60, 0], [1, 7]] as const) {
  THROTTLE_BEFORE_ERROR_FROM[key] = from;
}
// ApiVersions, SaslHandshake and SaslAuthenticate put the error code first whatever the version.
for (const key of [18, 17, 36]) ERROR_FIRST[key] = 1;

/** Error codes that mean the client asked for something wrong (others count as server errors). */
const CLIENT_ERRORS = new Set([3, 10, 17, 29, 30, 31, 35, 36, 42, 58]);

export const KAFKA_MAX_MESSAGE = 64 << 20;
/** Requests remembered per connection while waiting for their response. */
const MAX_PENDING = 1024;
/** Bytes a message's start must have before it is read (when the message is longer). */
const MIN_HEAD = 256;

export class KafkaFlowState {
  /** correlation id -> api_key * 256 + api_version of requests not answered yet. */
  readonly pending = new Map<number, number>();
}

/** A bounds-checked cursor over one message; reads past `end` set `bad` and return 0. */
class Reader {
  d: Buffer = Buffer.alloc(0);
  pos = 0;
  end = 0;
  bad = false;

  reset(d: Buffer, pos: number, end: number): void { this.d = d; this.pos = pos; this.end = end; this.bad = false; }
  i8(): number { if (this.pos + 1 > this.end) { this.bad = true; return 0; } return this.d.readInt8(this.pos++); }
  i16(): number { if (this.pos + 2 > this.end) { this.bad = true; return 0; } const v = this.d.readInt16BE(this.pos); this.pos += 2; return v; }
  i32(): number { if (this.pos + 4 > this.end) { this.bad = true; return 0; } const v = this.d.readInt32BE(this.pos); this.pos += 4; return v; }
  skip(n: number): void { if (n < 0 || this.pos + n > this.end) { this.bad = true; this.pos = this.end; } else this.pos += n; }
  uvarint(): number {
    let v = 0, mul = 1;
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) { this.bad = true; return 0; }
      const b = this.d[this.pos++];
      v += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return v;
      mul *= 128;
    }
    this.bad = true;
    return 0;
  }
  /** int16-length string (null: -1) -> text, '' when absent or cut. */
  str16(): string {
    const n = this.i16();
    if (n <= 0 || this.bad) return '';
    if (this.pos + n > this.end) { this.bad = true; return ''; }
    const s = this.d.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  /** uvarint(length + 1) string (compact). */
  compactStr(): string {
    const n = this.uvarint() - 1;
    if (n <= 0 || this.bad) return '';
    if (this.pos + n > this.end) { this.bad = true; return ''; }
    const s = this.d.toString('utf8', this.pos, this.pos + n);
    this.pos += n;
    return s;
  }
  str(flexible: boolean): string { return flexible ? this.compactStr() : this.str16(); }
  /** Array length: int32, or uvarint(n + 1) when compact; -1 for null. */
  arrayLen(flexible: boolean): number { return flexible ? this.uvarint() - 1 : this.i32(); }
  /** Skips a block of tagged fields. */
  tags(): void {
    const n = this.uvarint();
    for (let i = 0; i < n && !this.bad; i++) {
      this.uvarint();
      this.skip(this.uvarint());
    }
  }
}

function statusOfError(code: number): ResponseStatus {
  if (code === 0) return 'ok';
  return CLIENT_ERRORS.has(code) ? 'client_error' : 'server_error';
}

/** A plausible request header at `s`: known api_key, small version, sane client id length. */
function looksLikeRequest(d: Buffer, s: number, end: number): boolean {
  if (end - s < 14) return false;
  const size = d.readInt32BE(s);
  if (size < 10 || size > KAFKA_MAX_MESSAGE) return false;
  const key = d.readInt16BE(s + 4), ver = d.readInt16BE(s + 6);
  if (key < 0 || key >= KAFKA_API_NAMES.length || ver < 0 || ver > 20) return false;
  if (d.readInt32BE(s + 8) < 0) return false;
  const idLen = d.readInt16BE(s + 12);
  if (idLen < -1 || idLen > size - 10) return false;
  // Client ids are printable text.
  for (let i = s + 14, e = Math.min(end, s + 14 + idLen); i < e; i++) if (d[i] < 0x20 || d[i] > 0x7e) return false;
  return true;
}

export class KafkaParser implements L7Parser<KafkaFlowState> {
  readonly name = 'Kafka';
  readonly pairsById = true;
  readonly sessionTimeoutUs = 120_000_000;
  readonly overTcp = true;
  readonly overUdp = false;
  private readonly r = new Reader();

  check(d: Buffer, start: number, end: number, ctx: ParseContext): CheckResult {
    if (looksLikeRequest(d, start, end)) return CHECK_REQUEST;
    // A response has only size and correlation id to go by: accept it from the server side only,
    // and only when the size accounts for the segment exactly (or runs past a long one).
    // Correlation ids count up from 0 per connection: one above 2^26 is taken for another
    // length-prefixed protocol (SSH's packets, whose padding length byte is 4 or more, sit there).
    if (ctx.fromClient || end - start < 8) return CHECK_NONE;
    const size = d.readInt32BE(start), len = end - start;
    if (size < 4 || size > KAFKA_MAX_MESSAGE || d[start + 4] >= 4) return CHECK_NONE;
    return size + 4 === len || (len >= 512 && size + 4 > len) ? CHECK_RESPONSE : CHECK_NONE;
  }

  newFlowState(): KafkaFlowState { return new KafkaFlowState(); }

  resync(_state: KafkaFlowState, _fromClient: boolean): void {
    // Correlation ids stay valid across a gap: nothing to forget.
  }

  parse(d: Buffer, start: number, end: number, ctx: ParseContext, st: KafkaFlowState, emit: Emit): number {
    const len = end - start;
    if (len < 4) return ctx.truncated ? PARSE_INVALID : PARSE_NEED_MORE;
    const size = d.readInt32BE(start);
    if (size < 4 || size > KAFKA_MAX_MESSAGE) return PARSE_INVALID;
    const total = size + 4;
    // Wait for the whole message when it is short, else for enough of its start to read.
    if (len < total && len < MIN_HEAD && !ctx.truncated) return PARSE_NEED_MORE;
    const msgEnd = Math.min(end, start + total);
    // The side is the message's own: a request header where a request can be, else a response.
    const r = looksLikeRequest(d, start, msgEnd) && (ctx.fromClient || !st.pending.has(d.readInt32BE(start + 4)))
      ? this.request(d, start, msgEnd, size, st, emit) : this.response(d, start, msgEnd, size, st, emit);
    return r ? total : PARSE_INVALID;
  }

  private request(d: Buffer, start: number, end: number, size: number, st: KafkaFlowState, emit: Emit): boolean {
    const r = this.r;
    r.reset(d, start + 4, end);
    const key = r.i16(), ver = r.i16(), corr = r.i32();
    const clientId = r.str16();
    const flexible = ver >= FIRST_FLEXIBLE[key];
    if (flexible) r.tags();
    const msg = newMessage('request');
    msg.requestType = KAFKA_API_NAMES[key];
    msg.version = String(ver);
    msg.requestDomain = clientId;
    msg.pairId = corr;
    msg.length = size;
    if (!r.bad) msg.requestResource = this.firstTopic(key, ver, flexible);
    if (st.pending.size >= MAX_PENDING) st.pending.delete(st.pending.keys().next().value as number);
    st.pending.set(corr, key * 256 + ver);
    emit(msg);
    return true;
  }

  /** The first topic name of a Produce, Fetch, OffsetCommit or Metadata request ('' for others or if cut). */
  private firstTopic(key: number, ver: number, flexible: boolean): string {
    const r = this.r;
    if (key === 0) { // Produce
      if (ver >= 3) r.str(flexible); // transactional_id
      r.skip(6); // acks, timeout_ms
      return r.arrayLen(flexible) > 0 ? r.str(flexible) : '';
    }
    if (key === 1) { // Fetch
      if (ver >= 13) return ''; // topics named by id from v13
      r.skip(ver >= 15 ? 0 : 4); // replica_id
      r.skip(8); // max_wait_ms, min_bytes
      if (ver >= 3) r.skip(4);
      if (ver >= 4) r.skip(1);
      if (ver >= 7) r.skip(8);
      return r.arrayLen(flexible) > 0 ? r.str(flexible) : '';
    }
    if (key === 8) { // OffsetCommit
      r.str(flexible); // group_id
      if (ver >= 1) { r.skip(4); r.str(flexible); } // generation_id, member_id
      if (ver >= 2 && ver <= 4) r.skip(8); // retention_time_ms
      if (ver >= 7) r.str(flexible); // group_instance_id
      return r.arrayLen(flexible) > 0 ? r.str(flexible) : '';
    }
    if (key === 3) { // Metadata
      if (r.arrayLen(flexible) <= 0) return '';
      if (ver >= 10) r.skip(16); // topic_id
      return r.str(flexible);
    }
    return '';
  }

  private response(d: Buffer, start: number, end: number, size: number, st: KafkaFlowState, emit: Emit): boolean {
    const r = this.r;
    r.reset(d, start + 4, end);
    const corr = r.i32();
    if (r.bad) return false;
    const msg = newMessage('response');
    msg.pairId = corr;
    msg.length = size;
    msg.responseStatus = 'ok';
    const known = st.pending.get(corr);
    if (known !== undefined) {
      st.pending.delete(corr);
      const key = known >> 8, ver = known & 0xff;
      // Lone responses (request not seen) still say which API they answer.
      msg.requestType = KAFKA_API_NAMES[key];
      msg.version = String(ver);
      // ApiVersions keeps response header v0 so that old clients can read it.
      const flexible = ver >= FIRST_FLEXIBLE[key];
      if (flexible && key !== 18) r.tags();
      const code = this.errorCode(key, ver, flexible);
      if (code !== undefined) {
        msg.responseCode = code;
        msg.responseStatus = statusOfError(code);
      }
    }
    emit(msg);
    return true;
  }

  /** The response's top-level error code, or the first partition's for Produce and OffsetCommit. */
  private errorCode(key: number, ver: number, flexible: boolean): number | undefined {
    const r = this.r;
    let code: number | undefined;
    if (ERROR_FIRST[key] === 1) code = r.i16();
    else if (THROTTLE_BEFORE_ERROR_FROM[key] >= 0) {
      if (key === 10 && ver >= 4) return undefined; // FindCoordinator v4+: per-coordinator errors
      if (ver >= THROTTLE_BEFORE_ERROR_FROM[key]) r.skip(4);
      code = r.i16();
    } else if (key === 0 || key === 8) {
      if (key === 8 && ver >= 3) r.skip(4); // OffsetCommit throttle_time_ms
      if (r.arrayLen(flexible) <= 0) return undefined;
      r.str(flexible);
      if (r.arrayLen(flexible) <= 0) return undefined;
      r.skip(4); // partition index
      code = r.i16();
    }
    return r.bad ? undefined : code;
  }
}

export const kafkaParser = new KafkaParser();
