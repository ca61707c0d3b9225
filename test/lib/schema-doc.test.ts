import { spawnSync } from 'node:child_process';
import path from 'node:path';
import test from 'ava';

const ROOT = path.resolve(__dirname, '..', '..', '..');

test('docs/schema.md is what scripts/gen-schema.js makes of proto/flowtap.proto', (t) => {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'gen-schema.js'), '--check'], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
});
