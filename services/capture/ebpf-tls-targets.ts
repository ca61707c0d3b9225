// Finds the ELF files to put TLS uprobes on: every libssl mapped by a running process, the
// well-known system libssl paths, and executables that link OpenSSL statically (node). A uprobe
// belongs to the file, so one attach covers the processes that map it now and those started later;
// a rescan only has to find files not seen before (a new library version, another node binary).
import fs from 'node:fs';
import path from 'node:path';

export const SYSTEM_LIBSSL = ['/usr/lib/x86_64-linux-gnu/libssl.so.3', '/lib/x86_64-linux-gnu/libssl.so.3', '/usr/lib64/libssl.so.3', '/usr/lib/libssl.so.3'];
export const DEFAULT_TLS_BINARIES = ['node', 'nodejs'];

const LIBSSL = /\/libssl\.so(\.[0-9.]+)?$/;

export interface TlsTargetScan {
  /** Distinct files (by real path) worth attaching, in discovery order. */
  files: string[];
  /** /proc entries that vanished or were unreadable while scanning (not an error). */
  unreadable: number;
}

/**
 * Lists the candidate files: system libssl, `extra` paths, libssl mapped by any process and the
 * executables whose basename is in `binaries`. Cost: one read of /proc/<pid>/maps per process.
 */
export function scanTlsTargets(binaries: string[] = DEFAULT_TLS_BINARIES, extra: string[] = []): TlsTargetScan {
  const files = new Set<string>();
  let unreadable = 0;
  const add = (p: string): void => {
    try {
      files.add(fs.realpathSync(p));
    } catch {
      unreadable++;
    }
  };
  for (const p of [...SYSTEM_LIBSSL, ...extra]) if (fs.existsSync(p)) add(p);
  const wanted = new Set(binaries);
  let pids: string[] = [];
  try {
    pids = fs.readdirSync('/proc').filter((d) => /^[0-9]+$/.test(d));
  } catch {
    return { files: [...files], unreadable: 1 };
  }
  for (const pid of pids) {
    try {
      const exe = fs.readlinkSync(`/proc/${pid}/exe`);
      if (wanted.has(path.basename(exe))) add(`/proc/${pid}/exe`);
      const maps = fs.readFileSync(`/proc/${pid}/maps`, 'latin1');
      for (const line of maps.split('\n')) {
        const at = line.indexOf('/');
        if (at < 0) continue;
        const file = line.slice(at);
        if (LIBSSL.test(file)) add(file);
      }
    } catch {
      unreadable++; // exited meanwhile, or a kernel thread without exe
    }
  }
  return { files: [...files], unreadable };
}
