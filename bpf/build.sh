#!/usr/bin/env bash
# Builds the eBPF programs: bpf/vmlinux.h from the running kernel's BTF, then bpf/*.bpf.c -> *.bpf.o
# (CO-RE, so one object runs on other kernels with BTF). Skips with a message, exit 0, when the
# machine has no BTF or no clang/bpftool: the agent then runs packet-only.
set -euo pipefail
cd "$(dirname "$0")"
btf=/sys/kernel/btf/vmlinux
if [ ! -r "$btf" ]; then echo "bpf: no $btf, skipping eBPF build (packet-only)"; exit 0; fi
for tool in clang bpftool; do
  if ! command -v "$tool" >/dev/null 2>&1; then echo "bpf: $tool not installed, skipping eBPF build (packet-only)"; exit 0; fi
done
if [ ! -s vmlinux.h ] || [ "$btf" -nt vmlinux.h ]; then
  bpftool btf dump file "$btf" format c > vmlinux.h.tmp && mv vmlinux.h.tmp vmlinux.h
fi
for src in *.bpf.c; do
  [ -e "$src" ] || continue
  obj="${src%.c}.o"
  # Rebuild when the source, a local header or vmlinux.h is newer than the object.
  if [ -f "$obj" ] && [ "$obj" -nt "$src" ] && [ "$obj" -nt vmlinux.h ] && [ -z "$(find . -maxdepth 1 -name '*.h' -newer "$obj")" ]; then
    continue
  fi
  clang -O2 -g -target bpf -D__TARGET_ARCH_x86 -I. -Wall -Wno-unused-function -c "$src" -o "$obj.tmp"
  mv "$obj.tmp" "$obj"
  echo "bpf: built $obj"
done
