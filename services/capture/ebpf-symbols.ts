// Symbolisation for the on-CPU profiler, in user space: kernel addresses through /proc/kallsyms,
// user addresses through the process's executable mappings (/proc/<pid>/maps) and the ELF symbol
// tables (.symtab, else .dynsym) of the mapped files, plus /tmp/perf-<pid>.map for JIT code
// (node --perf-basic-prof). Runs once per profile interval, never per sample.
import fs from 'node:fs';
import path from 'node:path';

/** Sorted function symbols of one address space: start addresses, sizes (0: unknown) and names. */
class SymbolTable {
  constructor(readonly starts: Float64Array, readonly sizes: Float64Array, readonly names: string[]) {}

  static build(entries: Array<[number, number, string]>): SymbolTable {
    entries.sort((a, b) => a[0] - b[0]);
    return new SymbolTable(Float64Array.from(entries, (e) => e[0]), Float64Array.from(entries, (e) => e[1]), entries.map((e) => e[2]));
  }

  /** The symbol containing `addr`: the last start <= addr, within its size when the size is known. */
  lookup(addr: number): string | undefined {
    const s = this.starts;
    let lo = 0;
    let hi = s.length - 1;
    if (hi < 0 || addr < s[0]) return undefined;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (s[mid] <= addr) lo = mid;
      else hi = mid - 1;
    }
    const size = this.sizes[lo];
    if (size > 0 && addr >= s[lo] + size) return undefined;
    return this.names[lo];
  }
}

interface LoadSegment {
  offset: number;
  vaddr: number;
  filesz: number;
}

/** An ELF64 little-endian file's function symbols and loadable segments, read with positioned reads. */
export class ElfSymbols {
  private constructor(readonly table: SymbolTable, readonly loads: LoadSegment[]) {}

  static read(file: string): ElfSymbols | undefined {
    let fd = -1;
    try {
      fd = fs.openSync(file, 'r');
      const at = (pos: number, len: number): Buffer => {
        const b = Buffer.alloc(len);
        fs.readSync(fd, b, 0, len, pos);
        return b;
      };
      const eh = at(0, 64);
      // \x7fELF, 64-bit, little-endian only (the machines are x86-64).
      if (eh.readUInt32BE(0) !== 0x7f454c46 || eh[4] !== 2 || eh[5] !== 1) return undefined;
      const phoff = Number(eh.readBigUInt64LE(32));
      const shoff = Number(eh.readBigUInt64LE(40));
      const phentsize = eh.readUInt16LE(54);
      const phnum = eh.readUInt16LE(56);
      const shentsize = eh.readUInt16LE(58);
      const shnum = eh.readUInt16LE(60);
      const loads: LoadSegment[] = [];
      const ph = at(phoff, phentsize * phnum);
      for (let i = 0; i < phnum; i++) {
        const o = i * phentsize;
        if (ph.readUInt32LE(o) !== 1) continue; // PT_LOAD
        loads.push({ offset: Number(ph.readBigUInt64LE(o + 8)), vaddr: Number(ph.readBigUInt64LE(o + 16)), filesz: Number(ph.readBigUInt64LE(o + 32)) });
      }
      const sh = at(shoff, shentsize * shnum);
      const section = (i: number) => ({
        type: sh.readUInt32LE(i * shentsize + 4),
        offset: Number(sh.readBigUInt64LE(i * shentsize + 24)),
        size: Number(sh.readBigUInt64LE(i * shentsize + 32)),
        link: sh.readUInt32LE(i * shentsize + 40),
      });
      const entries: Array<[number, number, string]> = [];
      // Prefer the full .symtab (type 2); a stripped file still has .dynsym (type 11).
      for (const wanted of [2, 11]) {
        for (let i = 0; i < shnum; i++) {
          const s = section(i);
          if (s.type !== wanted || s.size === 0) continue;
          const strs = section(s.link);
          const strtab = at(strs.offset, strs.size);
          const syms = at(s.offset, s.size);
          for (let o = 0; o + 24 <= syms.length; o += 24) {
            const info = syms[o + 4];
            const value = Number(syms.readBigUInt64LE(o + 8));
            if ((info & 0xf) !== 2 || value === 0) continue; // STT_FUNC with an address
            const nameAt = syms.readUInt32LE(o);
            let end = nameAt;
            while (end < strtab.length && strtab[end] !== 0) end++;
            let name = strtab.toString('latin1', nameAt, end);
            const version = name.indexOf('@');
            if (version > 0) name = name.slice(0, version);
            entries.push([value, Number(syms.readBigUInt64LE(o + 16)), name]);
          }
        }
        if (entries.length > 0) break;
      }
      return new ElfSymbols(SymbolTable.build(entries), loads);
    } catch {
      return undefined;
    } finally {
      if (fd >= 0) fs.closeSync(fd);
    }
  }

  /** The function at a file offset (what /proc/<pid>/maps gives), through the PT_LOAD segments. */
  lookupFileOffset(off: number): string | undefined {
    for (const l of this.loads) {
      if (off >= l.offset && off < l.offset + l.filesz) return this.table.lookup(off - l.offset + l.vaddr);
    }
    return undefined;
  }
}

interface Mapping {
  start: number;
  end: number;
  offset: number;
  file: string;
}

function readMaps(pid: number): Mapping[] {
  const out: Mapping[] = [];
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/maps`, 'latin1');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    // start-end perms offset dev inode path
    const m = /^([0-9a-f]+)-([0-9a-f]+) ..x. ([0-9a-f]+) \S+ \d+\s+(.*)$/.exec(line);
    if (m) out.push({ start: parseInt(m[1], 16), end: parseInt(m[2], 16), offset: parseInt(m[3], 16), file: m[4] });
  }
  return out;
}

function readPerfMap(pid: number): SymbolTable | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/tmp/perf-${pid}.map`, 'latin1');
  } catch {
    return undefined;
  }
  const entries: Array<[number, number, string]> = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-fA-F]+) ([0-9a-fA-F]+) (.*)$/.exec(line);
    if (m) entries.push([parseInt(m[1], 16), parseInt(m[2], 16), m[3]]);
  }
  return SymbolTable.build(entries);
}

/** The kernel's symbols. Kernel text shares its top 16 bits (0xffff), so the low 48 fit a double. */
export class KernelSymbols {
  private table: SymbolTable | undefined;

  private load(): SymbolTable {
    if (this.table) return this.table;
    const entries: Array<[number, number, string]> = [];
    try {
      for (const line of fs.readFileSync('/proc/kallsyms', 'latin1').split('\n')) {
        const sp1 = line.indexOf(' ');
        if (sp1 < 0) continue;
        const type = line[sp1 + 1];
        if (type !== 't' && type !== 'T' && type !== 'w' && type !== 'W') continue;
        const addr = parseInt(line.slice(Math.max(0, sp1 - 12), sp1), 16); // low 48 bits
        if (addr === 0) continue; // hidden (kptr_restrict)
        const nameEnd = line.indexOf('\t', sp1 + 3);
        entries.push([addr, 0, line.slice(sp1 + 3, nameEnd < 0 ? undefined : nameEnd)]);
      }
    } catch {
      // no kallsyms: every kernel frame stays [unknown]
    }
    this.table = SymbolTable.build(entries);
    return this.table;
  }

  lookup(addr: bigint): string {
    return this.load().lookup(Number(addr & 0xffffffffffffn)) ?? '[unknown]';
  }
}

/** Resolves one interval's user stacks; ELF files stay cached across intervals. */
export class Symbolizer {
  readonly kernel = new KernelSymbols();
  private readonly elfCache = new Map<string, ElfSymbols | null>();
  private readonly maps = new Map<number, Mapping[]>();
  private readonly perfMaps = new Map<number, SymbolTable | null>();

  /** Forget per-process state (call at the start of each interval: processes come and go). */
  newInterval(): void {
    this.maps.clear();
    this.perfMaps.clear();
    if (this.elfCache.size > 512) this.elfCache.clear();
  }

  private elf(pid: number, file: string): ElfSymbols | undefined {
    // Through the process's root, so files of processes in other mount namespaces resolve too.
    const key = `${file}`;
    let e = this.elfCache.get(key);
    if (e === undefined) {
      e = ElfSymbols.read(`/proc/${pid}/root${file}`) ?? ElfSymbols.read(file) ?? null;
      this.elfCache.set(key, e);
    }
    return e ?? undefined;
  }

  user(pid: number, addr: number): string {
    let maps = this.maps.get(pid);
    if (!maps) {
      maps = readMaps(pid);
      this.maps.set(pid, maps);
    }
    for (const m of maps) {
      if (addr < m.start || addr >= m.end) continue;
      if (!m.file.startsWith('/')) break; // anonymous executable memory: JIT
      const name = this.elf(pid, m.file)?.lookupFileOffset(addr - m.start + m.offset);
      return name ?? `[${path.basename(m.file)}]`;
    }
    let perf = this.perfMaps.get(pid);
    if (perf === undefined) {
      perf = readPerfMap(pid) ?? null;
      this.perfMaps.set(pid, perf);
    }
    return perf?.lookup(addr) ?? '[unknown]';
  }
}
