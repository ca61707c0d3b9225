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
    // A service bounds its own stop: at most 4 s for the end of the stream, then 10 s before it
    // exits regardless; capture also waits for the kernel to detach the eBPF programs (about
    // 3.5 s). pm2 kills only one that has overrun all of that.
    kill_timeout: 15000,
    // No @pm2/io in the services: they export their own metrics, and its timers would keep a
    // finished service alive.
    pmx: false,
    merge_logs: true,
    time: false,
    env: { FLOWTAP_CONFIG: config, NODE_ENV: 'production' },
  })),
};
