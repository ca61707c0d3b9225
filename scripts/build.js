#!/usr/bin/env node
// Builds everything the services run: protobuf static code, TypeScript, and the native addon.
// Each step is skipped when its outputs are newer than its inputs, so `npm test` stays quick.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const bin = (name) => path.join(root, 'node_modules', '.bin', name);
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });
const mtime = (p) => { try { return fs.statSync(p).mtimeMs; } catch { return 0; } };

function buildProto() {
  const src = path.join(root, 'proto', 'flowtap.proto');
  const js = path.join(root, 'dist', 'proto', 'gen', 'flowtap.js');
  const dts = path.join(root, 'proto', 'gen', 'flowtap.d.ts');
  if (mtime(js) > mtime(src) && mtime(dts) > mtime(src)) return;
  fs.mkdirSync(path.dirname(js), { recursive: true });
  fs.mkdirSync(path.dirname(dts), { recursive: true });
  // --keep-case: field names stay snake_case, so JSON lines and SQL columns use the schema's names.
  run(bin('pbjs'), ['-t', 'static-module', '-w', 'commonjs', '--keep-case', '--force-number',
    '--no-verify', '--no-delimited', '-o', js, src]);
  run(bin('pbts'), ['--no-comments', '-o', dts, js]);
}

function buildNative() {
  const gyp = path.join(root, 'native', 'binding.gyp');
  if (!fs.existsSync(gyp)) return;
  const out = path.join(root, 'native', 'build', 'Release', 'flowtap_native.node');
  const sources = fs.readdirSync(path.join(root, 'native', 'src'), { withFileTypes: true })
    .filter((e) => e.isFile()).map((e) => path.join(root, 'native', 'src', e.name));
  if (fs.existsSync(out) && sources.every((s) => mtime(s) < mtime(out)) && mtime(gyp) < mtime(out)) return;
  // Build against the headers installed with this Node (Debian: /usr/include/node): node-gyp
  // would otherwise download them, and the machines have no network but the registries.
  const nodedir = path.resolve(process.execPath, '..', '..');
  const args = ['rebuild', '--directory', path.join(root, 'native')];
  if (fs.existsSync(path.join(nodedir, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${nodedir}`);
  run(bin('node-gyp'), args);
}

function buildBpf() {
  const script = path.join(root, 'bpf', 'build.sh');
  if (fs.existsSync(script)) run('bash', [script]);
}

buildProto();
run(bin('tsc'), ['-p', 'tsconfig.json']);
buildNative();
buildBpf();
