// The writer reproduces, byte for byte, the minimal file docs/format.md §5.2 gives as
// a golden vector (one float32 tensor, exact-size metadata, no trailer); tensorizer 2.11
// loads that file with verify_hash=True.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TensorType } from '../src/format/constants.js';
import { dtypeByName } from '../src/format/dtypes.js';
import { writeTensorizer } from '../src/ops/serialize.js';
import { verifyFile } from '../src/ops/verify.js';
import { FileSource } from '../src/sources/file.js';

const GOLDEN = `
7c 54 5a 52 7c 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00 00 00 00 18 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00
00 29 00 00 00 00 00 00 00 01 00 77 00 03 3c 66 34 02 02 00 00 00 03 00 00 00 72 00 00 00 00 00
00 00 c0 00 00 00 00 00 00 00 18 00 00 00 00 00 00 00 4e 00 00 00 00 00 00 00 00 00 00 01 00 77
03 3c 66 34 02 02 00 00 00 03 00 00 00 29 00 02 00 04 fd bd 1b 0e 01 20 db 63 6a ef 3f 1b fc ab
bf 20 24 b0 83 65 95 b7 ad 93 86 a8 78 1c 0e f2 d8 aa 56 6e 6e b1 84 1f 18 00 00 00 00 00 00 00
00 00 00 00 00 00 80 3f 00 00 00 40 00 00 40 40 00 00 80 40 00 00 a0 40`;

t.test('writer output equals the documented 216-byte golden file', async (t) => {
  const dir = t.testdir();
  const data = Buffer.from(new Float32Array([0, 1, 2, 3, 4, 5]).buffer);
  const src = join(dir, 'w.bin');
  (await import('node:fs')).writeFileSync(src, data);
  const out = join(dir, 'w.tensors');
  const s = await writeTensorizer(
    out,
    [{ path: ['w'], type: TensorType.PARAM, dtype: dtypeByName('float32')!, shape: [2, 3], data: { path: src, ranges: [{ offset: 0, length: 24 }] } }],
    { trailer: false, threads: 1 },
  );
  const golden = Buffer.from(GOLDEN.trim().split(/\s+/).map((h) => parseInt(h, 16)));
  t.equal(golden.length, 216);
  t.equal(s.fileBytes, 216);
  t.same(readFileSync(out).toString('hex'), golden.toString('hex'));
  const v = await verifyFile(await FileSource.open(out), { threads: 1 });
  t.ok(v.ok);
  t.equal(v.hashesChecked, 2);
});

t.test('with the default trailer, the file ends with 8 zero bytes and still verifies', async (t) => {
  const dir = t.testdir({ 'w.bin': Buffer.from(new Float32Array([0, 1, 2, 3, 4, 5]).buffer) });
  const out = join(dir, 'w.tensors');
  await writeTensorizer(out, [
    { path: ['w'], type: TensorType.PARAM, dtype: dtypeByName('float32')!, shape: [2, 3], data: { path: join(dir, 'w.bin'), ranges: [{ offset: 0, length: 24 }] } },
  ]);
  const b = readFileSync(out);
  t.equal(b.length, 224);
  t.same([...b.subarray(216)], [0, 0, 0, 0, 0, 0, 0, 0]);
  const src = await FileSource.open(out);
  t.ok((await verifyFile(src)).ok);
  await src.close();
});
