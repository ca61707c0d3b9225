// The agent's configuration: defaults for everything here, overridden by a YAML file.
// Validation is strict (unknown keys and wrong types are errors naming the key), because a
// typo in a config file that is silently ignored is worse than an agent that refuses to start.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as YamlModule from 'yaml';

export const SERVICES = ['capture', 'flow', 'quadruple', 'l7', 'sender'] as const;
export type ServiceName = (typeof SERVICES)[number];

export interface Config {
  /** Lowest level the services log (JSON lines on stderr): debug, info, warn or error. */
  log_level: 'debug' | 'info' | 'warn' | 'error';
  /** ZeroMQ IPC sockets live here; created with mode 0700. */
  runtime_dir: string;
  metrics: {
    /** Address each service's Prometheus /metrics listens on. */
    listen_address: string;
    /** Port of each service's /metrics (0: any free port). */
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
    /** The pcap or pcapng file that `source: file` replays. */
    file: string;
    /** Names, or patterns with * (e.g. "eth*"); empty: every interface that is up, except lo. */
    interfaces: string[];
    /** tcpdump-style capture filter, compiled to classic BPF. */
    filter: string;
    /** Payload bytes per packet that travel on to the flow and L7 stages. */
    payload_cut: number;
    /** Bytes captured per packet by the kernel. */
    snap_len: number;
    /** Put the interfaces in promiscuous mode. */
    promisc: boolean;
    /** PACKET_FANOUT group id shared by several capture processes (0: no fanout). */
    fanout_group: number;
    /** AF_PACKET TPACKET_V3 ring: bytes per block. */
    ring_block_size: number;
    /** AF_PACKET ring: blocks per interface. */
    ring_block_count: number;
    /** AF_PACKET ring: largest frame, bytes. */
    ring_frame_size: number;
    /** A block that is not full is handed over after this long. */
    ring_block_timeout_ms: number;
    /** How often a tick advances time downstream when the wire is idle. */
    tick_interval_ms: number;
  };
  flow: {
    /** Flows held at once; a packet that would open one more is dropped and counted (flow_map_full). */
    max_flows: number;
    /** Ports that are servers whatever the packets say (when no SYN was seen). */
    server_ports: number[];
    /** The VLAN id is part of the flow key (false: for links where only one direction is tagged). */
    vlan_in_key: boolean;
    /** Idle timeouts in seconds, by TCP state (see services/flow/flow-config.ts). */
    timeouts: {
      /** Handshake done (or started mid-stream), no FIN/RST yet. */
      established: number;
      /** Handshake under way. */
      opening: number;
      /** One side sent a FIN (half-closed); expires as *_half_close. As long as established: the other side may still send. */
      closing: number;
      /** Both sides sent a FIN; expires as finish. */
      fin: number;
      /** A RST after the handshake. */
      rst: number;
      /** A RST during the handshake. */
      opening_rst: number;
      udp: number;
      others: number;
    };
  };
  quadruple: {
    /** Late-data tolerance (s) of the 1 s and 1 min windows (DeepFlow: 9 and 69). */
    late_tolerance_1s: number;
    /** Late-data tolerance (s) of the 1 min window. */
    late_tolerance_1m: number;
    /** L4 flow logs kept per second (uniform sample of each 4 s of packet time). */
    l4_log_per_second: number;
    /** Merge health-check flows (client RST right after the handshake, no payload) into one L4 log per server per minute. */
    aggregate_health_checks: boolean;
    /** A flow silent this long (s) stops counting as a concurrent connection (its close was lost). */
    carry_idle_limit: number;
  };
  l7: {
    /** Requests waiting for their response; past it the oldest is dropped and counted (session_evicted). */
    max_sessions: number;
    /** L7 request logs kept per second of packet time (a leaky bucket; the rest are counted, and the application metrics still count every request). */
    l7_log_per_second: number;
    /** Seconds a request waits for its response, by protocol, before it is reported as a timeout. */
    session_timeout: { dns: number; tls: number; others: number };
  };
  /** The eBPF collector, in live mode only. Without root, BTF or tracefs the agent runs packet-only. */
  ebpf: {
    /** false: packet capture only, nothing loaded into the kernel. */
    enabled: boolean;
    /** Socket tracer on the socket syscalls: L7 records with process identity. */
    socket_tracer: boolean;
    /** TLS plaintext through uprobes on SSL_read/SSL_write (libssl, node). */
    tls: boolean;
    /**
     * Where the socket tracer hooks syscalls. tracepoints: the syscalls/ tracepoint of each traced
     * syscall. raw: raw_syscalls through tp_btf (x86-64; elsewhere tracepoints), which skips the
     * tracepoints' per-hit record but runs its programs on every syscall of the host
     * (docs/benchmarks.md: no cheaper on socket or file I/O since sends and receives are reported
     * from the sock/ tracepoints, which both settings use).
     */
    syscall_hook: 'tracepoints' | 'raw';
    /** Payload bytes captured per syscall (at most 8192). */
    cap_bytes: number;
    /** Trace only processes with these names (comm); empty: every process but the agent's own. */
    process_names: string[];
    /** On-CPU profiler (99 Hz per CPU, folded stacks to the sender). Off by default: it costs CPU on every CPU. */
    profiler: boolean;
    /** Seconds per profile interval: one batch of folded stacks per interval. */
    profile_interval_s: number;
  };
  sender: {
    /** Where records go; several at once. */
    sinks: Array<SinkName>;
    /** The JSON-lines files, and the default home of the SQLite file and the spool. */
    output_dir: string;
    jsonl: {
      /** A file reaching this size is renamed to <name>.1 (older ones shift up) and a new one opened. */
      rotate_bytes: number;
      /** Rotated files kept per record type. */
      keep_files: number;
    };
    sqlite: {
      /** "": <output_dir>/flowtap.db */
      path: string;
      /** Rows older than this, in data time, relative to the newest row of their table, are deleted. */
      retention_hours: number;
      /** Past this many bytes of used pages, the oldest rows are deleted. */
      max_bytes: number;
    };
    collector: {
      /** host:port of a `flowtap collector`. */
      address: string;
      /** Names this agent in every frame (0-4294967295). */
      agent_id: number;
      /** Frame payloads: zstd (level 3) or none. */
      compression: 'zstd' | 'none';
      /** "": <output_dir>/spool */
      spool_dir: string;
      /** Frames not yet acknowledged are kept on disk up to this many bytes; past it, batches are dropped and counted. */
      spool_max_bytes: number;
      /** First delay before reconnecting; it doubles on each failed attempt. */
      reconnect_min_ms: number;
      /** Longest delay between reconnect attempts. */
      reconnect_max_ms: number;
      /** In a replay, how long closing waits for the collector to acknowledge everything. */
      drain_timeout_ms: number;
    };
    clickhouse: {
      /** HTTP interface, e.g. http://127.0.0.1:8123 */
      url: string;
      /** Database of the tables (created with them on first use). */
      database: string;
      /** ClickHouse user. */
      user: string;
      /** That user's password. */
      password: string;
      /** Rows buffered per table before an INSERT. */
      batch_rows: number;
      /** Buffered rows are inserted at least this often. */
      flush_interval_ms: number;
    };
  };
}

export const SINK_NAMES = ['jsonl', 'sqlite', 'collector', 'clickhouse'] as const;
export type SinkName = (typeof SINK_NAMES)[number];

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
      vlan_in_key: true,
      timeouts: { established: 300, opening: 5, closing: 300, fin: 2, rst: 35, opening_rst: 1, udp: 5, others: 5 },
    },
    quadruple: { late_tolerance_1s: 9, late_tolerance_1m: 69, l4_log_per_second: 10000, aggregate_health_checks: false, carry_idle_limit: 600 },
    l7: { max_sessions: 65536, l7_log_per_second: 10000, session_timeout: { dns: 15, tls: 15, others: 120 } },
    ebpf: { enabled: true, socket_tracer: true, tls: true, syscall_hook: 'tracepoints', cap_bytes: 4096, process_names: [], profiler: false, profile_interval_s: 10 },
    sender: {
      sinks: ['jsonl', 'sqlite'],
      output_dir: 'data',
      jsonl: { rotate_bytes: 256 * 1024 * 1024, keep_files: 4 },
      sqlite: { path: '', retention_hours: 168, max_bytes: 1024 * 1024 * 1024 },
      collector: {
        address: '127.0.0.1:20033',
        agent_id: 1,
        compression: 'zstd',
        spool_dir: '',
        spool_max_bytes: 256 * 1024 * 1024,
        reconnect_min_ms: 200,
        reconnect_max_ms: 10000,
        drain_timeout_ms: 30000,
      },
      clickhouse: {
        url: 'http://127.0.0.1:8123',
        database: 'flowtap',
        user: 'default',
        password: '',
        batch_rows: 10000,
        flush_interval_ms: 1000,
      },
    },
  };
}

export class ConfigError extends Error {}

const ENUMS: Record<string, readonly string[]> = {
  log_level: ['debug', 'info', 'warn', 'error'],
  'capture.source': ['live', 'file'],
  'ebpf.syscall_hook': ['tracepoints', 'raw'],
  'sender.sinks[]': SINK_NAMES,
  'sender.collector.compression': ['zstd', 'none'],
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
  if (typeof cfg.flow.vlan_in_key !== 'boolean') throw new ConfigError('flow.vlan_in_key: must be true or false');
  for (const p of cfg.flow.server_ports) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new ConfigError(`flow.server_ports: ${p} is not a port`);
  }
  positive(cfg.quadruple.l4_log_per_second, 'quadruple.l4_log_per_second');
  positive(cfg.quadruple.carry_idle_limit, 'quadruple.carry_idle_limit');
  positive(cfg.l7.l7_log_per_second, 'l7.l7_log_per_second');
  if (!Number.isInteger(cfg.ebpf.cap_bytes) || cfg.ebpf.cap_bytes < 0 || cfg.ebpf.cap_bytes > 8192) {
    throw new ConfigError(`ebpf.cap_bytes: must be a whole number from 0 to 8192, got ${cfg.ebpf.cap_bytes}`);
  }
  positive(cfg.ebpf.profile_interval_s, 'ebpf.profile_interval_s');
  positive(cfg.l7.max_sessions, 'l7.max_sessions');
  checkSender(cfg.sender);
}

function checkSender(s: Config['sender']): void {
  const positive = (v: number, at: string) => {
    if (!Number.isFinite(v) || v <= 0) throw new ConfigError(`sender.${at}: must be a positive number, got ${v}`);
  };
  if (s.sinks.length === 0) throw new ConfigError('sender.sinks: at least one sink');
  if (new Set(s.sinks).size !== s.sinks.length) throw new ConfigError('sender.sinks: a sink is listed twice');
  positive(s.jsonl.rotate_bytes, 'jsonl.rotate_bytes');
  if (!Number.isInteger(s.jsonl.keep_files) || s.jsonl.keep_files < 0) throw new ConfigError('sender.jsonl.keep_files: must be an integer >= 0');
  positive(s.sqlite.retention_hours, 'sqlite.retention_hours');
  positive(s.sqlite.max_bytes, 'sqlite.max_bytes');
  const c = s.collector;
  if (!/^[^\s:]+:\d{1,5}$/.test(c.address) || Number(c.address.split(':').pop()) > 65535) {
    throw new ConfigError(`sender.collector.address: expected host:port, got "${c.address}"`);
  }
  if (!Number.isInteger(c.agent_id) || c.agent_id < 0 || c.agent_id > 0xffffffff) {
    throw new ConfigError(`sender.collector.agent_id: must be an integer 0-4294967295, got ${c.agent_id}`);
  }
  positive(c.spool_max_bytes, 'collector.spool_max_bytes');
  positive(c.reconnect_min_ms, 'collector.reconnect_min_ms');
  positive(c.reconnect_max_ms, 'collector.reconnect_max_ms');
  if (c.reconnect_max_ms < c.reconnect_min_ms) throw new ConfigError('sender.collector.reconnect_max_ms: must be >= reconnect_min_ms');
  positive(c.drain_timeout_ms, 'collector.drain_timeout_ms');
  const h = s.clickhouse;
  if (!/^https?:\/\/[^/]+\/?$/.test(h.url)) throw new ConfigError(`sender.clickhouse.url: expected http(s)://host:port, got "${h.url}"`);
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(h.database)) throw new ConfigError(`sender.clickhouse.database: not a plain identifier: "${h.database}"`);
  positive(h.batch_rows, 'clickhouse.batch_rows');
  positive(h.flush_interval_ms, 'clickhouse.flush_interval_ms');
}

/** Parses and validates YAML text; `source` names it in error messages. */
export function parseConfig(text: string, source: string): Config {
  let user: unknown;
  try {
    // Loaded here, not at the top: most starts (every replay) have no file, and loading the
    // parser costs each of the five processes ~30 ms of CPU.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const YAML = require('yaml') as typeof YamlModule;
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
  if (env.FLOWTAP_SINKS) cfg.sender.sinks = env.FLOWTAP_SINKS.split(',') as Config['sender']['sinks'];
  const level = env.FLOWTAP_LOG_LEVEL;
  if (level === 'debug' || level === 'info' || level === 'warn' || level === 'error') cfg.log_level = level;
  if (env.FLOWTAP_METRICS_EPHEMERAL === '1') {
    for (const svc of SERVICES) cfg.metrics.ports[svc] = 0;
  }
  return cfg;
}
