#!/usr/bin/env node
// `npm start`: install what is missing, build, and start the five services under pm2.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const run = (cmd, args) => execFileSync(cmd, args, { stdio: 'inherit', cwd: root });
const has = (cmd, args) => spawnSync(cmd, args, { stdio: 'ignore' }).status === 0;

// Debian packages the build needs (libpcap compiles capture filters to classic BPF).
const APT = ['libpcap-dev', 'build-essential', 'python3'];
const missing = APT.filter((p) => !has('dpkg', ['-s', p]));
if (missing.length > 0) {
  if (process.getuid && process.getuid() !== 0) {
    console.error(`flowtap needs these Debian packages: ${missing.join(' ')} (run as root, or install them)`);
    process.exit(1);
  }
  run('apt-get', ['update', '-q']);
  run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing]);
}
if (!fs.existsSync(path.join(root, 'node_modules', '.bin', 'pm2'))) run('npm', ['ci', '--no-audit', '--no-fund']);
run(process.execPath, [path.join(root, 'scripts', 'build.js')]);
run(path.join(root, 'node_modules', '.bin', 'pm2'), ['start', path.join(root, 'ecosystem.config.js')]);
console.log(`
flowtap is running under pm2 (npm stop to stop it; npx pm2 logs for its logs).
  output:  ${path.join(root, 'data')}/{l4_flow_log,l7_flow_log,metrics}.jsonl
  metrics: http://127.0.0.1:9101-9105/metrics (capture, flow, quadruple, l7, sender)
  config:  ${process.env.FLOWTAP_CONFIG || path.join(root, 'flowtap.yaml')}
`);
