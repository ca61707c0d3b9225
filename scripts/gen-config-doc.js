#!/usr/bin/env node
// Writes docs/configuration.md from lib/config.ts: every setting with its default (from
// defaultConfig(), built into dist/) and its doc comment (from the Config interface), so the
// reference cannot drift from the code. `node scripts/gen-config-doc.js` rewrites it, `--check`
// fails if it is stale (test/lib/config-doc.test.ts runs the check). Needs `npm run build` first.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const ts = require('typescript');

const root = path.resolve(__dirname, '..');
const doc = path.join(root, 'docs', 'configuration.md');
const source = path.join(root, 'lib', 'config.ts');

/** Doc comments of the Config interface's properties, by dotted path ("ebpf.cap_bytes"). */
function comments() {
  const file = ts.createSourceFile(source, fs.readFileSync(source, 'utf8'), ts.ScriptTarget.Latest, true);
  const out = new Map();
  const walk = (members, prefix) => {
    for (const m of members) {
      if (!ts.isPropertySignature(m) || !m.name) continue;
      const key = prefix + m.name.getText(file);
      const text = ts.getJSDocCommentsAndTags(m).map((d) => ts.getTextOfJSDocComment(d.comment) ?? '').join(' ');
      if (text) out.set(key, text.replace(/\s+/g, ' ').trim());
      if (m.type && ts.isTypeLiteralNode(m.type)) walk(m.type.members, `${key}.`);
    }
  };
  ts.forEachChild(file, (node) => {
    if (ts.isInterfaceDeclaration(node) && node.name.text === 'Config') walk(node.members, '');
  });
  return out;
}

/** [dotted path, default] of every leaf setting (lists and records of ports are leaves). */
function leaves(value, prefix, out = []) {
  for (const [key, v] of Object.entries(value)) {
    const at = prefix + key;
    if (v && typeof v === 'object' && !Array.isArray(v) && at !== 'metrics.ports') leaves(v, `${at}.`, out);
    else out.push([at, v]);
  }
  return out;
}

const cell = (s) => String(s).replace(/\|/g, '\\|');

function render() {
  const { defaultConfig } = require(path.join(root, 'dist', 'lib', 'config.js'));
  const defaults = defaultConfig();
  defaults.runtime_dir = '$TMPDIR/flowtap-<uid>'; // machine-dependent: os.tmpdir() and the user id
  const notes = comments();
  const out = [
    '# Configuration',
    '',
    'Generated from `lib/config.ts` by `node scripts/gen-config-doc.js`; edit the code, not this file.',
    '',
    'The agent reads `flowtap.yaml`, or the file named by `FLOWTAP_CONFIG`. Every setting has the',
    'default below; a file sets only what differs, e.g. `ebpf: { cap_bytes: 1024 }`. Unknown keys,',
    'wrong types and bad values stop the agent with a message naming the key.',
    '',
  ];
  let section; // undefined until the first table, so the top-level settings ('') get a heading
  for (const [key, value] of leaves(defaults, '')) {
    const top = key.includes('.') ? key.slice(0, key.indexOf('.')) : '';
    if (top !== section) {
      if (section !== undefined) out.push('');
      section = top;
      out.push(`## ${top || 'top level'}`, '');
      if (notes.has(top)) out.push(notes.get(top), '');
      out.push('| setting | default | meaning |', '|---|---|---|');
    }
    // A setting's own comment, else its group's (flow.timeouts.udp under flow.timeouts).
    const parent = key.slice(0, key.lastIndexOf('.'));
    const meaning = notes.get(key) ?? (parent !== top && notes.has(parent) ? `(${notes.get(parent)})` : '');
    out.push(`| \`${key}\` | \`${cell(JSON.stringify(value))}\` | ${cell(meaning)} |`);
  }
  return out.join('\n') + '\n';
}

const text = render();
if (process.argv.includes('--check')) {
  const current = fs.existsSync(doc) ? fs.readFileSync(doc, 'utf8') : '';
  if (current !== text) {
    console.error('docs/configuration.md is stale: run `node scripts/gen-config-doc.js`');
    process.exit(1);
  }
} else {
  fs.writeFileSync(doc, text);
}
