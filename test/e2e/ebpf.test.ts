// The eBPF path end to end: the agent in live mode traces a real HTTP server and real curl on
// loopback, and l7_flow_log holds their requests with the processes that made them.
import { spawn } from 'node:child_process';
import path from 'node:path';
import test, { ExecutionContext } from 'ava';
import { canTrace, DIST_ROOT, freePort, sleep, startLiveAgent } from '../support/live-agent';

const curlAndPython = async (t: ExecutionContext, hook: 'tracepoints' | 'raw'): Promise<void> => {
  const portBase = 21000 + (process.pid % 300) * 10 + (hook === 'raw' ? 5 : 0);
  const agent = startLiveAgent(['curl', 'python3'], portBase, { syscall_hook: hook });
  const httpPort = await freePort();
  const server = spawn('python3', ['-m', 'http.server', String(httpPort), '--bind', '127.0.0.1', '--directory', path.join(DIST_ROOT, '..')], { stdio: 'ignore' });
  t.teardown(() => {
    server.kill('SIGKILL');
    agent.kill();
  });
  // The tracer is attached once the packet-only gauge reads 0.
  t.true(await agent.waitTraced(), `the socket tracer is attached: ${agent.stderr()}`);
  const where = hook === 'raw' && process.arch === 'x64' ? 'raw_syscalls through tp_btf' : 'syscalls/ tracepoints';
  t.true(agent.stderr('capture').includes(`eBPF socket tracer attached (${where}, data from sock/ tracepoints)`), `ebpf.syscall_hook ${hook} reaches the loader: ${agent.stderr('capture')}`);
  await sleep(1500);
  const paths = ['/README.md', '/package.json', '/no-such-file'];
  const curlPids: number[] = [];
  for (const p of paths) {
    const curl = spawn('curl', ['-s', '-o', '/dev/null', `http://127.0.0.1:${httpPort}${p}`], { stdio: 'ignore' });
    curlPids.push(curl.pid!);
    await new Promise((r) => curl.once('exit', r));
  }
  await sleep(1500);
  // The socket map's size and its sweep are scraped like every other health figure.
  t.true(await agent.metric('capture', /flowtap_held_items\{[^}]*what="ebpf_socket_entries"[^}]*\} (\d+)/) >= 0, 'socket map size exported');
  t.true(await agent.metric('capture', /flowtap_ebpf_socket_entries_reclaimed_total\{[^}]*reason="process_exited"[^}]*\} (\d+)/) >= 0, 'sweep counter exported');
  await agent.stop();

  const logs = agent.records('l7_flow_log').filter((l) => l.signal_source === 'ebpf' && l.server_port === httpPort);
  for (const [k, p] of paths.entries()) {
    const expected = p === '/no-such-file' ? 404 : 200;
    const client = logs.find((l) => l.request_resource === p && l.process_kname_0 === 'curl');
    t.truthy(client, `curl's side of GET ${p}: ${JSON.stringify(logs)}`);
    t.is(client?.process_id_0, curlPids[k], 'the curl process id');
    t.is(client?.request_type, 'GET');
    t.is(client?.response_code, expected, JSON.stringify(logs.map((l) => [l.request_resource, l.process_kname_0, l.process_kname_1, l.response_code, l.response_length])));
    t.true((client?.response_duration ?? 0) > 0);
    const serverSide = logs.find((l) => l.request_resource === p && l.process_kname_1 === 'python3');
    t.truthy(serverSide, `the server's side of GET ${p}`);
    t.is(serverSide?.process_id_1, server.pid, 'the python3 process id');
    t.is(serverSide?.response_code, expected);
  }
};

const maybe = canTrace ? test.serial : test.serial.skip;
maybe('requests between curl and a Python HTTP server appear with their processes, from eBPF', curlAndPython, 'tracepoints');
maybe('the same on the raw_syscalls hook (ebpf.syscall_hook: raw)', curlAndPython, 'raw');
