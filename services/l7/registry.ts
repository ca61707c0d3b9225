// The parsers the stage and the inference know, in the order inference tries them.
import { L7Parser } from './parser';
import { http1Parser } from './parsers/http1';
import { dnsParser } from './parsers/dns';
import { tlsParser } from './parsers/tls';
import { http2Parser, http2UpgradeParser } from './parsers/http2';
import { dubboParser } from './parsers/dubbo';
import { amqpParser } from './parsers/amqp';
import { mongoParser } from './parsers/mongodb';
import { kafkaParser } from './parsers/kafka';
import { mqttParser } from './parsers/mqtt';
import { postgresParser } from './parsers/postgresql';
import { mysqlParser } from './parsers/mysql';
import { memcachedParser } from './parsers/memcached';
import { redisParser } from './parsers/redis';

// HTTP2 mid-connection is inferred from bare frame headers: every frame header in the payload
// must be valid (type, flags, stream-id rules, length <= 16384) and the frames must fill it, which
// no first payload of the corpus's other protocols passes; the bare length-prefixed framings
// (Kafka, MQTT) accept SETTINGS frames, so HTTP2 goes before them.
// http2UpgradeParser (the preface, or HTTP/1.1 "Upgrade: h2c") must precede HTTP/1; the stage
// keeps the last parser of a name, the full HTTP2 one, for the flow.
export const DEFAULT_PARSERS: readonly L7Parser[] = [
  http2UpgradeParser as L7Parser, http1Parser as L7Parser, dnsParser as L7Parser, tlsParser as L7Parser,
  // Magic numbers and protocol headers first, then length-prefixed framings checked for exact fit.
  dubboParser as L7Parser, amqpParser as L7Parser, mongoParser as L7Parser,
  // SQL and cache protocols: typed headers and known command words (Redis, with its inline
  // commands, the loosest of them) before the bare length-prefixed framings.
  postgresParser as L7Parser, mysqlParser as L7Parser, memcachedParser as L7Parser, redisParser as L7Parser,
  http2Parser as L7Parser, kafkaParser as L7Parser, mqttParser as L7Parser,
];

export function parserByName(name: string, parsers: readonly L7Parser[] = DEFAULT_PARSERS): L7Parser | undefined {
  for (const p of parsers) if (p.name === name) return p;
  return undefined;
}
