import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { defaultConfig } from '../../lib/config';

const ROOT = path.resolve(__dirname, '..', '..', '..');

test('docs/configuration.md is what scripts/gen-config-doc.js makes of lib/config.ts', (t) => {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'gen-config-doc.js'), '--check'], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
});

test('every setting in docs/configuration.md has a meaning', (t) => {
  const rows = fs.readFileSync(path.join(ROOT, 'docs', 'configuration.md'), 'utf8').split('\n').filter((l) => l.startsWith('| `'));
  const bare = rows.filter((l) => /\|\s*\|$/.test(l)).map((l) => l.split('|')[1].trim());
  t.deepEqual(bare, [], 'settings without a doc comment in lib/config.ts');
  // One row per leaf setting (metrics.ports is one row).
  const leaves = (o: object): number => Object.entries(o).reduce((n, [k, v]) =>
    n + (v && typeof v === 'object' && !Array.isArray(v) && k !== 'ports' ? leaves(v) : 1), 0);
  t.is(rows.length, leaves(defaultConfig()));
});
