// safetensors → .tensors → safetensors keeps every tensor's name, dtype, shape and bytes;
// sharded checkpoints and model directories serialize as one file; failures leave nothing.
import t from 'tap';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HashType, TensorType } from '../src/format/constants.js';
import { headerSize } from '../src/format/header.js';
import { dtypeByName } from '../src/format/dtypes.js';
import { TensorizerFile } from '../src/format/reader.js';
import { verifyFile } from '../src/ops/verify.js';
import { writeTensorizer } from '../src/ops/serialize.js';
import { openInput } from '../src/inputs/index.js';
import { openSafetensorsFile } from '../src/inputs/safetensors.js';
import { exportSafetensors } from '../src/ops/export.js';
import { FileSource } from '../src/sources/file.js';
import type { WriteTensor } from '../src/format/encode.js';
import { checkpointZip, pickleDict, tensorV2 } from './helpers/pickle.js';
import { build, f32 as f32le, type BuildOpts, type Rec } from './helpers/tensors-builder.js';
import { bytes, sha256, writeSafetensors, type StTensor } from './helpers/util.js';

const ALL: StTensor[] = [
  { name: 'model.embed.weight', dtype: 'BF16', shape: [64, 32], data: bytes(64 * 32 * 2, 1) },
  { name: 'f32', dtype: 'F32', shape: [3, 5], data: bytes(60, 2) },
  { name: 'f16', dtype: 'F16', shape: [7], data: bytes(14, 3) },
  { name: 'f64', dtype: 'F64', shape: [2, 2], data: bytes(32, 4) },
  { name: 'i8', dtype: 'I8', shape: [9], data: bytes(9, 5) },
  { name: 'u8', dtype: 'U8', shape: [9], data: bytes(9, 6) },
  { name: 'i16', dtype: 'I16', shape: [3], data: bytes(6, 7) },
  { name: 'i32', dtype: 'I32', shape: [3], data: bytes(12, 8) },
  { name: 'i64', dtype: 'I64', shape: [], data: bytes(8, 9) },
  { name: 'u16', dtype: 'U16', shape: [2], data: bytes(4, 10) },
  { name: 'u32', dtype: 'U32', shape: [2], data: bytes(8, 11) },
  { name: 'u64', dtype: 'U64', shape: [2], data: bytes(16, 12) },
  { name: 'bool', dtype: 'BOOL', shape: [4], data: Buffer.from([0, 1, 1, 0]) },
  { name: 'f8e4m3', dtype: 'F8_E4M3', shape: [4, 4], data: bytes(16, 13) },
  { name: 'f8e5m2', dtype: 'F8_E5M2', shape: [4, 4], data: bytes(16, 14) },
  { name: 'c64', dtype: 'C64', shape: [2], data: bytes(16, 15) },
  { name: 'empty', dtype: 'F32', shape: [0, 4], data: Buffer.alloc(0) },
  { name: 'naïve.名前 with space', dtype: 'F32', shape: [1, 1, 1, 2], data: bytes(8, 16) },
  { name: 'big', dtype: 'F32', shape: [600, 1000], data: bytes(2_400_000, 17) },
];

const expectDtype: Record<string, string> = {
  BF16: '<V2\0torch.bfloat16',
  F32: '<f4',
  F16: '<f2',
  F64: '<f8',
  I8: '|i1',
  U8: '|u1',
  I16: '<i2',
  I32: '<i4',
  I64: '<i8',
  U16: '<u2',
  U32: '<u4',
  U64: '<u8',
  BOOL: '|b1',
  F8_E4M3: '|V1\0torch.float8_e4m3fn',
  F8_E5M2: '|V1\0torch.float8_e5m2',
  C64: '<c8',
};

async function serialize(input: string, out: string, threads?: number) {
  const m = await openInput(input);
  return writeTensorizer(
    out,
    m.tensors.map((x) => ({ path: x.path, type: TensorType.STATE_DICT, dtype: x.dtype, shape: x.shape, data: x.data })),
    { threads },
  );
}

t.test('every dtype survives safetensors → tensors → safetensors', async (t) => {
  const dir = t.testdir();
  writeSafetensors(join(dir, 'in.safetensors'), ALL, { format: 'pt' });
  for (const threads of [1, 3]) {
    const out = join(dir, `out${threads}.tensors`);
    const s = await serialize(join(dir, 'in.safetensors'), out, threads);
    t.equal(s.version, 2, 'opaque dtypes make it data version 2');
    t.equal(s.tensors, ALL.length);
    const src = await FileSource.open(out);
    const tf = await TensorizerFile.open(src);
    for (const [i, x] of ALL.entries()) {
      const e = tf.entries[i]!;
      t.same(e.path, [x.name]);
      t.equal(e.dtypeString, expectDtype[x.dtype], `dtype string for ${x.dtype}`);
      t.same(e.shape, x.shape);
      t.equal(e.type, TensorType.STATE_DICT);
      t.equal(sha256(await src.read(e.dataOffset, e.dataLength)), sha256(x.data), `bytes of ${x.name}`);
    }
    const v = await verifyFile(src);
    t.ok(v.ok);
    t.equal(v.hashesChecked, 2 * ALL.length);
    const back = join(dir, `back${threads}.safetensors`);
    await exportSafetensors(src, back);
    await src.close();
    const b = await openSafetensorsFile(back);
    const raw = readFileSync(back);
    // Export orders tensors by element size (largest first); compare them by name.
    const byName = (a: unknown[], b: unknown[]) => String(a[0]).localeCompare(String(b[0]));
    t.same(
      b.tensors.map((x) => [x.path[0], x.dtype.safetensors, x.shape, sha256(raw.subarray(x.data.ranges[0]!.offset, x.data.ranges[0]!.offset + x.data.ranges[0]!.length))]).sort(byName),
      ALL.map((x) => [x.name, x.dtype, x.shape, sha256(x.data)]).sort(byName),
    );
  }
  t.same(readFileSync(join(dir, 'out1.tensors')), readFileSync(join(dir, 'out3.tensors')), 'output does not depend on the thread count');
});

t.test('--align pads the headers so every tensor starts aligned; hashes, verify and export still hold', async (t) => {
  const dir = t.testdir();
  writeSafetensors(join(dir, 'in.safetensors'), ALL, { format: 'pt' });
  const m = await openInput(join(dir, 'in.safetensors'));
  const tensors = m.tensors.map((x) => ({ path: x.path, type: TensorType.STATE_DICT, dtype: x.dtype, shape: x.shape, data: x.data }));
  await writeTensorizer(join(dir, 'plain.tensors'), tensors);
  await writeTensorizer(join(dir, 'one.tensors'), tensors, { align: 1 });
  t.same(readFileSync(join(dir, 'one.tensors')), readFileSync(join(dir, 'plain.tensors')), 'align 1 writes exactly the unpadded file');
  const plain = readFileSync(join(dir, 'plain.tensors'));
  for (const align of [8, 64, 4096]) {
    const out = join(dir, `a${align}.tensors`);
    await writeTensorizer(out, tensors, { align });
    const src = await FileSource.open(out);
    const tf = await TensorizerFile.open(src);
    const withData = tf.entries.filter((e) => e.dataLength > 0);
    t.ok(withData.every((e) => e.dataOffset % align === 0), `align ${align}: every data offset is a multiple`);
    t.ok(src.size > plain.length && src.size < plain.length + align * ALL.length, `align ${align}: padding is bounded (${src.size - plain.length} bytes)`);
    for (const [i, x] of ALL.entries()) {
      const e = tf.entries[i]!;
      t.equal(sha256(await src.read(e.dataOffset, e.dataLength)), sha256(x.data), `align ${align}: bytes of ${x.name}`);
      const { header, raw } = await tf.readHeader(e);
      t.equal(header.dataLength, x.data.length, 'data_length is still read from the header\'s last 8 bytes');
      const bare = headerSize(header.nameBytes.length, Buffer.from(header.dtypeString, 'latin1').length, header.shape.length, [HashType.CRC32, HashType.SHA256]);
      t.ok(raw.subarray(bare - 8, raw.length - 8).every((x) => x === 0), `align ${align}: ${raw.length - bare} padding bytes, all zero, before data_length`);
    }
    const v = await verifyFile(src);
    t.ok(v.ok && v.hashesChecked === 2 * ALL.length, `align ${align}: verify passes (the padding is hashed like the rest of the header)`);
    await exportSafetensors(src, join(dir, `back${align}.safetensors`));
    await src.close();
    const b = await openSafetensorsFile(join(dir, `back${align}.safetensors`));
    t.same(new Map(b.tensors.map((x) => [x.path[0], x.shape])), new Map(ALL.map((x) => [x.name, x.shape])));
  }
  for (const bad of [0, 3, 100, 2 ** 21]) await t.rejects(writeTensorizer(join(dir, 'bad.tensors'), tensors, { align: bad }), { code: 'E_USAGE' }, `align ${bad} is refused`);
});

t.test('a plain-dtype model is data version 1', async (t) => {
  const dir = t.testdir();
  writeSafetensors(join(dir, 'a.safetensors'), [ALL[1]!, ALL[2]!]);
  t.equal((await serialize(join(dir, 'a.safetensors'), join(dir, 'a.tensors'))).version, 1);
});

t.test('sharded checkpoints and directories become one file in shard order', async (t) => {
  const dir = t.testdir();
  writeSafetensors(join(dir, 'model-00001-of-00002.safetensors'), [ALL[0]!, ALL[1]!]);
  writeSafetensors(join(dir, 'model-00002-of-00002.safetensors'), [ALL[2]!, ALL[18]!]);
  const weightMap = { [ALL[0]!.name]: 'model-00001-of-00002.safetensors', f32: 'model-00001-of-00002.safetensors', f16: 'model-00002-of-00002.safetensors', big: 'model-00002-of-00002.safetensors' };
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 1 }, weight_map: weightMap }));
  for (const input of [join(dir, 'model.safetensors.index.json'), dir]) {
    const m = await openInput(input);
    t.same(m.tensors.map((x) => x.path[0]), [ALL[0]!.name, 'f32', 'f16', 'big']);
    t.equal(m.files.length, 2);
  }
  const s = await serialize(dir, join(dir, 'model.tensors'));
  t.equal(s.tensors, 4);
  const src = await FileSource.open(join(dir, 'model.tensors'));
  t.ok((await verifyFile(src)).ok);
  await src.close();

  // The index and the shards must agree.
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...weightMap, missing: 'model-00001-of-00002.safetensors' } }));
  await t.rejects(openInput(dir), { code: 'E_SAFETENSORS', message: /"missing" is listed in weight_map but is not in model-00001-of-00002.safetensors/ });
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { f32: '../outside.safetensors' } }));
  await t.rejects(openInput(dir), { code: 'E_SAFETENSORS', message: /outside the index's directory/ });
});

t.test('a directory of unindexed shards; duplicate names across files are refused', async (t) => {
  const dir = t.testdir();
  writeSafetensors(join(dir, 'a.safetensors'), [ALL[1]!]);
  writeSafetensors(join(dir, 'b.safetensors'), [ALL[2]!]);
  t.same((await openInput(dir)).tensors.map((x) => x.path[0]), ['f32', 'f16']);
  writeSafetensors(join(dir, 'c.safetensors'), [ALL[1]!]);
  await t.rejects(openInput(dir), { code: 'E_SAFETENSORS', message: /"f32" is in both/ });
  await t.rejects(openInput(t.testdir({ 'x.txt': 'hi' })), { code: 'E_INPUT', message: /no model weights found/ });
});

t.test('a failed write leaves no output and no temporary file', async (t) => {
  const dir = t.testdir({ 'small.bin': bytes(100, 1) });
  const f32 = dtypeByName('float32')!;
  await t.rejects(
    writeTensorizer(join(dir, 'out.tensors'), [
      { path: ['ok'], type: TensorType.STATE_DICT, dtype: f32, shape: [25], data: { path: join(dir, 'small.bin'), ranges: [{ offset: 0, length: 100 }] } },
      // claims bytes past the end of its source: the copy fails midway
      { path: ['short'], type: TensorType.STATE_DICT, dtype: f32, shape: [25], data: { path: join(dir, 'small.bin'), ranges: [{ offset: 50, length: 100 }] } },
    ]),
    { code: 'E_IO', message: /short read/ },
  );
  t.same(readdirSync(dir), ['small.bin']);
});

t.test('the writer refuses what tensorizer could not read back', async (t) => {
  const dir = t.testdir({ 'x.bin': bytes(8, 1) });
  const f32 = dtypeByName('float32')!;
  const data = { path: join(dir, 'x.bin'), ranges: [{ offset: 0, length: 4 }] };
  await t.rejects(writeTensorizer(join(dir, 'o.tensors'), []), { code: 'E_INPUT', message: /no tensors/ });
  await t.rejects(
    writeTensorizer(join(dir, 'o.tensors'), [
      { path: ['a'], type: TensorType.STATE_DICT, dtype: f32, shape: [1], data },
      { path: ['a'], type: TensorType.STATE_DICT, dtype: f32, shape: [1], data },
    ]),
    { code: 'E_INPUT', message: /duplicate tensor name a/ },
  );
  await t.rejects(writeTensorizer(join(dir, 'o.tensors'), [{ path: [''], type: TensorType.STATE_DICT, dtype: f32, shape: [1], data }]), { message: /empty/ });
  await t.rejects(writeTensorizer(join(dir, 'o.tensors'), [{ path: ['a'], type: TensorType.STATE_DICT, dtype: f32, shape: [2], data }]), { message: /4 bytes of data given for 8 bytes/ });
  await t.rejects(writeTensorizer(join(dir, 'o.tensors'), [{ path: ['a', 0], type: TensorType.PARAM, dtype: f32, shape: [1], data }]), { message: /structured paths need the state_dict/ });
  t.same(readdirSync(dir), ['x.bin']);
});

t.test('structured paths and meta tensors are written as tensorizer writes them', async (t) => {
  const dir = t.testdir({ 'x.bin': bytes(16, 1) });
  const f32 = dtypeByName('float32')!;
  const out = join(dir, 'o.tensors');
  const s = await writeTensorizer(out, [
    { path: ['model', 'layers', 0, 'w'], type: TensorType.STATE_DICT, dtype: f32, shape: [2, 2], data: { path: join(dir, 'x.bin'), ranges: [{ offset: 0, length: 16 }] } },
    { path: ['model', 'é'], type: TensorType.STATE_DICT, dtype: f32, shape: [3], meta: true },
  ]);
  t.equal(s.version, 4, 'a meta tensor makes it data version 4');
  const raw = readFileSync(out);
  t.ok(raw.includes(Buffer.from('\x1e["model","layers",0,"w"]')), 'compact JSON after 0x1E');
  t.ok(raw.includes(Buffer.from('\x1e["model","\\u00e9"]')), 'non-ASCII escaped as Python does');
  const src = await FileSource.open(out);
  const v = await verifyFile(src);
  await src.close();
  t.ok(v.ok);
  t.equal(v.meta, 1);
});

t.test('input sniffing: a safetensors header length may start with any byte', async (t) => {
  // 0x80 is also the first byte of a pickle, "PK" of a zip: the header length decides.
  for (const nameLen of [0x80 - 52, 0x4b50 - 52]) {
    const dir = t.testdir();
    const name = 'n'.repeat(nameLen);
    writeSafetensors(join(dir, 'x'), [{ name, dtype: 'U8', shape: [1], data: Buffer.from([7]) }]);
    const first = readFileSync(join(dir, 'x')).subarray(0, 2);
    t.ok(first[0] === 0x80 || first.toString('latin1') === 'PK', `header length starts with ${first.toString('hex')}`);
    t.same((await openInput(join(dir, 'x'))).tensors.map((x) => x.path[0]), [name]);
  }
  const dir = t.testdir({ 'ckpt.pt': Buffer.from('PK\x03\x04rest of a zip', 'latin1'), 'legacy.pt': Buffer.from([0x80, 0x02, 0x8a, 0x0a]) });
  await t.rejects(openInput(join(dir, 'ckpt.pt')), { code: 'E_INPUT', message: /not a readable PyTorch zip archive/ });
  await t.rejects(openInput(join(dir, 'legacy.pt')), { code: 'E_UNSUPPORTED', message: /bare pickle, not a torch\.save checkpoint/ });
});

t.test('a dimension of 2^32 or more makes data version 5, laid out as the independent builder does (docs/format.md §4.1); without one nothing changes', async (t) => {
  const LONG = 2 ** 32;
  const w = f32le(0, 1, 2, 3, 4, 5);
  const b = Buffer.from([1, 0, 2, 0, 3, 0]);
  const dir = t.testdir({ 'w.bin': w, 'b.bin': b });
  const f32 = dtypeByName('float32')!;
  const i16 = dtypeByName('int16')!;
  const bf16 = dtypeByName('bfloat16')!;
  const mine = (extra: WriteTensor[]): WriteTensor[] => [
    { path: ['w'], type: TensorType.PARAM, dtype: f32, shape: [2, 3], data: { path: join(dir, 'w.bin'), ranges: [{ offset: 0, length: 24 }] } },
    ...extra,
    { path: ['b'], type: TensorType.PARAM, dtype: i16, shape: [3], data: { path: join(dir, 'b.bin'), ranges: [{ offset: 0, length: 6 }] } },
  ];
  const theirs = (extra: Rec[]): Rec[] => [{ name: 'w', shape: [2, 3], data: w }, ...extra, { name: 'b', dtype: '<i2', shape: [3], data: b }];
  const write = async (name: string, tensors: WriteTensor[]) => {
    const out = join(dir, name);
    const s = await writeTensorizer(out, tensors, { trailer: false, threads: 1 });
    return { s, buf: readFileSync(out), out };
  };

  // Without a long dimension: versions 1-4 as before, no flag, no tags.
  const short = await write('short.tensors', mine([{ path: ['e'], type: TensorType.PARAM, dtype: f32, shape: [0, 0xffffffff] }]));
  t.equal(short.s.version, 1, 'a dimension of 2^32 - 1 still fits version 1');
  t.same(short.buf, build(theirs([{ name: 'e', shape: [0, 0xffffffff], data: Buffer.alloc(0) }])).buf, 'byte for byte the untagged layout');

  const cases: [string, WriteTensor[], Rec[], BuildOpts][] = [
    ['[2^32, 0]', [{ path: ['long'], type: TensorType.PARAM, dtype: f32, shape: [LONG, 0] }], [{ name: 'long', shape: [LONG, 0], data: Buffer.alloc(0) }], {}],
    ['[0, 2^32, 3] and [2^52, 0] with a bf16 meta tensor of [2^32, 2]', [
      { path: ['long'], type: TensorType.PARAM, dtype: i16, shape: [0, LONG, 3] },
      { path: ['wider'], type: TensorType.PARAM, dtype: f32, shape: [2 ** 52, 0] },
      { path: ['meta'], type: TensorType.PARAM, dtype: bf16, shape: [LONG, 2], meta: true },
    ], [
      { name: 'long', dtype: '<i2', shape: [0, LONG, 3], data: Buffer.alloc(0) },
      { name: 'wider', shape: [2 ** 52, 0], data: Buffer.alloc(0) },
      { name: 'meta', dtype: '<V2\0torch.bfloat16', shape: [LONG, 2], data: Buffer.alloc(0) },
    ], {}],
  ];
  for (const [label, extra, recs] of cases) {
    const got = await write('long.tensors', mine(extra));
    t.equal(got.s.version, 5, `${label}: data version 5`);
    const want = build(theirs(recs), { version: 5, flags: 2n });
    t.equal(got.buf.readUInt32LE(want.idx[0]!.tag), 1, `${label}: the first (short) entry is tagged 1`);
    t.same(got.buf, want.buf, `${label}: byte for byte the builder's v5 file (flag bit 1, every entry tagged, u64 dimensions in the long entries and their headers)`);
    const src = await FileSource.open(got.out);
    const tf = await TensorizerFile.open(src);
    t.same(tf.entries.map((e) => [e.name, e.shape, e.dimBytes]), [['w', [2, 3], 4], ...recs.map((r) => [r.name, r.shape, 8]), ['b', [3], 4]], `${label}: read back`);
    const v = await verifyFile(src);
    t.ok(v.ok && v.version === 5, `${label}: verify passes`);
    const st = join(dir, 'back.safetensors');
    const exported = await exportSafetensors(src, st, { meta: 'skip' });
    await src.close();
    t.equal(exported.tensors, 2 + recs.filter((r) => r.name !== 'meta').length, `${label}: exported (the meta tensor skipped)`);
    const back = await openSafetensorsFile(st);
    t.same(new Map(back.tensors.map((x) => [x.path[0], x.shape])).get('long'), recs[0]!.shape, `${label}: the long shape survives export`);
  }

  // What the format cannot hold, or tensorize cannot represent exactly, is refused cleanly.
  for (const [shape, why] of [[[2 ** 53, 0], /dimension 9007199254740992; tensorize writes dimensions from 0 to 2\^53 - 1/], [[1.5], /dimension 1.5/], [[-1], /dimension -1/], [Array(256).fill(1), /256 dimensions; the format allows 255/]] as const) {
    await t.rejects(writeTensorizer(join(dir, 'bad.tensors'), mine([{ path: ['x'], type: TensorType.PARAM, dtype: f32, shape: [...shape], meta: true }])), { code: 'E_INEXPRESSIBLE', message: why }, `shape [${shape.length > 3 ? `${shape.length} dims` : shape}] is refused`);
  }
  t.notOk(readdirSync(dir).includes('bad.tensors'), 'and nothing is written');
});

t.test('safetensors and PyTorch inputs with a [2^32, 0] tensor serialize to data version 5', async (t) => {
  const dir = t.testdir();
  const st = join(dir, 'long.safetensors');
  writeSafetensors(st, [{ name: 'a', dtype: 'F32', shape: [2], data: bytes(8, 1) }, { name: 'long', dtype: 'BF16', shape: [2 ** 32, 0], data: Buffer.alloc(0) }]);
  const s = await serialize(st, join(dir, 'st.tensors'));
  t.equal(s.version, 5);
  const pt = join(dir, 'long.pt');
  writeFileSync(pt, checkpointZip(pickleDict([['a', tensorV2('FloatStorage', '0', 2, 0, [2], [1])], ['long', tensorV2('FloatStorage', '1', 0, 0, [0, 2 ** 32], [2 ** 32, 1])]]), { '0': bytes(8, 1), '1': Buffer.alloc(0) }));
  const m = await openInput(pt);
  t.same(m.tensors.map((x) => x.shape), [[2], [0, 2 ** 32]], 'the checkpoint reader keeps the long dimension');
  const p = await serialize(pt, join(dir, 'pt.tensors'));
  t.equal(p.version, 5);
  for (const f of ['st.tensors', 'pt.tensors']) {
    const src = await FileSource.open(join(dir, f));
    const v = await verifyFile(src);
    await src.close();
    t.ok(v.ok && v.tensors === 2, `${f} verifies`);
  }
});
