// The agent's configuration: defaults for everything here, overridden by a YAML file.
// Validation is strict (unknown keys and wrong types are errors naming the key), because a
// typo in a config file that is silently ignored is worse than an agent that refuses to start.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import YAML from 'yaml';

export const SERVICES = ['capture', 'flow', 'quadruple', 'l7', 'sender'] as const;
export type ServiceName = (typeof SERVICES)[number];

export interface Config {
  log_level: 'debug' | 'info' | 'warn' | 'error';
  /** ZeroMQ IPC sockets live here; created with mode 0700. */
  runtime_dir: string;
  metrics: {
    listen_address: string;
    ports: Record<ServiceName, number>;
  };
  transport: {
    /** Messages (batches) queued per socket before the sender waits. */
    high_water_mark: number;
    /** Records per output batch. */
    batch_size: number;
  };
  capture: {
    /** "live": AF_PACKET on `interfaces`; "file": replay `file` once. */
    source: 'live' | 'file';
    file: string;
    /** Names, or patterns with * (e.g. "eth*"); empty: every interface that is up, except lo. */
    interfaces: string[];
    /** tcpdump-style capture filter, compiled to classic BPF. */
    filter: string;
    payload_cut: number;
    snap_len: number;
    promisc: boolean;
    fanout_group: number;
    ring_block_size: number;
    ring_block_count: number;
    ring_frame_size: number;
    ring_block_timeout_ms: number;
    /** How often a tick advances time downstream when the wire is idle. */
    tick_interval_ms: number;
  };
  flow: {
    max_flows: number;
    /** Ports that are servers whatever the packets say (when no SYN was seen). */
    server_ports: number[];
    timeouts: {
      established: number;
      opening: number;
      closing: number;
      rst: number;
      udp: number;
      others: number;
    };
  };
  quadruple: {
    late_tolerance_1s: number;
    late_tolerance_1m: number;
    l4_log_per_second: number;
  };
  l7: {
    max_sessions: number;
    l7_log_per_second: number;
    session_timeout: { dns: number; tls: number; others: number };
  };
  sender: {
    sinks: Array<'jsonl'>;
    output_dir: string;
  };
}

export function defaultConfig(): Config {
  return {
    log_level: 'info',
    runtime_dir: path.join(os.tmpdir(), `flowtap-${process.getuid?.() ?? 0}`),
    metrics: {
      listen_address: '127.0.0.1',
      ports: { capture: 9101, flow: 9102, quadruple: 9103, l7: 9104, sender: 9105 },
    },
    transport: { high_water_mark: 1000, batch_size: 1024 },
    capture: {
      source: 'live',
      file: '',
      interfaces: [],
      filter: '',
      payload_cut: 1024,
      snap_len: 65535,
      promisc: true,
      fanout_group: 0,
      ring_block_size: 1 << 20,
      ring_block_count: 64,
      ring_frame_size: 65536,
      ring_block_timeout_ms: 100,
      tick_interval_ms: 1000,
    },
    flow: {
      max_flows: 65535,
      server_ports: [],
      timeouts: { established: 300, opening: 5, closing: 5, rst: 35, udp: 5, others: 5 },
    },
    quadruple: { late_tolerance_1s: 9, late_tolerance_1m: 69, l4_log_per_second: 10000 },
    l7: { max_sessions: 65536, l7_log_per_second: 10000, session_timeout: { dns: 15, tls: 15, others: 120 } },
    sender: { sinks: ['jsonl'], output_dir: 'data' },
  };
}

export class ConfigError extends Error {}

const ENUMS: Record<string, readonly string[]> = {
  log_level: ['debug', 'info', 'warn', 'error'],
  'capture.source': ['live', 'file'],
  'sender.sinks[]': ['jsonl'],
};

/** Merges `user` over `defaults`, checking every key and type against the defaults. */
function merge(defaults: unknown, user: unknown, where: string): unknown {
  const kind = (v: unknown) => (Array.isArray(v) ? 'list' : v === null ? 'null' : typeof v);
  if (kind(user) !== kind(defaults)) {
    throw new ConfigError(`${where}: expected ${kind(defaults)}, got ${kind(user)} (${JSON.stringify(user)})`);
  }
  if (Array.isArray(defaults)) {
    const items = user as unknown[];
    const allowed = ENUMS[`${where}[]`];
    return items.map((item, i) => {
      if (typeof item !== 'string' && typeof item !== 'number') {
        throw new ConfigError(`${where}[${i}]: expected a string or number`);
      }
      if (allowed && !allowed.includes(String(item))) {
        throw new ConfigError(`${where}[${i}]: "${item}" is not one of ${allowed.join(', ')}`);
      }
      return item;
    });
  }
  if (typeof defaults === 'object' && defaults !== null) {
    const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
    for (const [key, value] of Object.entries(user as Record<string, unknown>)) {
      const at = where ? `${where}.${key}` : key;
      if (!(key in out)) throw new ConfigError(`${at}: unknown setting`);
      out[key] = merge(out[key], value, at);
    }
    return out;
  }
  const allowed = ENUMS[where];
  if (allowed && !allowed.includes(String(user))) {
    throw new ConfigError(`${where}: "${user}" is not one of ${allowed.join(', ')}`);
  }
  return user;
}

function check(cfg: Config): void {
  const positive = (v: number, at: string) => {
    if (!Number.isFinite(v) || v <= 0) throw new ConfigError(`${at}: must be a positive number, got ${v}`);
  };
  for (const svc of SERVICES) {
    const port = cfg.metrics.ports[svc];
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new ConfigError(`metrics.ports.${svc}: must be a port number (0-65535), got ${port}`);
    }
  }
  positive(cfg.transport.high_water_mark, 'transport.high_water_mark');
  positive(cfg.transport.batch_size, 'transport.batch_size');
  positive(cfg.capture.payload_cut, 'capture.payload_cut');
  if (cfg.capture.payload_cut > 65535) throw new ConfigError('capture.payload_cut: at most 65535');
  positive(cfg.capture.snap_len, 'capture.snap_len');
  positive(cfg.capture.tick_interval_ms, 'capture.tick_interval_ms');
  if (cfg.capture.source === 'file' && !cfg.capture.file) {
    throw new ConfigError('capture.file: required when capture.source is "file"');
  }
  positive(cfg.flow.max_flows, 'flow.max_flows');
  for (const [k, v] of Object.entries(cfg.flow.timeouts)) positive(v, `flow.timeouts.${k}`);
  for (const p of cfg.flow.server_ports) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new ConfigError(`flow.server_ports: ${p} is not a port`);
  }
  positive(cfg.quadruple.l4_log_per_second, 'quadruple.l4_log_per_second');
  positive(cfg.l7.l7_log_per_second, 'l7.l7_log_per_second');
  positive(cfg.l7.max_sessions, 'l7.max_sessions');
}

/** Parses and validates YAML text; `source` names it in error messages. */
export function parseConfig(text: string, source: string): Config {
  let user: unknown;
  try {
    user = YAML.parse(text) ?? {};
  } catch (err) {
    throw new ConfigError(`${source}: not valid YAML: ${(err as Error).message}`);
  }
  try {
    const cfg = merge(defaultConfig(), user, '') as Config;
    check(cfg);
    return cfg;
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${source}: ${err.message}`);
    throw err;
  }
}

/**
 * Loads the config named by FLOWTAP_CONFIG (or `file`); with neither, the defaults. Environment
 * overrides used by `flowtap replay` are applied last.
 */
export function loadConfig(file = process.env.FLOWTAP_CONFIG): Config {
  let cfg: Config;
  if (file) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read config file ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
    }
    cfg = parseConfig(text, file);
  } else {
    cfg = defaultConfig();
  }
  const env = process.env;
  if (env.FLOWTAP_RUNTIME_DIR) cfg.runtime_dir = env.FLOWTAP_RUNTIME_DIR;
  if (env.FLOWTAP_INPUT_FILE) {
    cfg.capture.source = 'file';
    cfg.capture.file = env.FLOWTAP_INPUT_FILE;
  }
  if (env.FLOWTAP_OUTPUT_DIR) cfg.sender.output_dir = env.FLOWTAP_OUTPUT_DIR;
  const level = env.FLOWTAP_LOG_LEVEL;
  if (level === 'debug' || level === 'info' || level === 'warn' || level === 'error') cfg.log_level = level;
  if (env.FLOWTAP_METRICS_EPHEMERAL === '1') {
    for (const svc of SERVICES) cfg.metrics.ports[svc] = 0;
  }
  return cfg;
}
