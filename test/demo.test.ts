// tensorize demo through the CLI: the summary on stdout, progress on stderr, one JSON
// document with --json, readable defaults in --help, and the temporary model removed.
import t from 'tap';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { nativeAvailable } from '../src/native/binding.js';
import { runCli } from './helpers/util.js';

const why = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';

t.test('demo --help shows the default size as a size, not a byte count', async (t) => {
  const r = await runCli(['demo', '--help']);
  t.equal(r.code, 0);
  t.match(r.stdout, /--size <bytes>\s+model size, e\.g\. 64MiB, 1GiB \(default: 256MiB\)/);
  t.notMatch(r.stdout, /268435456/);
});

t.test('demo: the summary on stdout, progress on stderr, the model removed', { skip: why }, async (t) => {
  const tmp = t.testdir();
  let r = await runCli(['demo', '--size', '16MiB'], { TMPDIR: tmp });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /^tensorize demo: 75 bf16 tensors, [0-9.]+ MiB of tensor data, data version 2\n/);
  t.match(r.stdout, /\nserialize\s+[0-9.]+ s\s+[0-9.]+ GB\/s\s+-\n/);
  t.match(r.stdout, /\nverify\s+[0-9.]+ s\s+[0-9.]+ GB\/s\s+150 hashes\n/);
  t.match(r.stdout, /\npeak RSS [0-9.]+ MiB\nfiles: made in a temporary directory, removed now/);
  t.match(r.stderr, /^made .*model\.safetensors: 75 bf16 tensors/m, 'progress on stderr');
  t.match(r.stderr, /^verified 150 hashes/m);
  t.notMatch(r.stderr, /tensorize demo:|peak RSS/, 'the summary is not on stderr');
  t.same(readdirSync(tmp), [], 'the temporary directory is removed');

  r = await runCli(['demo', '--size', '16MiB', '-q'], { TMPDIR: tmp });
  t.equal(r.code, 0);
  t.equal(r.stderr, '', '-q: nothing on stderr');
  t.match(r.stdout, /^tensorize demo: /);

  const keep = join(tmp, 'keep');
  r = await runCli(['demo', '--size', '16MiB', '--json', '--dir', keep], { TMPDIR: tmp });
  t.equal(r.code, 0);
  const doc = JSON.parse(r.stdout);
  t.match(doc, { ok: true, tensors: 75, verify: { hashesChecked: 150 }, files: { tensors: join(keep, 'model.tensors') } });
  t.ok(existsSync(doc.files.tensors), '--dir keeps the files');
  t.same(readdirSync(tmp), ['keep'], 'and makes no temporary directory');
});
