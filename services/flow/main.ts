// The flow service: MetaPacket batches in; per-second flow reports to quadruple and L4 payloads
// with their flow context to l7. Protocol inference happens here (see docs/architecture.md).
import { ServiceName } from '../../lib/config';
import { PacketBatch } from '../../lib/packet-batch';
import { flowtap } from '../../lib/proto';
import { kindName, runService, ServiceContext } from '../../lib/service';
import { Kind } from '../../lib/transport';
import { ProtocolInference } from '../l7/inference';
import { FlowMap } from './flow-map';
import { FlowReport, PayloadReport } from './flow-report';
import { AppPayloadBatchEncoder, BatchEncoder, FlowBatchEncoder } from './report-encoder';

const SECOND_US = 1_000_000;

/** Batches encoded as their records come (see report-encoder.ts), queued until flushed. */
class EncodedBatchOut {
  private readonly ready: Array<{ body: Uint8Array; records: number }> = [];
  private readyRecords = 0;

  constructor(private readonly ctx: ServiceContext, private readonly target: ServiceName, private readonly kind: number,
    readonly encoder: BatchEncoder) {}

  /** Records encoded and not yet sent. */
  get size(): number {
    return this.readyRecords + this.encoder.count;
  }

  /** Closes the batch being written once it holds batchSize records (call after each add). */
  cutIfFull(): void {
    if (this.encoder.count >= this.encoder.batchSize) this.cut();
  }

  /** Sends the full batches; with `all`, the partial last one too. */
  async flush(all = false): Promise<void> {
    if (all && this.encoder.count > 0) this.cut();
    while (this.ready.length > 0) {
      const batch = this.ready.shift()!;
      this.readyRecords -= batch.records;
      await this.ctx.send(this.target, this.kind, batch.body, batch.records);
    }
  }

  private cut(): void {
    const records = this.encoder.count;
    this.ready.push({ body: this.encoder.take(), records });
    this.readyRecords += records;
  }
}

void runService({
  name: 'flow',
  async setup(ctx) {
    const { flow: cfg, transport, capture } = ctx.config;
    const batch = new PacketBatch(transport.batch_size, capture.payload_cut);
    const inference = new ProtocolInference();
    const flowEncoder = new FlowBatchEncoder(transport.batch_size);
    const payloadEncoder = new AppPayloadBatchEncoder(transport.batch_size);
    const flows = new EncodedBatchOut(ctx, 'quadruple', Kind.FLOW_BATCH, flowEncoder);
    const payloads = new EncodedBatchOut(ctx, 'l7', Kind.APP_PAYLOAD_BATCH, payloadEncoder);
    const onFlowReport = (f: FlowReport) => {
      flowEncoder.add(f);
      flows.cutIfFull();
      if (f.is_closed) {
        // Behind the flow's last payloads: l7 can end its sessions instead of waiting them out.
        payloadEncoder.addFlowClosed(f.flow_id, f.end_time);
        payloads.cutIfFull();
      }
    };
    const onPayloadReport = (p: PayloadReport) => {
      payloadEncoder.add(p);
      payloads.cutIfFull();
    };
    const map: FlowMap = new FlowMap(
      { onFlowReport, onPayloadReport },
      // The flow map keeps each flow's protocol and tries in its slots: inference needs no flow table.
      (_flowId, payload, fromClient, protocol, serverPort): string => inference.inferPayload(payload, fromClient, protocol, serverPort, map.nowUs),
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
    ctx.metrics.trackDrops('inference_', () => ({ server_evicted: inference.counters.server_evicted }));
    ctx.metrics.trackSize('flows_open', () => map.flowsOpen);
    ctx.metrics.trackSize('flow_reports_queued', () => flows.size);
    ctx.metrics.trackSize('app_payloads_queued', () => payloads.size);

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
