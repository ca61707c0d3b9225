// Flow map + quadruple stage on real captures: metric sums must equal the L4 logs' sums and
// tshark's own conversation totals, and new_flow must count every flow once.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { flowtap } from '../../lib/proto';
import { FlowMap } from '../../services/flow/flow-map';
import { QuadrupleStage } from '../../services/quadruple/quadruple-stage';
import { CORPUS, batchesFromCapture, conversations, tshark } from '../flow/tshark-packets';

const listCaptures = (dir: string) => fs.readdirSync(path.join(CORPUS, dir), { recursive: true, encoding: 'utf8' })
  .filter((f) => /\.(pcap|pcapng)$/.test(f)).map((f) => path.join(dir, f)).sort();

const files = [...listCaptures('http1'), ...listCaptures('dns'), 'mixed/zeek/wikipedia.pcap'];
for (const rel of files) {
  test(`network_map and L4 log totals equal tshark's: ${rel}`, (t) => {
    const file = path.join(CORPUS, rel);
    const docs: flowtap.IDocument[] = [];
    const logs: flowtap.IL4FlowLog[] = [];
    const q = new QuadrupleStage({ onDocument: (d) => docs.push(d), onL4Log: (l) => logs.push(l) });
    const pending: flowtap.IFlow[] = [];
    const map = new FlowMap({ onFlow: (f) => pending.push(f) });
    for (const b of batchesFromCapture(file).batches) {
      map.processBatch(b);
      q.addFlows(pending.splice(0));
    }
    map.flush();
    q.addFlows(pending.splice(0));
    q.flush();
    t.deepEqual(q.drops, { late_flow_1s: 0, late_flow_1m: 0, late_app_1s: 0, late_app_1m: 0, bad_flow: 0, bad_app: 0, l4_log_throttled: 0 });

    const sumDocs = (table: string, k: keyof flowtap.IFlowMeter, pred: (d: flowtap.IDocument) => boolean = () => true) =>
      docs.filter((d) => d.table === table && pred(d)).reduce((a, d) => a + Number(d.flow_meter![k]), 0);
    const sumLogs = (k: keyof flowtap.IL4FlowLog) => logs.reduce((a, l) => a + Number(l[k]), 0);

    // tshark: every TCP and UDP conversation, both directions.
    let tsharkBytes = 0, tsharkPackets = 0, udpConvs = 0;
    for (const proto of ['tcp', 'udp'] as const) {
      for (const c of conversations(file, proto)) {
        tsharkBytes += c.bytesAtoB + c.bytesBtoA;
        tsharkPackets += c.framesAtoB + c.framesBtoA;
        if (proto === 'udp') udpConvs++;
      }
    }
    const tcpStreams = new Set(tshark(['-r', file, '-Y', 'tcp', '-T', 'fields', '-e', 'tcp.stream']).split('\n').filter(Boolean)).size;
    const tcpUdp = (d: flowtap.IDocument) => d.protocol === 6 || d.protocol === 17;
    for (const table of ['network_map.1m', 'network_map.1s']) {
      t.is(sumDocs(table, 'byte_tx'), sumLogs('byte_tx'), `${table} byte_tx = L4 logs`);
      t.is(sumDocs(table, 'byte_rx'), sumLogs('byte_rx'), `${table} byte_rx = L4 logs`);
      t.is(sumDocs(table, 'byte_tx', tcpUdp) + sumDocs(table, 'byte_rx', tcpUdp), tsharkBytes, `${table} bytes = tshark conv`);
      t.is(sumDocs(table, 'packet_tx', tcpUdp) + sumDocs(table, 'packet_rx', tcpUdp), tsharkPackets, `${table} packets = tshark conv`);
    }
    t.is(sumDocs('network.1m', 'byte_tx', (d) => d.side === 'client'), sumDocs('network.1m', 'byte_rx', (d) => d.side === 'server'));
    t.is(sumDocs('network.1m', 'byte_tx', (d) => d.side === 'server'), sumLogs('byte_rx'));
    const flowIds = new Set(logs.map((l) => Number(l.flow_id)));
    const tcpUdpFlows = new Set(logs.filter((l) => l.protocol === 6 || l.protocol === 17).map((l) => Number(l.flow_id)));
    t.is(sumDocs('network_map.1m', 'new_flow'), flowIds.size, 'new_flow = flows');
    t.is(sumDocs('network_map.1s', 'new_flow'), flowIds.size);
    t.is(sumDocs('network_map.1m', 'closed_flow'), flowIds.size);
    t.is(tcpUdpFlows.size, tcpStreams + udpConvs, 'flows = tshark tcp streams + udp conversations');
    t.is(logs.filter((l) => l.close_type !== 'forced_report').length, flowIds.size, 'one closing L4 log per flow');
    t.true(logs.every((l) => l.close_type !== ''));
  });
}
