#!/usr/bin/env node
// The `flowtap` command.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { COLLECTOR_USAGE, runCollector, UsageError } from './collector';
import { QUERY_USAGE, QueryError, runQuery } from './query';
import { replay, ReplayError } from './replay';
import { runTop, TOP_USAGE } from './top';

const USAGE = `usage:
  flowtap replay <capture file> --out <dir> [--config <file>]
      run the five services over one pcap/pcapng(.gz) file and write
      <dir>/l4_flow_log.jsonl, <dir>/l7_flow_log.jsonl, <dir>/metrics.jsonl
  flowtap start | stop | status
      the live agent under pm2 (ecosystem.config.js)
${QUERY_USAGE.replace('usage:\n', '')}${TOP_USAGE.replace('usage:\n', '')}${COLLECTOR_USAGE.replace('usage:\n', '')}`;

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const value = args[i + 1];
  if (!value || value.startsWith('--')) throw new ReplayError(`${name} needs a value\n${USAGE}`, 2);
  args.splice(i, 2);
  return value;
}

function progressBar(fraction: number, packets: number): void {
  const width = 30;
  const done = Math.max(0, Math.min(width, Math.round(fraction * width)));
  process.stderr.write(`\r[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${(fraction * 100).toFixed(0).padStart(3)}%  ${packets} packets`);
}

async function cmdReplay(args: string[]): Promise<void> {
  const outDir = option(args, '--out');
  const configFile = option(args, '--config');
  const file = args[0];
  if (!file || !outDir || args.length > 1) throw new ReplayError(USAGE, 2);
  const tty = process.stderr.isTTY;
  const summary = await replay({ file, outDir, configFile, onProgress: tty ? progressBar : undefined, logLevel: 'warn' });
  if (tty) process.stderr.write('\n');
  console.log(
    `${summary.packets} packets, ${summary.flows} flows, ${summary.l7Records} L7 records, ` +
      `${summary.seconds.toFixed(2)} s, ${Math.round(summary.packetsPerSecond)} packets/s`,
  );
}

function pm2(args: string[]): void {
  const root = path.join(__dirname, '..', '..');
  const bin = path.join(root, 'node_modules', '.bin', 'pm2');
  const res = spawnSync(bin, [...args], { stdio: 'inherit', cwd: root });
  process.exitCode = res.status ?? 1;
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...args] = argv;
  switch (cmd) {
    case 'replay':
      return cmdReplay(args);
    case 'start':
      return pm2(['start', 'ecosystem.config.js']);
    case 'stop':
      return pm2(['delete', 'ecosystem.config.js']);
    case 'status':
      return pm2(['status']);
    case 'query':
      return runQuery(args);
    case 'top':
      return runTop(args);
    case 'collector':
      return runCollector(args);
    default:
      throw new ReplayError(USAGE, 2);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof QueryError || err instanceof UsageError) {
    process.stderr.write(`flowtap: ${err.message}\n`);
    process.exit(2);
  }
  if (err instanceof ReplayError) {
    process.stderr.write(`flowtap: ${err.message}\n`);
    process.exit(err.exitCode);
  }
  process.stderr.write(`flowtap: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
