// The flow service: MetaPacket batches in; per-second flow reports to quadruple and L4 payloads
// with their flow context to l7. Protocol inference happens here (see docs/architecture.md).
import { PacketBatch } from '../../lib/packet-batch';
import { flowtap } from '../../lib/proto';
import { BatchOut, kindName, runService } from '../../lib/service';
import { Kind } from '../../lib/transport';
import { ProtocolInference } from '../l7/inference';
import { FlowMap } from './flow-map';

const SECOND_US = 1_000_000;

void runService({
  name: 'flow',
  async setup(ctx) {
    const { flow: cfg, transport, capture } = ctx.config;
    const batch = new PacketBatch(transport.batch_size, capture.payload_cut);
    const inference = new ProtocolInference();
    const flows = new BatchOut<flowtap.IFlow>(ctx, 'quadruple', Kind.FLOW_BATCH, (f) => flowtap.FlowBatch.encode({ flows: f }).finish());
    const payloads = new BatchOut<flowtap.IAppPayload>(ctx, 'l7', Kind.APP_PAYLOAD_BATCH, (items) => flowtap.AppPayloadBatch.encode({ items }).finish());
    const onFlow = (f: flowtap.IFlow) => {
      flows.push(f);
      if (f.is_closed) {
        inference.forget(Number(f.flow_id));
        // Behind the flow's last payloads: l7 can end its sessions instead of waiting them out.
        payloads.push({ flow_id: f.flow_id, timestamp_us: f.end_time, flow_closed: true });
      }
    };
    const map: FlowMap = new FlowMap(
      { onFlow, onAppPayload: payloads.push },
      (flowId, payload, fromClient, protocol, serverPort): string => inference.infer(flowId, payload, fromClient, protocol, serverPort, map.nowUs),
      {
        maxFlows: cfg.max_flows,
        serverPorts: new Set(cfg.server_ports),
        vlanInKey: cfg.vlan_in_key,
        lastPayloadKind: () => inference.lastCheck,
        timeouts: {
          establishedUs: cfg.timeouts.established * SECOND_US,
          openingUs: cfg.timeouts.opening * SECOND_US,
          closingUs: cfg.timeouts.closing * SECOND_US,
          finUs: cfg.timeouts.fin * SECOND_US,
          rstUs: cfg.timeouts.rst * SECOND_US,
          openingRstUs: cfg.timeouts.opening_rst * SECOND_US,
          udpUs: cfg.timeouts.udp * SECOND_US,
          otherUs: cfg.timeouts.others * SECOND_US,
        },
      },
    );
    ctx.metrics.trackDrops('flow_', () => map.drops);
    ctx.metrics.trackDrops('inference_', () => ({
      flow_evicted: inference.counters.flow_evicted,
      server_evicted: inference.counters.server_evicted,
    }));
    ctx.metrics.trackSize('flows_open', () => map.flowsOpen);
    ctx.metrics.trackSize('flow_reports_queued', () => flows.size);
    ctx.metrics.trackSize('app_payloads_queued', () => payloads.size);
    ctx.metrics.trackSize('inference_flows', () => inference.flowCount);

    // Downstream time moves in whole seconds of packet time: every report of a second is sent
    // before the tick that tells l7 and quadruple the second is over.
    let tickedSecond = -1;
    const sendAll = async () => {
      await payloads.flush(true);
      await flows.flush(true);
    };
    const tickIfNewSecond = async () => {
      const second = Math.floor(map.nowUs / SECOND_US);
      if (second <= tickedSecond) return;
      await sendAll();
      if (tickedSecond >= 0) await ctx.broadcastControl(flowtap.Control.Kind.TICK, map.nowUs);
      tickedSecond = second;
    };

    return {
      async onBatch(kind, body) {
        if (kind !== Kind.PACKET_BATCH) throw new Error(`flow does not take ${kindName(kind)}`);
        batch.decode(body);
        ctx.metrics.recordsIn.inc({ kind: kindName(kind) }, batch.count);
        map.processBatch(batch);
        await tickIfNewSecond();
        await payloads.flush();
        await flows.flush();
      },
      async onTick(timeUs) {
        map.advance(timeUs);
        await sendAll();
      },
      async onEndOfStream() {
        map.flush();
        await sendAll();
        tickedSecond = -1;
      },
    };
  },
});
