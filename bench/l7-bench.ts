// l7 benchmark: replays a recording of what the l7 process took in a replay (every message, ticks
// included, in order) through L7Input, which is what services/l7/main.ts runs, without sockets, and
// prints CPU seconds per round. Make a recording, then run:
//   FLOWTAP_L7_RECORD=/tmp/l7-input.bin node dist/bin/flowtap.js replay <capture> --out <dir>
//   node dist/bench/l7-bench.js /tmp/l7-input.bin [rounds]
import { flowtap } from '../lib/proto';
import { Kind } from '../lib/transport';
import { L7Input } from '../services/l7/l7-input';
import { readRecording, type RecordedMessage } from '../services/l7/recording';

interface RoundResult { logs: number; meters: number; logBytes: number; meterBytes: number }

/** One pass over the recording with a new L7Input, configured as the defaults configure the service. */
function run(messages: readonly RecordedMessage[]): RoundResult {
  const r: RoundResult = { logs: 0, meters: 0, logBytes: 0, meterBytes: 0 };
  const input = new L7Input({
    l7LogPerSecond: 10_000, maxSessions: 65536, batchSize: 1024,
    sessionTimeoutUs: { DNS: 15e6, TLS: 15e6 }, defaultSessionTimeoutUs: 120e6,
    sendLogs: (body, n) => { r.logs += n; r.logBytes += body.length; },
    sendMeters: (body, n) => { r.meters += n; r.meterBytes += body.length; },
  });
  for (const m of messages) {
    if (m.kind !== Kind.CONTROL) { input.batch(m.kind, m.body); continue; }
    const c = flowtap.Control.decode(m.body);
    if (c.kind === flowtap.Control.Kind.TICK) input.tick(c.time_us);
    else input.end();
  }
  return r;
}

const file = process.argv[2];
if (!file) throw new Error('usage: node dist/bench/l7-bench.js <recording> [rounds]');
const rounds = Number(process.argv[3] ?? 5);
const messages = readRecording(file);
for (let k = 0; k < rounds; k++) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const res = run(messages);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const c = process.cpuUsage(c0);
  // CPU time counts every thread of the process (JIT compilers and GC helpers too).
  console.log(`round ${k + 1}: ${messages.length} messages -> ${res.logs} L7 logs (${res.logBytes} B), ` +
    `${res.meters} app meters (${res.meterBytes} B); cpu ${((c.user + c.system) / 1e6).toFixed(2)} s, wall ${wall.toFixed(2)} s`);
}
