// The parsers the stage and the inference know, in the order inference tries them.
import { L7Parser } from './parser';
import { http1Parser } from './parsers/http1';
import { dnsParser } from './parsers/dns';

export const DEFAULT_PARSERS: readonly L7Parser[] = [http1Parser as L7Parser, dnsParser as L7Parser];

export function parserByName(name: string, parsers: readonly L7Parser[] = DEFAULT_PARSERS): L7Parser | undefined {
  for (const p of parsers) if (p.name === name) return p;
  return undefined;
}
