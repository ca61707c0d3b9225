// The five services under real pm2 from ecosystem.config.js, scraped by a real Prometheus.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { ExecutionContext } from 'ava';
import { corpusFile } from '../support/tshark';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const PM2 = path.join(ROOT, 'node_modules', '.bin', 'pm2');
const SERVICES = ['capture', 'flow', 'quadruple', 'l7', 'sender'];
const BASE_PORT = 19300 + (process.pid % 100) * 10;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function fetchText(url: string): Promise<string | undefined> {
  try {
    const res = await fetch(url);
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}

/** A pm2 of its own (PM2_HOME in a temp dir) for a config whose `capture:` section is given. */
function pm2Setup(t: ExecutionContext, basePort: number, capture: string[]) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-pm2-'));
  const ports = Object.fromEntries(SERVICES.map((s, i) => [s, basePort + i]));
  const config = path.join(dir, 'flowtap.yaml');
  fs.writeFileSync(config, [
    `runtime_dir: ${path.join(dir, 'run')}`,
    'metrics:',
    `  ports: ${JSON.stringify(ports)}`,
    'capture:',
    ...capture.map((line) => `  ${line}`),
    'sender:',
    `  output_dir: ${path.join(dir, 'data')}`,
    '',
  ].join('\n'));
  const home = path.join(dir, 'pm2');
  const env = { ...process.env, PM2_HOME: home, FLOWTAP_CONFIG: config };
  const pm2 = (...args: string[]) => execFileSync(PM2, args, { env, cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    try { pm2('kill'); } catch { /* already gone */ }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { dir, ports, home, pm2 };
}

test.serial('pm2 runs the five services from ecosystem.config.js and Prometheus scrapes each /metrics', async (t) => {
  const { dir, ports, pm2 } = pm2Setup(t, BASE_PORT, ['source: file', `file: ${corpusFile('http1/zeek/methods.pcap')}`]);
  let prometheus: ReturnType<typeof spawn> | undefined;
  t.teardown(() => prometheus?.kill('SIGKILL'));

  pm2('start', path.join(ROOT, 'ecosystem.config.js'));
  const list = JSON.parse(pm2('jlist')) as Array<{ name: string; pm2_env: { status: string; max_memory_restart?: number } }>;
  t.deepEqual(list.map((p) => p.name).sort(), SERVICES.map((s) => `flowtap-${s}`).sort());

  // Each service answers /metrics on its configured port with its own series.
  for (const svc of SERVICES) {
    let body: string | undefined;
    for (let i = 0; i < 100 && !body; i++) {
      body = await fetchText(`http://127.0.0.1:${ports[svc]}/metrics`);
      if (!body) await sleep(100);
    }
    t.truthy(body, `${svc} serves /metrics`);
    t.regex(body!, new RegExp(`flowtap_batches_in_total|flowtap_batches_out_total`), svc);
    t.regex(body!, new RegExp(`service="${svc}"`), svc);
    t.regex(body!, /flowtap_process_cpu_seconds_total/, `${svc} exports Node process metrics`);
  }

  // The capture file went through all five processes: the sender wrote flows.
  const l4 = path.join(dir, 'data', 'l4_flow_log.jsonl');
  for (let i = 0; i < 100 && !(fs.existsSync(l4) && fs.statSync(l4).size > 0); i++) await sleep(100);
  t.true(fs.readFileSync(l4, 'utf8').split('\n').filter(Boolean).length >= 49, 'the flows of methods.pcap reached the sender');

  // A real Prometheus scrapes all five targets.
  const promPort = BASE_PORT + 9;
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), [
    'global: { scrape_interval: 1s, scrape_timeout: 1s }',
    'scrape_configs:',
    '  - job_name: flowtap',
    `    static_configs: [{ targets: [${SERVICES.map((s) => `"127.0.0.1:${ports[s]}"`).join(', ')}] }]`,
    '',
  ].join('\n'));
  prometheus = spawn('prometheus', [
    `--config.file=${path.join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${path.join(dir, 'tsdb')}`,
    `--web.listen-address=127.0.0.1:${promPort}`,
  ], { stdio: 'ignore' });
  let up: Array<{ metric: { instance: string; service?: string }; value: [number, string] }> = [];
  for (let i = 0; i < 60; i++) {
    await sleep(500);
    const text = await fetchText(`http://127.0.0.1:${promPort}/api/v1/query?query=up`);
    if (!text) continue;
    up = (JSON.parse(text) as { data: { result: typeof up } }).data.result;
    if (up.length === SERVICES.length && up.every((r) => r.value[1] === '1')) break;
  }
  t.is(up.length, SERVICES.length, 'Prometheus has five targets');
  t.true(up.every((r) => r.value[1] === '1'), `every target is up: ${JSON.stringify(up)}`);
  const drops = await fetchText(`http://127.0.0.1:${promPort}/api/v1/query?query=flowtap_batches_in_total`);
  t.truthy(drops && JSON.parse(drops).data.result.length > 0, 'Prometheus stored flowtap series');
});

// pm2 stops the services one after another, upstream first, so each stage sees the end of the
// stream before its own signal; and a live capture with the eBPF tracer takes seconds to exit
// while the kernel detaches its programs. Every service must still drain and exit 0 on its own,
// none killed by pm2, and the flows seen before the stop must reach the sender.
test.serial('pm2 stop of a live capture: every service drains and exits 0, and the flows before the stop are written', async (t) => {
  t.timeout(90_000);
  const { dir, ports, home, pm2 } = pm2Setup(t, BASE_PORT + 5, ['source: live', 'interfaces: [lo]']);
  pm2('start', path.join(ROOT, 'ecosystem.config.js'));
  let capture: string | undefined;
  for (let i = 0; i < 100 && !/flowtap_held_items\{what="interfaces_open"[^}]*\} 1/.test(capture ?? ''); i++) {
    await sleep(100);
    capture = await fetchText(`http://127.0.0.1:${ports.capture}/metrics`);
  }
  t.regex(capture ?? '', /flowtap_held_items\{what="interfaces_open"[^}]*\} 1/, 'capturing on lo');
  const ebpf = /flowtap_ebpf_packet_only\S* 0/.test(capture ?? '');
  t.log(ebpf ? 'with the eBPF socket tracer' : 'packet-only (no eBPF on this machine)');
  // Traffic on lo that the capture sees: a few scrapes of flow's /metrics, one TCP connection each.
  for (let i = 0; i < 3; i++) t.truthy(await fetchText(`http://127.0.0.1:${ports.flow}/metrics`));
  await sleep(500);

  pm2('stop', path.join(ROOT, 'ecosystem.config.js'));
  const log = fs.readFileSync(path.join(home, 'pm2.log'), 'utf8');
  for (const svc of SERVICES) {
    t.regex(log, new RegExp(`App \\[flowtap-${svc}:\\d+\\] exited with code \\[0\\]`), `${svc} exited 0`);
    const own = fs.readdirSync(path.join(home, 'logs')).filter((f) => f.startsWith(`flowtap-${svc}-`))
      .map((f) => fs.readFileSync(path.join(home, 'logs', f), 'utf8')).join('');
    t.regex(own, /"msg":"drained; exiting"/, `${svc} drained`);
    t.notRegex(own, /drain timeout|no end of stream from upstream in time|still running 10 s/, `${svc} needed no timeout`);
  }
  t.notRegex(log, /SIGKILL/, 'pm2 killed no service');
  t.notRegex(log, /exited with code \[[1-9]/, 'no service failed');
  const flows = fs.readFileSync(path.join(dir, 'data', 'l4_flow_log.jsonl'), 'utf8').split('\n').filter(Boolean)
    .map((l) => JSON.parse(l) as { server_port?: number });
  t.true(flows.some((f) => f.server_port === ports.flow), `the scrapes' flows were written at the stop (${flows.length} flows)`);
});
