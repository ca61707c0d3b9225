// Runs the real `flowtap replay` (five processes over ZeroMQ) and reads what it wrote.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const FLOWTAP = path.resolve(__dirname, '..', '..', 'bin', 'flowtap.js');

export interface ReplayResult {
  code: number;
  stdout: string;
  stderr: string;
  outDir: string;
  l4: Array<Record<string, any>>;
  l7: Array<Record<string, any>>;
  metrics: Array<Record<string, any>>;
}

function readJsonl(file: string): Array<Record<string, any>> {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

export function runFlowtap(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FLOWTAP, ...args], { env: { ...process.env, ...env }, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

export async function replayFile(file: string, extraArgs: string[] = []): Promise<ReplayResult> {
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'flowtap-test-'));
  const r = await runFlowtap(['replay', file, '--out', outDir, ...extraArgs]);
  const result = {
    ...r,
    outDir,
    l4: readJsonl(path.join(outDir, 'l4_flow_log.jsonl')),
    l7: readJsonl(path.join(outDir, 'l7_flow_log.jsonl')),
    metrics: readJsonl(path.join(outDir, 'metrics.jsonl')),
  };
  fs.rmSync(outDir, { recursive: true, force: true });
  return result;
}
