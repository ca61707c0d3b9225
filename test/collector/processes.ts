// Real processes for the collector tests: `flowtap collector`, and the sender service fed over
// ZeroMQ as quadruple and l7 would feed it.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import YAML from 'yaml';
import { flowtap } from '../../lib/proto';
import { endpointOf, UPSTREAMS } from '../../lib/topology';
import { Kind, Outlet } from '../../lib/transport';
import type { RecordType } from '../../services/sender/columns';
import { KIND_OF_TYPE } from '../../services/sender/frame';
import { ProfileSinkBatch, SinkBatch } from '../../services/sender/sink';

export const FLOWTAP = path.resolve(__dirname, '..', '..', 'bin', 'flowtap.js');
const SENDER = path.resolve(__dirname, '..', '..', 'services', 'sender', 'main.js');

export interface CollectorProcess {
  port: number;
  metricsPort: number;
  child: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** A collector on `db` without retention (captures from different years share the store); `extraArgs` e.g. --clickhouse. */
export function startCollector(db: string, port = 0, extraArgs: string[] = []): Promise<CollectorProcess> {
  const child = spawn(process.execPath, [FLOWTAP, 'collector', '--listen', `127.0.0.1:${port}`, '--sqlite', db, '--metrics-port', '0', '--retention-hours', '0', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FLOWTAP_LOG_LEVEL: 'warn' },
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  const stop = (signal: NodeJS.Signals = 'SIGTERM') => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill(signal);
  });
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout! });
    lines.once('line', (line) => {
      const { listening, metrics } = JSON.parse(line) as { listening: number; metrics: number };
      resolve({ port: listening, metricsPort: metrics, child, stop });
    });
    child.once('exit', (code) => reject(new Error(`collector exited ${code}: ${stderr}`)));
  });
}

export async function scrapeDrops(metricsPort: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^flowtap_drops_total\{[^}]*reason="([^"]+)"[^}]*\} (\d+)/gm)) out[m[1]] = Number(m[2]);
  return out;
}

/** The gauges of flowtap_held_items by `what` (sizes and counts a process reports). */
export async function scrapeHeld(metricsPort: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^flowtap_held_items\{[^}]*what="([^"]+)"[^}]*\} (\d+)/gm)) out[m[1]] = Number(m[2]);
  return out;
}

export interface SenderRun {
  code: number | null;
  stderr: string;
  summary?: Record<string, number>;
}

/**
 * Runs the real sender service once, in replay mode, with `sender` settings, feeds it the
 * batches (profile intervals as capture sends them), ends the stream from every upstream and
 * waits for it to exit.
 */
export async function runSender(workDir: string, sender: Record<string, unknown>, batches: Array<SinkBatch | ProfileSinkBatch>): Promise<SenderRun> {
  const runtimeDir = fs.mkdtempSync(path.join(workDir, 'rt-'));
  fs.chmodSync(runtimeDir, 0o700);
  const configFile = path.join(workDir, `sender-${Date.now()}.yaml`);
  fs.writeFileSync(configFile, YAML.stringify({ log_level: 'warn', sender }));
  const child = spawn(process.execPath, [SENDER], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, FLOWTAP_MODE: 'replay', FLOWTAP_RUNTIME_DIR: runtimeDir, FLOWTAP_CONFIG: configFile, FLOWTAP_METRICS_EPHEMERAL: '1' },
  });
  let stderr = '';
  let summary: Record<string, number> | undefined;
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
  child.on('message', (m: { type: string; counts: Record<string, number> }) => { if (m.type === 'summary') summary = m.counts; });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const out = new Outlet('sender', endpointOf(runtimeDir, 'sender'), 1000);
  for (const b of batches) await out.send(b instanceof ProfileSinkBatch ? Kind.PROFILE_BATCH : KIND_OF_TYPE[b.type as RecordType], b.body);
  for (const source of UPSTREAMS.sender) await out.sendControl(flowtap.Control.Kind.END_OF_STREAM, 0, source);
  const code = await exited;
  out.close();
  fs.rmSync(runtimeDir, { recursive: true, force: true });
  return { code, stderr, summary };
}

export { Kind };
