// close() stops delivery at once and detaches in the background (each link waits for a grace
// period: seconds in all). Its promise must settle only when the kernel objects are gone, so that
// a caller that awaits it (the overhead bench, a restart) knows no program of the old tracer
// runs any more. Observed from this process's own fds: a link, program or map fd exists while
// anything of the tracer is alive, and only this test file's process holds them.
import test from 'ava';
import fs from 'node:fs';
import { EbpfProfiler, ebpfStatus } from '../../native/ebpf';
import { EbpfCollector } from '../../services/capture/ebpf-collector';

const available = ebpfStatus();
const maybe = available.available ? test.serial : test.serial.skip;
if (!available.available) console.log(available.message);

/** This process's BPF and perf-event fds, by kind (bpf_link, bpf-prog, bpf-map, [perf_event]). */
function bpfFds(): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the directory's own fd, closed by now
    }
    const kind = /^anon_inode:(bpf[-_]\w+|\[perf_event\])$/.exec(target)?.[1];
    if (kind) kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return kinds;
}

maybe('the socket tracer\'s close() settles once its links, programs and maps are gone', async (t) => {
  t.deepEqual(bpfFds(), {}, 'no BPF object before the start');
  const collector = EbpfCollector.start({ capBytes: 256 }, () => undefined);
  t.is(collector.packetOnly, 0, collector.statusMessage);
  const running = bpfFds();
  t.true((running.bpf_link ?? 0) >= 18 && (running['bpf-prog'] ?? 0) >= 18 && (running['bpf-map'] ?? 0) > 0, JSON.stringify(running));

  const started = Date.now();
  const detached = collector.close();
  t.true((bpfFds().bpf_link ?? 0) > 0, 'close() itself does not wait for the detaching');
  await detached;
  t.deepEqual(bpfFds(), {}, `nothing left once close() settled (after ${Date.now() - started} ms)`);
  await collector.close(); // a second close settles at once
});

maybe('the profiler\'s close() settles once its perf events are detached', async (t) => {
  const profiler = EbpfProfiler.open({ frequency: 99 });
  t.true((bpfFds()['[perf_event]'] ?? 0) > 0);
  await profiler.close();
  t.deepEqual(bpfFds(), {});
});
