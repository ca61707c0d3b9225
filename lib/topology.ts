// Who sends to whom. Each service binds one PULL socket that its upstreams PUSH to; a service
// has seen the whole stream once every upstream listed here has sent END_OF_STREAM.
import fs from 'node:fs';
import path from 'node:path';
import type { ServiceName } from './config';

export const UPSTREAMS: Record<ServiceName, readonly ServiceName[]> = {
  capture: [],
  flow: ['capture'],
  l7: ['flow', 'capture'], // capture: eBPF socket data
  quadruple: ['flow', 'l7'],
  sender: ['quadruple', 'l7', 'capture'], // capture: eBPF profiles
};

export function downstreamsOf(service: ServiceName): ServiceName[] {
  return (Object.keys(UPSTREAMS) as ServiceName[]).filter((s) => UPSTREAMS[s].includes(service));
}

export function endpointOf(runtimeDir: string, service: ServiceName): string {
  return `ipc://${path.join(runtimeDir, `${service}.sock`)}`;
}

/**
 * Creates the runtime directory private to this user (0700): the IPC sockets in it carry
 * everything the host sends, so no other user may connect to them.
 */
export function prepareRuntimeDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.statSync(dir);
  if (!st.isDirectory()) throw new Error(`runtime_dir ${dir} is not a directory`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid()) {
    throw new Error(`runtime_dir ${dir} belongs to uid ${st.uid}, not to this user`);
  }
  if ((st.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
}
