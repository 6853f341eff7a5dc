/**
 * The two engines behind serialize, verify and export: the native copy engine (two jobs per
 * thread, SHA-NI / PCLMUL hashes, one writer thread) and the JavaScript worker pool must
 * write byte-identical files and reach the same verdicts, on every kind of input: many
 * dtypes and empty tensors, multi-range (row-run) views and gathered strided views from
 * PyTorch checkpoints, big-endian checkpoints that are byte-swapped, sharded inputs.
 * Also: cancelling a native batch, and progress accounting.
 */
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TensorType } from '../src/format/constants.js';
import { verifyFile } from '../src/ops/verify.js';
import { writeTensorizer } from '../src/ops/serialize.js';
import { openInput } from '../src/inputs/index.js';
import { exportSafetensors } from '../src/ops/export.js';
import { FileSource } from '../src/sources/file.js';
import { JobRunner } from '../src/engine/runner.js';
import { nativeAvailable } from '../src/native/binding.js';
import { TensorizeError } from '../src/errors.js';
import { bytes, ROOT, writeSafetensors, type StTensor, setEnv } from './helpers/util.js';

const why = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';

async function withEngine<T>(engine: 'native' | 'js', f: () => Promise<T>): Promise<T> {
  const before = process.env.TENSORIZE_ENGINE;
  setEnv('TENSORIZE_ENGINE', engine);
  try {
    return await f();
  } finally {
    setEnv('TENSORIZE_ENGINE', before);
  }
}

async function serialize(input: string, out: string): Promise<void> {
  const m = await openInput(input);
  await writeTensorizer(
    out,
    m.tensors.map((x) => ({ path: x.path, type: TensorType.STATE_DICT, dtype: x.dtype, shape: x.shape, data: x.data })),
    { threads: 2 },
  );
}

const MIXED: StTensor[] = [
  { name: 'big', dtype: 'F32', shape: [700, 1000], data: bytes(2_800_000, 1) },
  { name: 'empty', dtype: 'F32', shape: [0, 3], data: Buffer.alloc(0) },
  { name: 'one', dtype: 'U8', shape: [1], data: bytes(1, 2) },
  { name: 'odd', dtype: 'I8', shape: [333], data: bytes(333, 3) },
  { name: 'bf16', dtype: 'BF16', shape: [513, 129], data: bytes(513 * 129 * 2, 4) },
  { name: 'mid', dtype: 'F16', shape: [300_001], data: bytes(600_002, 5) },
  ...Array.from({ length: 40 }, (_, i): StTensor => ({ name: `small.${i}`, dtype: 'F32', shape: [i + 1], data: bytes(4 * (i + 1), 10 + i) })),
];

t.test('native and JavaScript engines write identical files and agree on verify and export', { skip: why }, async (t) => {
  const dir = t.testdir();
  writeSafetensors(join(dir, 'mixed.safetensors'), MIXED);
  const fix = join(ROOT, 'fixtures', 'pytorch');
  const inputs: Record<string, string> = {
    mixed: join(dir, 'mixed.safetensors'),
    zip: join(fix, 'zip.pt'),
    legacy: join(fix, 'legacy.pt'),
    bigEndian: join(fix, 'big_endian.pt'),
    float8: join(fix, 'v3_float8.pt'),
    sharded: join(fix, 'sharded'),
  };
  for (const [label, input] of Object.entries(inputs)) {
    const outs: Record<string, Buffer> = {};
    for (const engine of ['native', 'js'] as const) {
      const out = join(dir, `${label}.${engine}.tensors`);
      await withEngine(engine, () => serialize(input, out));
      outs[engine] = readFileSync(out);
    }
    t.ok(outs.native!.equals(outs.js!), `${label}: identical output (${outs.native!.length} bytes)`);

    // Flip one data byte of the largest tensor: both engines name the same tensor and hashes.
    const src = await FileSource.open(join(dir, `${label}.native.tensors`));
    const good = await withEngine('native', () => verifyFile(src));
    await src.close();
    t.ok(good.ok, `${label}: verifies`);
    const { TensorizerFile } = await import('../src/format/reader.js');
    const s2 = await FileSource.open(join(dir, `${label}.native.tensors`));
    const tf = await TensorizerFile.open(s2);
    const target = [...tf.entries].sort((a, b) => b.dataLength - a.dataLength)[0]!;
    await s2.close();
    const bad = Buffer.from(outs.native!);
    bad[target.dataOffset + Math.floor(target.dataLength / 2)]! ^= 0x40;
    const badPath = join(dir, `${label}.bad.tensors`);
    writeFileSync(badPath, bad);
    const verdicts: Record<string, unknown> = {};
    for (const engine of ['native', 'js'] as const) {
      const b = await FileSource.open(badPath);
      const r = await withEngine(engine, () => verifyFile(b));
      await b.close();
      verdicts[engine] = r.failures;
      t.notOk(r.ok, `${label}, ${engine}: the flipped byte is caught`);
    }
    t.same(verdicts.native, verdicts.js, `${label}: the same failures from both engines`);
    t.match(JSON.stringify(verdicts.native), target.name, `${label}: the failure names ${target.name}`);

    if (label === 'mixed') {
      const exported: Record<string, Buffer> = {};
      for (const engine of ['native', 'js'] as const) {
        const f = await FileSource.open(join(dir, `${label}.native.tensors`));
        const out = join(dir, `${label}.${engine}.safetensors`);
        await withEngine(engine, () => exportSafetensors(f, out));
        await f.close();
        exported[engine] = readFileSync(out);
      }
      t.ok(exported.native!.equals(exported.js!), 'export: identical safetensors from both engines');
    }
  }
});

t.test('a native batch reports its progress and can be cancelled', { skip: why }, async (t) => {
  const dir = t.testdir();
  const size = 48 << 20;
  writeFileSync(join(dir, 'in.bin'), bytes(size, 7));
  let progressed = 0;
  const runner = new JobRunner(2, (n) => (progressed += n));
  t.equal(runner.engine, 'native');
  const src = { path: join(dir, 'in.bin'), ranges: [{ offset: 0, length: size }] };
  const results = await Promise.all([0, 1, 2].map((id) => runner.run({ id, src, crc32: true, sha256: true })));
  t.equal(progressed, 3 * size, 'progress adds up to every byte');
  t.same(new Set(results.map((r) => Buffer.from(r.sha256!).toString('hex'))).size, 1, 'the same bytes hash the same in every lane');
  await runner.close();

  const slow = new JobRunner(1);
  const pending = Array.from({ length: 8 }, (_, id) => slow.run({ id, src, crc32: true, sha256: true }));
  await new Promise((r) => setImmediate(r)); // the batch is now running natively
  const closing = slow.close();
  const outcomes = await Promise.allSettled(pending);
  await closing;
  t.ok(outcomes.every((o) => o.status === 'rejected'), 'every job of the cancelled batch rejects');
  const reason = (outcomes[0] as PromiseRejectedResult).reason as TensorizeError;
  t.equal(reason.code, 'E_INTERRUPTED');
  await t.rejects(slow.run({ id: 9, src, crc32: true, sha256: false }), { code: 'E_INTERRUPTED' }, 'a closed runner takes no more jobs');
});
