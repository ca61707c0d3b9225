// lib/proto-wire.ts against protobufjs, the encoder and decoder every other part of flowtap (and
// its tests) uses: every scalar type, edge values, packed repeated fields, nested messages,
// hostile strings, and malformed bytes (which must be a ProtoWireError, never another error, a
// read past the end or a loop).
import test from 'ava';
import protobuf from 'protobufjs';
import '../../lib/proto'; // Long off: 64-bit values are numbers, as in the services
import { ProtoReader, ProtoWireError, ProtoWriter, StringCache, tagOf, varintSize32, WIRE_I32, WIRE_I64, WIRE_LEN, WIRE_VARINT } from '../../lib/proto-wire';
import { XorShift32 } from '../../lib/throttle';

const rng = new XorShift32(20261124);
const int = (n: number) => rng.below(n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];

/** Numbers at the edges of each encoding: varint lengths, 32 and 53 bits, signs, fractions, non-finite. */
const EDGES = [
  0, -0, 1, -1, 2, 63, 64, 127, 128, 255, 300, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 - 1, 2 ** 28,
  2 ** 31 - 1, 2 ** 31, -(2 ** 31), -(2 ** 31) - 1, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, -(2 ** 32), 2 ** 35 + 7,
  1_700_000_000_123_456, 2 ** 49 - 1, 2 ** 52 + 3, 2 ** 53 - 1, 2 ** 53, 2 ** 53 + 2, -(2 ** 53) + 1, 2 ** 56,
  2 ** 63, -(2 ** 63), 2 ** 64 - 2048, 2 ** 64, 2 ** 70, 0.5, -0.5, 1.5, -1.5, 2 ** 40 + 0.5, 1e-300, NaN, Infinity, -Infinity,
];

type ValueType = 'int32' | 'int64' | 'uint32' | 'uint64' | 'sint32' | 'sint64' | 'fixed32' | 'sfixed32' | 'fixed64' | 'sfixed64' | 'double' | 'float';
const VALUE_TYPES: ValueType[] = ['int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'sfixed32', 'fixed64', 'sfixed64', 'double', 'float'];

function ours(write: (w: ProtoWriter) => void): Buffer {
  const w = new ProtoWriter(16);
  write(w);
  return w.take();
}

function theirs(write: (w: protobuf.Writer) => void): Buffer {
  const w = protobuf.Writer.create();
  write(w);
  return Buffer.from(w.finish());
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const same = (a: unknown, b: unknown) => Object.is(a, b) || (a === 0 && b === 0);

test('every scalar writer writes the bytes protobufjs writes, for edge values and random ones', (t) => {
  const randoms = Array.from({ length: 300 }, () => {
    const bits = int(64);
    const v = Math.floor((int(2 ** 26) * 2 ** 27 + int(2 ** 27)) / 2 ** (53 - Math.min(bits, 53))) * 2 ** Math.max(0, bits - 53);
    return int(2) ? v : -v;
  });
  for (const type of VALUE_TYPES) {
    for (const v of [...EDGES, ...randoms]) {
      t.is(hex(ours((w) => w[type](v))), hex(theirs((w) => w[type](v))), `${type} ${v}`);
    }
  }
  for (const v of [true, false]) t.is(hex(ours((w) => w.bool(v))), hex(theirs((w) => w.bool(v))));
  // What protobuf requires of negative int32s: ten bytes, sign-extended, as int64.
  for (const v of [-1, -(2 ** 31), -128]) {
    t.is(ours((w) => w.int32(v)).length, 10);
    t.is(hex(ours((w) => w.int32(v))), hex(ours((w) => w.int64(v))));
  }
  t.is(hex(ours((w) => w.int32(-1))), 'ffffffffffffffffff01');
  t.is(hex(ours((w) => w.uint32(-1))), 'ffffffff0f', 'uint32 wraps to 32 bits');
});

test('every scalar reader reads what protobufjs reads, for edge values and random ones', (t) => {
  const r = new ProtoReader();
  for (const type of VALUE_TYPES) {
    for (const v of EDGES) {
      const bytes = theirs((w) => w[type](v));
      const want = (protobuf.Reader.create(bytes) as unknown as Record<ValueType, () => number>)[type]();
      r.reset(bytes);
      const got = r[type]();
      t.true(same(got, want), `${type} ${v}: read ${got}, protobufjs ${want}`);
      t.is(r.pos, bytes.length);
    }
  }
  for (const v of [true, false]) t.is(r.reset(theirs((w) => w.bool(v))).bool(), v);
  // Varints of every length read as protobufjs reads each type, up to 2^64 - 1 and bits past the 64th.
  const varints = ['00', '7f', '8001', 'ffffffff0f', 'ffffffff1f', '808080808001', 'ffffffffffffffff7f', 'ffffffffffffffffff01', 'ffffffffffffffffff7f', '80808080808080808000'];
  for (const h of varints) {
    const bytes = Buffer.from(h, 'hex');
    // protobufjs reads a 32-bit varint of 6 to 9 bytes as if it had 10 (it skips 5 bytes unread);
    // those are checked below against the spec (the low 32 bits of the whole varint).
    const types = bytes.length > 5 && bytes.length < 10 ? ['int64', 'uint64', 'sint64'] as const : ['int32', 'uint32', 'int64', 'uint64', 'sint32', 'sint64', 'bool'] as const;
    for (const type of types) {
      const want = (protobuf.Reader.create(bytes) as unknown as Record<string, () => unknown>)[type]();
      t.true(same(r.reset(bytes)[type](), want), `${type} of varint ${h}`);
    }
  }
  t.is(r.reset(Buffer.from('ffffffffffffffffff01', 'hex')).int32(), -1);
  t.is(r.reset(Buffer.from('ffffffff0f', 'hex')).int32(), -1, 'a 5-byte varint of 2^32 - 1 is -1 too');
  t.is(r.reset(Buffer.from('8080808010', 'hex')).bool(), false, 'bool reads the low 32 bits only, as protobufjs');
  r.reset(Buffer.from('85808080800101', 'hex'));
  t.is(r.uint32(), 5, 'a 6-byte varint read as uint32: its low 32 bits');
  t.is(r.pos, 6, 'and the whole varint consumed');
});

/** Strings that have broken encoders: every UTF-8 length, surrogate pairs, lone and reversed surrogates. */
const HOSTILE = [
  '', 'a', 'x'.repeat(39), 'x'.repeat(40), 'x'.repeat(127), 'x'.repeat(128), 'x'.repeat(2047), 'x'.repeat(2048), 'x'.repeat(20000),
  'é', 'ü'.repeat(64), 'Grüße /ü?q=1', '日本語', '€'.repeat(700), '😀', '😀'.repeat(50), 'a\u0000b', '\u007f\u0080\u07ff\u0800\uffff',
  'lone high \ud800 x', 'lone low \udfff', '\ud800', '\udc00\ud800', 'end \ud83d', '\ud83d\ud83d\ude00', `${'y'.repeat(60)}\ud800`,
  `${'é'.repeat(30)}\udfff${'z'.repeat(30)}`, '\ufeff bom', 'x'.repeat(126) + 'é',
];
const hasLoneSurrogate = (s: string) => /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/.test(s);

test('strings: the bytes protobufjs writes; a lone surrogate as U+FFFD (valid UTF-8) wherever protobufjs writes otherwise', (t) => {
  const fatal = new TextDecoder('utf-8', { fatal: true });
  const r = new ProtoReader();
  for (const s of HOSTILE) {
    const got = ours((w) => w.string(s));
    const want = theirs((w) => w.string(s));
    t.is(got.length, want.length, `length of ${JSON.stringify(s.slice(0, 20))}`);
    if (!hasLoneSurrogate(s) || s.length >= 40) {
      t.is(hex(got), hex(want), JSON.stringify(s.slice(0, 20)));
    } else {
      // protobufjs's own encoder (strings under 40 units) writes the surrogate's code point as
      // three bytes (ED A0 80 ...), which is not UTF-8; Node's encoder, ours, writes EF BF BD.
      t.not(hex(got), hex(want));
      t.is(hex(got), hex(theirs((w) => w.uint32(Buffer.byteLength(s)))) + hex(Buffer.from(s)));
    }
    t.notThrows(() => fatal.decode(r.reset(got).bytes()), 'valid UTF-8');
    t.is(r.reset(want).string(), protobuf.Reader.create(want).string(), 'read as protobufjs reads');
    t.is(r.reset(got).string(), Buffer.from(s).toString(), 'read back');
  }
  // Invalid UTF-8 on the wire reads as protobufjs (Node) reads it: U+FFFD.
  for (const h of ['80', 'c080', 'e282', 'eda080', 'f4908080', '61ff220a', 'f09f98']) {
    const bytes = theirs((w) => w.bytes(Buffer.from(h, 'hex')));
    t.is(r.reset(bytes).string(), protobuf.Reader.create(bytes).string(), h);
  }
});

/** A message of every scalar type, each also as a packed repeated field, parsed by protobufjs. */
const SCHEMA = protobuf.parse(`
syntax = "proto3";
message Nested { uint64 id = 1; string name = 2; Nested child = 3; repeated sint32 deltas = 4 [packed = true]; }
message All {
  int32 f_int32 = 1; int64 f_int64 = 2; uint32 f_uint32 = 3; uint64 f_uint64 = 4; sint32 f_sint32 = 5; sint64 f_sint64 = 6;
  bool f_bool = 7; fixed32 f_fixed32 = 8; sfixed32 f_sfixed32 = 9; fixed64 f_fixed64 = 10; sfixed64 f_sfixed64 = 11;
  double f_double = 12; string f_string = 13; bytes f_bytes = 14; Nested f_nested = 15; optional int32 f_present = 16;
  repeated int32 p_int32 = 17 [packed = true]; repeated uint64 p_uint64 = 18 [packed = true]; repeated sint64 p_sint64 = 19 [packed = true]; repeated fixed32 p_fixed32 = 20 [packed = true];
  repeated double p_double = 21 [packed = true]; repeated bool p_bool = 22 [packed = true]; repeated Nested nested = 23; uint32 f_high = 2047;
}`, { keepCase: true }).root.resolveAll();
const All = SCHEMA.lookupType('All');

type Obj = Record<string, unknown>;

/** Integers in range for a field of `type`, with their edges (values that encode as themselves). */
function inRange(type: string): number {
  const signed32 = [0, 1, -1, 127, 128, -128, 2 ** 31 - 1, -(2 ** 31), 300, -300];
  const unsigned32 = [0, 1, 127, 128, 16383, 16384, 2 ** 28, 2 ** 31, 2 ** 32 - 1];
  const signed64 = [...signed32, 2 ** 32, -(2 ** 32), 2 ** 53 - 1, -(2 ** 53) + 1, 1_700_000_000_123_456];
  const unsigned64 = [...unsigned32, 2 ** 32, 2 ** 35 + 7, 2 ** 53 - 1, 1_700_000_000_123_456];
  switch (type) {
    case 'int32': case 'sint32': case 'sfixed32': return pick(signed32);
    case 'uint32': case 'fixed32': return pick(unsigned32);
    case 'int64': case 'sint64': case 'sfixed64': return pick(signed64);
    case 'uint64': case 'fixed64': return pick(unsigned64);
    default: return pick([0, 1, -1, 0.1, -2.5e300, 2 ** 53, Infinity, -Infinity, 1e-310]);
  }
}

function randomNested(depth: number): Obj {
  const n: Obj = {};
  if (int(2)) n.id = inRange('uint64');
  if (int(2)) n.name = pick(HOSTILE.filter((s) => !hasLoneSurrogate(s)));
  if (depth > 0 && int(2)) n.child = randomNested(depth - 1);
  if (int(2)) n.deltas = Array.from({ length: int(200) }, () => inRange('sint32'));
  return n;
}

function randomAll(): Obj {
  const o: Obj = {};
  const scalar = ['int32', 'int64', 'uint32', 'uint64', 'sint32', 'sint64', 'fixed32', 'sfixed32', 'fixed64', 'sfixed64', 'double'];
  for (const type of scalar) if (int(3)) o[`f_${type}`] = inRange(type);
  if (int(3)) o.f_bool = int(2) === 1;
  if (int(3)) o.f_string = pick(HOSTILE.filter((s) => !hasLoneSurrogate(s)));
  if (int(3)) o.f_bytes = Buffer.from(Array.from({ length: pick([0, 1, 16, 200, 20000]) }, () => int(256)));
  if (int(3)) o.f_nested = randomNested(3);
  if (int(3)) o.f_present = inRange('int32'); // presence: written even when 0
  if (int(3)) o.p_int32 = Array.from({ length: int(40) }, () => inRange('int32'));
  if (int(3)) o.p_uint64 = Array.from({ length: int(40) }, () => inRange('uint64'));
  if (int(3)) o.p_sint64 = Array.from({ length: int(40) }, () => inRange('sint64'));
  if (int(3)) o.p_fixed32 = Array.from({ length: int(40) }, () => inRange('fixed32'));
  if (int(3)) o.p_double = Array.from({ length: int(40) }, () => inRange('double'));
  if (int(3)) o.p_bool = Array.from({ length: int(300) }, () => int(2) === 1);
  if (int(3)) o.nested = Array.from({ length: int(4) }, () => randomNested(1));
  if (int(3)) o.f_high = inRange('uint32');
  return o;
}

/** The object without proto3 defaults (0, -0, false, empty), which the `...Field` writers leave out, as protobufjs leaves out what is absent. */
function withoutDefaults(o: Obj): Obj {
  const out: Obj = {};
  for (const [k, v] of Object.entries(o)) {
    if (k !== 'f_present' && (v === 0 || v === false || v === '' || (v instanceof Uint8Array && v.length === 0) || (Array.isArray(v) && v.length === 0))) continue;
    out[k] = k === 'f_nested' ? withoutDefaults(v as Obj) : k === 'nested' ? (v as Obj[]).map(withoutDefaults) : v;
  }
  for (const k of ['child']) if (out[k]) out[k] = withoutDefaults(out[k] as Obj);
  return out;
}

function writeNested(w: ProtoWriter, n: Obj): void {
  w.uint64Field(tagOf(1, WIRE_VARINT), (n.id as number) ?? 0);
  w.stringField(tagOf(2, WIRE_LEN), (n.name as string) ?? '');
  if (n.child) { w.begin(tagOf(3, WIRE_LEN), 2); writeNested(w, n.child as Obj); w.end(); }
  const deltas = (n.deltas as number[]) ?? [];
  if (deltas.length) { w.begin(tagOf(4, WIRE_LEN)); for (const d of deltas) w.sint32(d); w.end(); }
}

function packed(w: ProtoWriter, field: number, values: unknown, write: (v: never) => void, reserve = 1): void {
  const vs = (values as never[]) ?? [];
  if (vs.length === 0) return;
  w.begin(tagOf(field, WIRE_LEN), reserve);
  for (const v of vs) write(v);
  w.end();
}

function writeAll(w: ProtoWriter, o: Obj): void {
  const n = (k: string) => (o[k] as number) ?? 0;
  w.int32Field(tagOf(1, WIRE_VARINT), n('f_int32'));
  w.int64Field(tagOf(2, WIRE_VARINT), n('f_int64'));
  w.uint32Field(tagOf(3, WIRE_VARINT), n('f_uint32'));
  w.uint64Field(tagOf(4, WIRE_VARINT), n('f_uint64'));
  w.sint32Field(tagOf(5, WIRE_VARINT), n('f_sint32'));
  w.sint64Field(tagOf(6, WIRE_VARINT), n('f_sint64'));
  w.boolField(tagOf(7, WIRE_VARINT), o.f_bool === true);
  w.fixed32Field(tagOf(8, WIRE_I32), n('f_fixed32'));
  w.fixed32Field(tagOf(9, WIRE_I32), n('f_sfixed32'));
  w.fixed64Field(tagOf(10, WIRE_I64), n('f_fixed64'));
  w.fixed64Field(tagOf(11, WIRE_I64), n('f_sfixed64'));
  w.doubleField(tagOf(12, WIRE_I64), n('f_double'));
  w.stringField(tagOf(13, WIRE_LEN), (o.f_string as string) ?? '');
  w.bytesField(tagOf(14, WIRE_LEN), (o.f_bytes as Buffer) ?? Buffer.alloc(0));
  if (o.f_nested) { w.begin(tagOf(15, WIRE_LEN)); writeNested(w, o.f_nested as Obj); w.end(); }
  if (o.f_present !== undefined) { w.uint32(tagOf(16, WIRE_VARINT)); w.int32(o.f_present as number); }
  packed(w, 17, o.p_int32, (v: number) => w.int32(v), 5);
  packed(w, 18, o.p_uint64, (v: number) => w.uint64(v), 2);
  packed(w, 19, o.p_sint64, (v: number) => w.sint64(v));
  packed(w, 20, o.p_fixed32, (v: number) => w.fixed32(v));
  packed(w, 21, o.p_double, (v: number) => w.double(v));
  packed(w, 22, o.p_bool, (v: boolean) => w.bool(v));
  for (const nested of (o.nested as Obj[]) ?? []) { w.begin(tagOf(23, WIRE_LEN), 3); writeNested(w, nested); w.end(); }
  w.uint32Field(tagOf(2047, WIRE_VARINT), n('f_high'));
}

test('fields, nested messages and packed repeated fields: the bytes protobufjs writes, defaults left out', (t) => {
  const w = new ProtoWriter(16); // small, so that growing is exercised
  for (let round = 0; round < 400; round++) {
    const objects = Array.from({ length: 1 + int(4) }, randomAll);
    for (const o of objects) writeAll(w, o);
    const got = w.take();
    const want = Buffer.concat(objects.map((o) => All.encode(All.fromObject(withoutDefaults(o))).finish()));
    t.is(hex(got), hex(want), `round ${round}`);
  }
});

/** Reads an All with the reader, into what protobufjs's toObject gives. */
function readNested(r: ProtoReader): Obj {
  const o: Obj = { id: 0, name: '', child: null, deltas: [] };
  while (r.pos < r.end) {
    const tag = r.uint32();
    switch (tag) {
      case tagOf(1, WIRE_VARINT): o.id = r.uint64(); break;
      case tagOf(2, WIRE_LEN): o.name = r.string(); break;
      case tagOf(3, WIRE_LEN): o.child = merge(o.child as Obj | null, inside(r, readNested)); break;
      case tagOf(4, WIRE_LEN): (o.deltas as number[]).push(...inside(r, (rr) => { const a: number[] = []; while (rr.pos < rr.end) a.push(rr.sint32()); return a; })); break;
      case tagOf(4, WIRE_VARINT): (o.deltas as number[]).push(r.sint32()); break;
      default:
        if (tag >>> 3 >= 1 && tag >>> 3 <= 4) throw new ProtoWireError(`field ${tag >>> 3} with wire type ${tag & 7}`);
        r.skip(tag & 7);
    }
  }
  return o;
}

/** A message field seen twice merges into the first, as protobuf says (repeated fields concatenate). */
function merge(a: Obj | null, b: Obj): Obj {
  if (!a) return b;
  return {
    id: b.id !== 0 ? b.id : a.id, name: b.name !== '' ? b.name : a.name,
    child: a.child && b.child ? merge(a.child as Obj, b.child as Obj) : b.child ?? a.child,
    deltas: [...(a.deltas as number[]), ...(b.deltas as number[])],
  };
}

/** Runs `read` over the length-delimited field at the reader, with `end` moved to its end. */
function inside<T>(r: ProtoReader, read: (r: ProtoReader) => T): T {
  const len = r.length();
  const outer = r.end;
  r.end = r.pos + len;
  const v = read(r);
  if (r.pos !== r.end) throw new Error('nested read stopped short');
  r.end = outer;
  return v;
}

function readAll(r: ProtoReader): Obj {
  const o: Obj = {
    f_int32: 0, f_int64: 0, f_uint32: 0, f_uint64: 0, f_sint32: 0, f_sint64: 0, f_bool: false, f_fixed32: 0, f_sfixed32: 0,
    f_fixed64: 0, f_sfixed64: 0, f_double: 0, f_string: '', f_bytes: '', p_int32: [], p_uint64: [], p_sint64: [], p_fixed32: [],
    p_double: [], p_bool: [], nested: [], f_high: 0, f_nested: null,
  };
  const list = (k: string, read: () => unknown) => { const a = o[k] as unknown[]; const len = r.length(), stop = r.pos + len; while (r.pos < stop) a.push(read()); };
  while (r.pos < r.end) {
    const tag = r.uint32();
    switch (tag) {
      case tagOf(1, WIRE_VARINT): o.f_int32 = r.int32(); break;
      case tagOf(2, WIRE_VARINT): o.f_int64 = r.int64(); break;
      case tagOf(3, WIRE_VARINT): o.f_uint32 = r.uint32(); break;
      case tagOf(4, WIRE_VARINT): o.f_uint64 = r.uint64(); break;
      case tagOf(5, WIRE_VARINT): o.f_sint32 = r.sint32(); break;
      case tagOf(6, WIRE_VARINT): o.f_sint64 = r.sint64(); break;
      case tagOf(7, WIRE_VARINT): o.f_bool = r.bool(); break;
      case tagOf(8, WIRE_I32): o.f_fixed32 = r.fixed32(); break;
      case tagOf(9, WIRE_I32): o.f_sfixed32 = r.sfixed32(); break;
      case tagOf(10, WIRE_I64): o.f_fixed64 = r.fixed64(); break;
      case tagOf(11, WIRE_I64): o.f_sfixed64 = r.sfixed64(); break;
      case tagOf(12, WIRE_I64): o.f_double = r.double(); break;
      case tagOf(13, WIRE_LEN): o.f_string = r.string(); break;
      case tagOf(14, WIRE_LEN): o.f_bytes = hex(r.bytes()); break;
      case tagOf(15, WIRE_LEN): o.f_nested = merge(o.f_nested as Obj | null, inside(r, readNested)); break;
      case tagOf(16, WIRE_VARINT): o.f_present = r.int32(); break;
      case tagOf(17, WIRE_LEN): list('p_int32', () => r.int32()); break;
      case tagOf(18, WIRE_LEN): list('p_uint64', () => r.uint64()); break;
      case tagOf(19, WIRE_LEN): list('p_sint64', () => r.sint64()); break;
      case tagOf(20, WIRE_LEN): list('p_fixed32', () => r.fixed32()); break;
      case tagOf(21, WIRE_LEN): list('p_double', () => r.double()); break;
      case tagOf(22, WIRE_LEN): list('p_bool', () => r.bool()); break;
      // Repeated scalars may also come unpacked, one value per tag (protobuf readers take both).
      case tagOf(17, WIRE_VARINT): (o.p_int32 as number[]).push(r.int32()); break;
      case tagOf(18, WIRE_VARINT): (o.p_uint64 as number[]).push(r.uint64()); break;
      case tagOf(19, WIRE_VARINT): (o.p_sint64 as number[]).push(r.sint64()); break;
      case tagOf(20, WIRE_I32): (o.p_fixed32 as number[]).push(r.fixed32()); break;
      case tagOf(21, WIRE_I64): (o.p_double as number[]).push(r.double()); break;
      case tagOf(22, WIRE_VARINT): (o.p_bool as boolean[]).push(r.bool()); break;
      case tagOf(23, WIRE_LEN): (o.nested as Obj[]).push(inside(r, readNested)); break;
      case tagOf(2047, WIRE_VARINT): o.f_high = r.uint32(); break;
      default:
        // protobufjs reads a known field by its number whatever its wire type; that is malformed input.
        if (All.fieldsById[tag >>> 3]) throw new ProtoWireError(`field ${tag >>> 3} with wire type ${tag & 7}`);
        r.skip(tag & 7);
    }
  }
  return o;
}

function protobufjsObject(body: Uint8Array): Obj {
  const o = All.toObject(All.decode(body), { defaults: true, longs: Number, arrays: true }) as Obj;
  o.f_bytes = hex(o.f_bytes as Uint8Array);
  return JSON.parse(JSON.stringify(o, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)));
}

let protobufjsMisread = false;

const normalised = (o: Obj): Obj => JSON.parse(JSON.stringify(o, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v)));

test('the reader reads every field as protobufjs decodes it, unknown fields skipped', (t) => {
  const r = new ProtoReader();
  for (let round = 0; round < 400; round++) {
    const o = randomAll();
    const body = Buffer.from(All.encode(All.fromObject(o)).finish());
    t.deepEqual(normalised(readAll(r.reset(body))), protobufjsObject(body), `round ${round}`);
  }
  // Fields of a newer schema (every wire type, numbers up to 2^29 - 1) in front: skipped.
  const unknown = theirs((w) => w.uint32(tagOf(99, WIRE_VARINT)).uint64(2 ** 60).uint32(tagOf(98, WIRE_I64)).fixed64(5)
    .uint32(tagOf(97, WIRE_I32)).fixed32(7).uint32(tagOf(2 ** 29 - 1, WIRE_LEN)).string('future'));
  const body = Buffer.concat([unknown, Buffer.from(All.encode(All.fromObject({ f_uint64: 5, f_string: 'x' })).finish())]);
  t.deepEqual(normalised(readAll(r.reset(body))), protobufjsObject(body));
  // A subrange of a larger buffer, as the services read a frame.
  const framed = Buffer.concat([Buffer.from([0xff, 0xff]), body, Buffer.from([0xff])]);
  t.deepEqual(normalised(readAll(r.reset(framed, 2, 2 + body.length))), protobufjsObject(body));
});

test('malformed bytes throw ProtoWireError: truncated varints and fields, lengths past the end, 11-byte varints, groups', (t) => {
  const r = new ProtoReader();
  const tenBytes = Buffer.from('ffffffffffffffffff01', 'hex');
  for (let n = 0; n < 10; n++) {
    t.throws(() => r.reset(tenBytes.subarray(0, n)).varint(), { instanceOf: ProtoWireError, message: /truncated varint/ }, `${n} bytes`);
    t.throws(() => r.reset(tenBytes, 0, n).uint64(), { instanceOf: ProtoWireError }, `end at ${n}`);
  }
  t.throws(() => r.reset(Buffer.from('ffffffffffffffffff8001', 'hex')).varint(), { instanceOf: ProtoWireError, message: /longer than 10 bytes/ });
  t.throws(() => r.reset(Buffer.alloc(100, 0xff)).uint64(), { instanceOf: ProtoWireError, message: /longer than 10 bytes/ });
  t.throws(() => r.reset(Buffer.from([0x05, 0x61])).string(), { instanceOf: ProtoWireError, message: /past the end/ });
  t.throws(() => r.reset(Buffer.from('ffffffff0f', 'hex')).length(), { instanceOf: ProtoWireError, message: /past the end/ });
  t.throws(() => r.reset(Buffer.from('8080808010', 'hex')).length(), { instanceOf: ProtoWireError, message: /past the end/ }, 'a length of 2^32 is not 0');
  t.throws(() => r.reset(Buffer.from([1, 2, 3])).fixed32(), { instanceOf: ProtoWireError, message: /truncated/ });
  t.throws(() => r.reset(Buffer.from([1, 2, 3, 4, 5, 6, 7])).double(), { instanceOf: ProtoWireError, message: /truncated/ });
  for (const wireType of [3, 4, 6, 7]) t.throws(() => r.reset(Buffer.alloc(0)).skip(wireType), { instanceOf: ProtoWireError, message: /wire type/ });
  for (const wireType of [WIRE_I64, WIRE_I32]) t.throws(() => r.reset(Buffer.from([1, 2])).skip(wireType), { instanceOf: ProtoWireError });
  // A field inside a nested message may not run past the message's end, though the body goes on.
  const body = Buffer.from([0x7a, 0x02, 0x12, 0x05, 0x61, 0x62, 0x63, 0x64, 0x65]); // f_nested of 2 bytes whose string wants 5
  t.throws(() => readAll(r.reset(body)), { instanceOf: ProtoWireError, message: /past the end/ });
});

test('random corruption of valid messages: the same values as protobufjs, or a ProtoWireError; never past the end, never a loop', (t) => {
  const r = new ProtoReader();
  // protobufjs reads a 32-bit varint (tag, int32, bool...) of 6 to 9 bytes as if it had 10; such
  // input is not compared, as the reader follows the spec there (see the scalar readers' test).
  const uint32 = protobuf.Reader.prototype.uint32;
  protobuf.Reader.prototype.uint32 = function (this: protobuf.Reader): number {
    let n = 1;
    while (this.pos + n - 1 < this.len && this.buf[this.pos + n - 1] >= 0x80) n++;
    if (n >= 6 && n <= 9) protobufjsMisread = true;
    return uint32.call(this);
  };
  t.teardown(() => { protobuf.Reader.prototype.uint32 = uint32; });
  let refused = 0, agreed = 0;
  for (let round = 0; round < 3000; round++) {
    const good = Buffer.from(All.encode(All.fromObject(randomAll())).finish());
    // Cut short (a third of the rounds), and up to 3 bytes changed.
    const bad = Buffer.from(good.subarray(0, int(3) === 0 ? int(good.length + 1) : good.length));
    for (let m = int(4); m > 0 && bad.length > 0; m--) bad[int(bad.length)] = int(256);
    // Read it as the tail of a larger buffer: bytes past `end` must never be read.
    const host = Buffer.concat([bad, Buffer.from('0a7f', 'hex')]);
    let want: Obj | undefined;
    protobufjsMisread = false;
    try { want = protobufjsObject(bad); } catch { want = undefined; }
    try {
      const got = normalised(readAll(r.reset(host, 0, bad.length)));
      t.true(r.pos <= bad.length);
      if (want !== undefined && !protobufjsMisread) { t.deepEqual(got, want); agreed++; }
    } catch (e) {
      if (!(e instanceof ProtoWireError) && !(e instanceof Error && e.message === 'nested read stopped short')) t.fail(`unexpected ${String(e)}`);
      refused++;
    }
  }
  t.true(refused > 300 && agreed > 300, `refused ${refused}, read as protobufjs ${agreed}`);
});

test('the writer: growth from 16 bytes, long content moved behind its length, nesting errors, take empties', (t) => {
  const w = new ProtoWriter(16);
  const big = Buffer.alloc(100_000, 7);
  w.begin(tagOf(1, WIRE_LEN), 1); // reserves 1 byte; 100 kB needs 3
  w.begin(tagOf(2, WIRE_LEN), 5); // reserves 5; needs 3
  w.bytesField(tagOf(3, WIRE_LEN), big);
  w.end();
  w.end();
  const want = theirs((pw) => pw.uint32(tagOf(1, WIRE_LEN)).fork().uint32(tagOf(2, WIRE_LEN)).fork().uint32(tagOf(3, WIRE_LEN)).bytes(big).ldelim().ldelim());
  t.true(w.take().equals(want));
  t.is(w.pos, 0);
  t.is(w.take().length, 0);
  t.throws(() => w.end(), { message: /without begin/ });
  w.begin(tagOf(1, WIRE_LEN));
  t.throws(() => w.take(), { message: /nested/ });
  w.end();
  t.is(hex(w.take()), '0a00', 'an empty nested message');
  w.writeInto(Buffer.alloc(0)); // grows from nothing
  w.stringField(tagOf(1, WIRE_LEN), 'grows');
  t.is(w.take().toString('latin1', 2), 'grows');
  for (const v of [0, 127, 128, 16383, 16384, 2 ** 21, 2 ** 28, 2 ** 32 - 1]) t.is(varintSize32(v), ours((x) => x.uint32(v)).length);
});

test('eachItem: every record of a batch, other fields skipped, no field past its record', (t) => {
  const Batch = protobuf.parse('syntax = "proto3"; message R { uint64 id = 1; string s = 2; } message B { repeated R items = 1; uint32 other = 2; }', { keepCase: true }).root.resolveAll();
  const B = Batch.lookupType('B');
  const items = Array.from({ length: 300 }, (_, k) => ({ id: k * 2 ** 40 + k, s: 'x'.repeat(k % 200) }));
  const body = Buffer.concat([theirs((w) => w.uint32(tagOf(2, WIRE_VARINT)).uint32(7)), Buffer.from(B.encode({ items }).finish()), theirs((w) => w.uint32(tagOf(3, WIRE_LEN)).string('later'))]);
  const r = new ProtoReader();
  const got: Obj[] = [];
  t.is(r.eachItem(body, (rd) => {
    const o: Obj = { id: 0, s: '' };
    while (rd.pos < rd.end) {
      const tag = rd.uint32();
      if (tag === tagOf(1, WIRE_VARINT)) o.id = rd.uint64(); else if (tag === tagOf(2, WIRE_LEN)) o.s = rd.string(); else rd.skip(tag & 7);
    }
    got.push(o);
  }), 300);
  t.deepEqual(got, items);
  t.is(r.end, body.length);
  // A record that does not read itself (a reader for another version) is still stepped over whole.
  t.is(r.eachItem(body, () => undefined), 300);
  // A string that runs past its record, though not past the body: an error, after the records before it.
  const bad = Buffer.from([0x0a, 0x02, 0x08, 0x01, 0x0a, 0x02, 0x12, 0x05, 0x61, 0x62, 0x63, 0x64, 0x65]);
  let seen = 0;
  t.throws(() => r.eachItem(bad, (rd) => { while (rd.pos < rd.end) rd.skip(rd.uint32() & 7); seen++; }), { instanceOf: ProtoWireError, message: /past the end/ });
  t.is(seen, 1);
});

test('StringCache: one string per distinct bytes, keys copied from the body', (t) => {
  const cache = new StringCache();
  const body = Buffer.from('HTTPDNSHTTPé');
  const a = cache.get(body, 0, 4);
  t.is(a, 'HTTP');
  t.is(cache.get(body, 7, 11), 'HTTP');
  t.is(cache.get(body, 4, 7), 'DNS');
  t.is(cache.get(body, 11, 13), 'é');
  body.write('XXXX', 0); // the body is reused for the next message
  t.is(cache.get(Buffer.from('HTTP'), 0, 4), 'HTTP');
  t.is(cache.get(body, 0, 4), 'XXXX');
  const long = 'l'.repeat(StringCache.MAX_LEN + 1);
  t.is(cache.get(Buffer.from(long), 0, long.length), long);
  const r = new ProtoReader().reset(theirs((w) => w.string('MySQL').string('')));
  t.is(cache.read(r), 'MySQL');
  t.is(cache.read(r), '');
});
