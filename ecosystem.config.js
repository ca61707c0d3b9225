// pm2 runs each flowtap service as its own process: `npm start` / `npm stop`.
// FLOWTAP_CONFIG names the YAML config (default: flowtap.yaml beside this file).
'use strict';
const path = require('node:path');

const config = process.env.FLOWTAP_CONFIG || path.join(__dirname, 'flowtap.yaml');

// Memory limits per service: flow and l7 hold per-flow and per-session state, the others little.
const services = [
  { name: 'capture', memory: '512M' },
  { name: 'flow', memory: '1G' },
  { name: 'quadruple', memory: '768M' },
  { name: 'l7', memory: '1G' },
  { name: 'sender', memory: '512M' },
];

module.exports = {
  apps: services.map(({ name, memory }) => ({
    name: `flowtap-${name}`,
    script: path.join(__dirname, 'dist', 'services', name, 'main.js'),
    cwd: __dirname,
    exec_mode: 'fork',
    instances: 1,
    autorestart: true,
    max_restarts: 20,
    min_uptime: '5s',
    exp_backoff_restart_delay: 200,
    max_memory_restart: memory,
    kill_timeout: 5000,
    merge_logs: true,
    time: false,
    env: { FLOWTAP_CONFIG: config, NODE_ENV: 'production' },
  })),
};
