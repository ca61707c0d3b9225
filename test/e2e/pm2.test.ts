// The five services under real pm2 from ecosystem.config.js, scraped by a real Prometheus.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test from 'ava';
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

test('pm2 runs the five services from ecosystem.config.js and Prometheus scrapes each /metrics', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-pm2-'));
  const ports = Object.fromEntries(SERVICES.map((s, i) => [s, BASE_PORT + i]));
  const config = path.join(dir, 'flowtap.yaml');
  fs.writeFileSync(config, [
    `runtime_dir: ${path.join(dir, 'run')}`,
    'metrics:',
    `  ports: ${JSON.stringify(ports)}`,
    'capture:',
    '  source: file',
    `  file: ${corpusFile('http1/zeek/methods.pcap')}`,
    'sender:',
    `  output_dir: ${path.join(dir, 'data')}`,
    '',
  ].join('\n'));
  const env = { ...process.env, PM2_HOME: path.join(dir, 'pm2'), FLOWTAP_CONFIG: config };
  const pm2 = (...args: string[]) => execFileSync(PM2, args, { env, cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  let prometheus: ReturnType<typeof spawn> | undefined;
  t.teardown(() => {
    prometheus?.kill('SIGKILL');
    try { pm2('kill'); } catch { /* already gone */ }
    fs.rmSync(dir, { recursive: true, force: true });
  });

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
