// Test helpers for the Kafka, MQTT, MongoDB, AMQP and Dubbo parsers: run the stage (with every
// default parser, so inference must pick the right one) on a capture, recording each message the
// parser emits besides the stage's logs; and tally agreement with tshark.
import { flowtap } from '../../lib/proto';
import { Emit, L7Message, L7Parser, ParseContext } from '../../services/l7/parser';
import { DEFAULT_PARSERS } from '../../services/l7/registry';
import { L7Stage } from '../../services/l7/stage';
import { appPayloads, tshark } from './tshark';

export interface MessagingRun {
  messages: L7Message[];
  logs: flowtap.IL7FlowLog[];
  stage: L7Stage;
}

/** The parser named `name`, with every message it emits also pushed to `sink`. */
export function recording(name: string, sink: L7Message[]): L7Parser {
  const p = DEFAULT_PARSERS.find((x) => x.name === name);
  if (p === undefined) throw new Error(`no parser ${name} in DEFAULT_PARSERS`);
  return {
    name: p.name, pairsById: p.pairsById, sessionTimeoutUs: p.sessionTimeoutUs, overTcp: p.overTcp, overUdp: p.overUdp,
    check: (d: Buffer, s: number, e: number, c: ParseContext) => p.check(d, s, e, c),
    newFlowState: () => p.newFlowState(),
    resync: (st: unknown, fc: boolean) => p.resync(st, fc),
    parse: (d: Buffer, s: number, e: number, c: ParseContext, st: unknown, emit: Emit) =>
      p.parse(d, s, e, c, st, (m) => { sink.push({ ...m }); emit(m); }),
  };
}

export function runMessaging(name: string, items: flowtap.IAppPayload[]): MessagingRun {
  const messages: L7Message[] = [];
  const logs: flowtap.IL7FlowLog[] = [];
  const parsers = DEFAULT_PARSERS.map((p) => (p.name === name ? recording(name, messages) : p));
  const stage = new L7Stage((l) => logs.push(l), () => undefined, { parsers });
  stage.pushBatch(items);
  stage.flush();
  return { messages, logs, stage };
}

export function runFile(name: string, file: string, cut = 1024): MessagingRun {
  return runMessaging(name, appPayloads(file, cut));
}

/** Matches two lists as multisets: how many of `want` are in `got`, and what differs. */
export function agreement(got: string[], want: string[]): { agree: number; total: number; missing: string[]; extra: string[] } {
  const left = [...got];
  const missing: string[] = [];
  let agree = 0;
  for (const w of want) {
    const i = left.indexOf(w);
    if (i >= 0) { left.splice(i, 1); agree++; } else missing.push(w);
  }
  return { agree, total: Math.max(want.length, got.length), missing, extra: left };
}

/** One line of the agreement table the tests print (and docs/l7 records). */
export function tableRow(file: string, what: string, a: { agree: number; total: number }): string {
  const pct = a.total === 0 ? 100 : (100 * a.agree) / a.total;
  return `| ${file} | ${what} | ${a.agree}/${a.total} | ${pct.toFixed(1)} % |`;
}

/** Builds TCP AppPayloads of one flow from the given segments (for unit tests). */
export function tcpFlow(segments: [fromClient: boolean, data: Buffer][], startUs = 1_700_000_000_000_000): flowtap.IAppPayload[] {
  const seq = [1000, 900000];
  return segments.map(([fromClient, data], i) => {
    const dir = fromClient ? 0 : 1;
    const s = seq[dir];
    seq[dir] = (seq[dir] + data.length) >>> 0;
    return {
      flow_id: 1, timestamp_us: startUs + i * 1000, ip_version: 4,
      ip_0: new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 0, 0, 1]),
      ip_1: new Uint8Array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 10, 0, 0, 2]),
      client_port: 40000, server_port: 12345, protocol: 6, from_client: fromClient, l7_protocol: '',
      tcp_seq: s, payload_len: data.length, payload: data, vlan: 0,
    };
  });
}

export interface PdmlMessage {
  frame: number;
  /** [field name, showname, show] in document order. */
  fields: [string, string, string][];
  /** tshark marked the frame malformed (it stopped dissecting somewhere in it). */
  malformed: boolean;
}

function unescapeXml(s: string): string {
  return s.replace(/&#x27;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'").replace(/&amp;/g, '&');
}

/** One entry per `<proto name="proto">` tshark shows (one per PDU, several per frame if any). */
export function pdmlMessages(file: string, proto: string, opts: string[] = []): PdmlMessage[] {
  const pdml = tshark(['-r', file, ...opts, '-Y', proto, '-T', 'pdml']);
  const out: PdmlMessage[] = [];
  for (const packet of pdml.split('<packet>').slice(1)) {
    const frame = Number(/<field name="frame\.number"[^>]*? show="(\d+)"/.exec(packet)?.[1] ?? 0);
    const malformed = packet.includes('<proto name="_ws.malformed"');
    const parts = packet.split('<proto name="');
    for (const part of parts.slice(1)) {
      if (!part.startsWith(`${proto}"`)) continue;
      const fields: [string, string, string][] = [];
      for (const m of part.matchAll(/<field name="([^"]+)" showname="([^"]*)"[^>]*? show="([^"]*)"/g)) {
        fields.push([m[1], unescapeXml(m[2]), unescapeXml(m[3])]);
      }
      out.push({ frame, fields, malformed });
    }
  }
  return out;
}

/** The `show` of the first field named `name`, or undefined. */
export function field(m: PdmlMessage, name: string): string | undefined {
  return m.fields.find((f) => f[0] === name)?.[2];
}
