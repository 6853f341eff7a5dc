/**
 * Hostile inputs, part 5: safetensors input (header length, header text, offsets, entries,
 * "__proto__" and friends as names), each a clean E_SAFETENSORS error naming the file; and a
 * .tensors tensor named "__metadata__", which cannot be exported to safetensors as it is.
 *
 * The bulk of it runs verifyFile with the worker pool swapped (t.mockImport with POOL_MOCK)
 * for an in-process one that runs the very same runJob(): a worker thread costs ~2 s to
 * start under tap's TypeScript loader. Why, and the shared scaffolding: helpers/hostile.ts.
 */
import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TensorizeError } from '../src/errors.js';
import { TensorType } from '../src/format/constants.js';
import { FileSource } from '../src/sources/file.js';
import { POOL_MOCK } from './helpers/pool.js';
import { describe, expectError, inputOutcome, safetensors, structure, verifyPath, type ErrExpect } from './helpers/hostile.js';
import { build, f32 } from './helpers/tensors-builder.js';

const { verifyFile } = await t.mockImport<typeof import('../src/ops/verify.js')>('../src/ops/verify.js', POOL_MOCK);
const { writeTensorizer } = await t.mockImport<typeof import('../src/ops/serialize.js')>('../src/ops/serialize.js', POOL_MOCK);
const { exportSafetensors } = await t.mockImport<typeof import('../src/ops/export.js')>('../src/ops/export.js', POOL_MOCK);

t.test('5. safetensors input', async (t) => {
  const dir = t.testdir({});
  let n = 0;
  const st = async (tt: Test, file: Buffer, x: Omit<ErrExpect, 'file' | 'codes'> & { codes?: string[] }, msg: string) => {
    const p = join(dir, `in${n++}.safetensors`);
    writeFileSync(p, file);
    const o = await inputOutcome(p);
    expectError(tt, o, { codes: ['E_SAFETENSORS'], ...x, file: p }, `${msg}: ${describe(o)}`);
    return o;
  };
  const ok1 = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };

  t.test('positive control', async (t) => {
    const p = join(dir, 'ok.safetensors');
    writeFileSync(p, safetensors(ok1, 8));
    const o = await inputOutcome(p);
    t.ok(o.kind === 'ok' && o.m.tensors.length === 1, describe(o));
  });

  t.test('header length', async (t) => {
    await st(t, safetensors(ok1, 8, 100_000_001n), { word: /exceeds/ }, 'header length 100,000,001');
    await st(t, safetensors(ok1, 8, 2n ** 64n - 1n), { word: /exceeds/ }, 'header length 2^64-1');
    await st(t, safetensors(ok1, 8, 1000n), { word: /runs past the end/ }, 'header length past EOF');
    await st(t, safetensors('', 0), { word: /does not start with/ }, 'header length 0');
    await st(t, Buffer.from([1, 2, 3]), { word: /too small/ }, '3-byte file');
    await st(t, Buffer.alloc(0), { word: /too small/ }, 'empty file');
  });

  t.test('header text', async (t) => {
    await st(t, safetensors('[{"a":1}]'), { word: /does not start with "\{"/ }, 'header is an array');
    await st(t, safetensors(' {}'), { word: /does not start with/ }, 'leading space');
    await st(t, safetensors(Buffer.from('{"a\xff":1}', 'latin1')), { word: /UTF-8/ }, 'invalid UTF-8');
    await st(t, safetensors(Buffer.from([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d])), { word: /UTF-8/ }, 'UTF-8 encoded surrogate');
    await st(t, safetensors('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8), { word: /duplicate key "a"/ }, 'duplicate keys');
    await st(t, safetensors('{"a":{"dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4]}}', 4), { word: /duplicate key "dtype"/ }, 'duplicate keys inside an entry');
    await st(t, safetensors('{"a":1,}'), { word: /not valid JSON/ }, 'trailing comma');
    await st(t, safetensors('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}} x', 4), { word: /not valid JSON/ }, 'trailing garbage');
    await st(t, safetensors('{"a":' + '['.repeat(100_000)), { word: /not valid JSON|nesting/ }, 'deep nesting');
    await st(t, safetensors('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,18446744073709551616]}}', 4), { word: /too large/ }, 'offset 2^64');
    await st(t, safetensors('{"a":{"dtype":"F32","shape":[1e300],"data_offsets":[0,4]}}', 4), { word: /invalid entry|needs/ }, 'shape 1e300');
    await st(t, safetensors('{"a":{"dtype":"U8","shape":[1e20],"data_offsets":[0,1e20]}}', 4), { word: /invalid entry|past the end/ }, 'shape and offsets 1e20');
    await st(
      t,
      safetensors(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(ok1))]), 8),
      { word: /does not start with/ },
      'a UTF-8 byte-order mark before "{" is refused like the reference implementation',
    );
  });

  t.test('offsets', async (t) => {
    const e = (a: number, b: number, shape = [(b - a) / 4]) => ({ dtype: 'F32', shape, data_offsets: [a, b] });
    await st(t, safetensors({ a: e(0, 4), b: e(8, 12) }, 12), { word: /contiguous/, tensor: 'b' }, 'gap');
    await st(t, safetensors({ a: e(0, 8), b: e(4, 12) }, 12), { word: /contiguous/, tensor: 'b' }, 'overlap');
    await st(t, safetensors({ b: e(8, 12), a: e(4, 8) }, 12), { word: /expected 0/, tensor: 'a' }, 'out of order, first 4 bytes uncovered');
    await st(t, safetensors({ a: e(0, 4), b: e(4, 8) }, 12), { word: /cover only 8/ }, 'data longer than covered');
    await st(t, safetensors({ a: e(0, 4), b: e(4, 8) }, 6), { word: /past the end/ }, 'data shorter than covered');
    await st(t, safetensors({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4), { word: /needs 8/, tensor: 'a' }, 'wrong byte count for shape');
    await st(t, safetensors({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, 4), { word: /data_offsets \[4, 0\]/, tensor: 'a' }, 'end before begin');
    await st(t, safetensors({ a: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 4), { word: /invalid entry/, tensor: 'a' }, 'one offset');
    await st(t, safetensors({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4, 8] } }, 4), { word: /invalid entry/, tensor: 'a' }, 'three offsets');
    await st(t, safetensors({ a: { dtype: 'F32', shape: [1], data_offsets: [-4, 0] } }, 4), { word: /invalid entry/, tensor: 'a' }, 'negative offset');
    await st(t, safetensors({ a: { dtype: 'F32', shape: [2 ** 52, 2 ** 52], data_offsets: [0, 4] } }, 4), { word: /needs/, tensor: 'a' }, 'shape product far past 2^53');
  });

  t.test('entries', async (t) => {
    await st(t, safetensors({ a: { dtype: 'F33', shape: [1], data_offsets: [0, 4] } }, 4), { word: /unknown dtype "F33"/, tensor: 'a' }, 'unknown dtype');
    await st(t, safetensors({ a: { dtype: '__proto__', shape: [1], data_offsets: [0, 4] } }, 4), { word: /unknown dtype/, tensor: 'a' }, 'dtype "__proto__"');
    await st(t, safetensors({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), { word: /invalid entry.*shape/, tensor: 'a' }, 'negative shape');
    await st(t, safetensors({ a: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, 4), { word: /invalid entry.*shape/, tensor: 'a' }, 'float shape');
    await st(t, safetensors({ a: { dtype: 'F32', shape: ['1'], data_offsets: [0, 4] } }, 4), { word: /invalid entry.*shape/, tensor: 'a' }, 'string shape');
    await st(t, safetensors({ a: { dtype: 'F32', shape: 1, data_offsets: [0, 4] } }, 4), { word: /invalid entry.*shape/, tensor: 'a' }, 'shape not an array');
    await st(t, safetensors({ a: { shape: [1], data_offsets: [0, 4] } }, 4), { word: /invalid entry.*dtype/, tensor: 'a' }, 'no dtype');
    await st(t, safetensors({ a: [1, 2] }, 0), { word: /invalid entry/, tensor: 'a' }, 'entry is an array');
    await st(t, safetensors({ a: null }, 0), { word: /invalid entry/, tensor: 'a' }, 'entry is null');
    await st(t, safetensors({ __metadata__: { a: 1 }, ...ok1 }, 8), { word: /not a string/ }, '__metadata__ with a number');
    await st(t, safetensors({ __metadata__: { a: null }, ...ok1 }, 8), { word: /not a string/ }, '__metadata__ with null');
    await st(t, safetensors({ __metadata__: { a: { b: 'c' } }, ...ok1 }, 8), { word: /not a string/ }, '__metadata__ with an object');
    await st(t, safetensors({ __metadata__: 'x', ...ok1 }, 8), { word: /__metadata__ is not an object/ }, '__metadata__ a string');
    await st(t, safetensors({ '': { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 8), { word: /empty name/ }, 'empty tensor name');
    await st(t, safetensors({ a: { dtype: 'F4', shape: [3], data_offsets: [0, 2] } }, 2), { codes: ['E_SAFETENSORS'], word: /whole bytes/ }, 'F4 with an odd element count');
    await st(t, safetensors({ a: { dtype: 'F4', shape: [2], data_offsets: [0, 1] } }, 1), { codes: ['E_INEXPRESSIBLE'], word: /sub-byte/ }, 'F4 tensor (valid safetensors, no tensorizer dtype)');
  });

  t.test('__proto__ and friends as names', async (t) => {
    const names = ['__proto__', 'constructor', 'toString', 'hasOwnProperty'];
    // JSON text built by hand: an object literal with a "__proto__" key would set the prototype.
    const parts = names.map((nm, i) => `${JSON.stringify(nm)}:{"dtype":"F32","shape":[1],"data_offsets":[${4 * i},${4 * i + 4}]}`);
    parts.push('"__metadata__":{"__proto__":"p","constructor":"c"}');
    const p = join(dir, 'proto.safetensors');
    writeFileSync(p, safetensors(`{${parts.join(',')}}`, f32(1, 2, 3, 4)));
    const o = await inputOutcome(p);
    t.equal(o.kind, 'ok', describe(o));
    if (o.kind !== 'ok') return;
    t.same(o.m.tensors.map((x) => x.path), names.map((x) => [x]), '"__proto__" and friends are ordinary tensor names');
    t.equal(o.m.metadata.get('__proto__'), 'p', '__metadata__ "__proto__" key is kept as a string');
    t.equal(({} as Record<string, unknown>).p, undefined, 'no prototype pollution');
    // An entry object with its own "__proto__" key does not change the entry.
    const q = join(dir, 'proto2.safetensors');
    writeFileSync(q, safetensors('{"x":{"__proto__":{"dtype":"I8"},"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', 4));
    const o2 = await inputOutcome(q);
    t.ok(o2.kind === 'ok' && o2.m.tensors[0]!.dtype.name === 'float32', `entry with a "__proto__" key: ${describe(o2)}`);
    // Round trip: safetensors -> .tensors -> verify -> safetensors -> openInput.
    const tz = join(dir, 'proto.tensors');
    await writeTensorizer(tz, o.m.tensors.map((x) => ({ path: x.path, type: TensorType.PARAM, dtype: x.dtype, shape: x.shape, data: x.data })), { threads: 1 });
    const v = await verifyPath(tz, verifyFile);
    t.ok(v.kind === 'ok' && v.r.ok && v.r.tensors === 4, `verify: ${describe(v)}`);
    const { entries } = await structure(tz);
    t.same(entries.map((e) => e.name), names, 'names survive in the .tensors index');
    const back = join(dir, 'proto-back.safetensors');
    const src = await FileSource.open(tz);
    try {
      await exportSafetensors(src, back, { threads: 1 });
    } finally {
      await src.close();
    }
    const o3 = await inputOutcome(back);
    t.ok(o3.kind === 'ok' && JSON.stringify(o3.m.tensors.map((x) => x.path[0])) === JSON.stringify(names), `exported back: ${describe(o3)}`);
  });

  t.test('a .tensors tensor named "__metadata__" exports to a valid safetensors file or is refused', async (t) => {
    // Today the reserved name is refused (the first branch below).
    const tz = join(dir, 'meta-name.tensors');
    writeFileSync(tz, build([{ name: '__metadata__', shape: [1], data: f32(1) }]).buf);
    const out = join(dir, 'meta-name.safetensors');
    const src = await FileSource.open(tz);
    let err: unknown;
    try {
      await exportSafetensors(src, out, { threads: 1 });
    } catch (e) {
      err = e;
    } finally {
      await src.close();
    }
    if (err !== undefined) {
      t.ok(err instanceof TensorizeError, `refused: ${describe({ kind: 'error', e: err })}`);
      return;
    }
    const o = await inputOutcome(out);
    t.ok(o.kind === 'ok' && o.m.tensors.some((x) => x.path[0] === '__metadata__'), `exported, then re-read: ${describe(o)}`);
  });
});
