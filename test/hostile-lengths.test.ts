/**
 * Hostile inputs, part 3: absurd lengths (counts, sizes, offsets and lengths up to 2^64 in
 * the header, the index and the tensor headers). Each must end quickly, in bounded memory,
 * in a clean TensorizeError naming the file, and the tensor and byte offset where it matters.
 *
 * The bulk of it runs verifyFile with the worker pool swapped (t.mockImport with POOL_MOCK)
 * for an in-process one that runs the very same runJob(): a worker thread costs ~2 s to
 * start under tap's TypeScript loader. Why, and the shared scaffolding: helpers/hostile.ts.
 */
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { POOL_MOCK } from './helpers/pool.js';
import { describe, expectError, verifyPath, type ErrExpect } from './helpers/hostile.js';
import { basic, build, u64 } from './helpers/tensors-builder.js';

const { verifyFile } = await t.mockImport<typeof import('../src/ops/verify.js')>('../src/ops/verify.js', POOL_MOCK);

t.test('3. absurd lengths: quick, bounded memory, clean errors', async (t) => {
  const dir = t.testdir({});
  const base = build(basic(), { trailer: true });
  const w = base.recs[0]!;
  const wi = base.idx[0]!;
  const patch = (edit: (b: Buffer) => void, from: Buffer = base.buf): Buffer => {
    const b = Buffer.from(from);
    edit(b);
    return b;
  };
  const cases: { name: string; file: Buffer; x: Omit<ErrExpect, 'file'> }[] = [
    { name: 'metadata length 2^63-1', file: patch((b) => b.writeBigUInt64LE(2n ** 63n - 1n, 65)), x: { codes: ['E_FORMAT'], word: /metadata length/, offset: 65 } },
    { name: 'metadata length 2^64-1', file: patch((b) => b.writeBigUInt64LE(2n ** 64n - 1n, 65)), x: { codes: ['E_FORMAT'], word: /metadata length/, offset: 65 } },
    { name: 'tensor count 2^64-1', file: patch((b) => b.writeBigUInt64LE(2n ** 64n - 1n, 57)), x: { codes: ['E_FORMAT'], word: /tensor count/, offset: 57 } },
    { name: 'tensor count 2^32', file: patch((b) => b.writeBigUInt64LE(2n ** 32n, 57)), x: { codes: ['E_FORMAT'], word: /tensor count/, offset: 57 } },
    { name: 'header_size 2^63', file: patch((b) => b.writeBigUInt64LE(2n ** 63n, w.headerOffset)), x: { codes: ['E_FORMAT'], word: /header size .* disagrees/, tensor: 'w', offset: w.headerOffset } },
    { name: 'header_size 2^64-1', file: patch((b) => b.writeBigUInt64LE(2n ** 64n - 1n, w.headerOffset)), x: { codes: ['E_FORMAT'], word: /header size/, tensor: 'w', offset: w.headerOffset } },
    { name: 'header_size 0 ("Unexpected empty header")', file: patch((b) => b.writeBigUInt64LE(0n, w.headerOffset)), x: { codes: ['E_FORMAT'], word: /header size 0/, tensor: 'w' } },
    { name: 'index name length 0xffff', file: patch((b) => b.writeUInt16LE(0xffff, wi.nameLen)), x: { codes: ['E_FORMAT'], word: /truncated/ } },
    { name: 'header name length 0xffff', file: patch((b) => b.writeUInt16LE(0xffff, w.nameLen)), x: { codes: ['E_FORMAT'], word: /too short for its name/, tensor: 'w' } },
    { name: 'header hash block length 0xffff', file: patch((b) => b.writeUInt16LE(0xffff, w.hashBlockLen)), x: { codes: ['E_FORMAT'], word: /hash block/, tensor: 'w', offset: w.hashBlockLen + 2 } },
    { name: 'header hash count 255', file: patch((b) => b.writeUInt8(255, w.hashCount)), x: { codes: ['E_FORMAT'], word: /hash/, tensor: 'w' } },
    {
      name: 'index ndim 255 with dims 0xffffffff',
      file: build(basic((r) => (r[0]!.idx = { shape: Array(255).fill(0xffffffff) })), { trailer: true }).buf,
      x: { codes: ['E_FORMAT'], word: /data length 24 is not|smallest possible header/, tensor: 'w' },
    },
    {
      name: 'index ndim 255 (entry runs past a short index)',
      file: patch((b) => b.writeUInt8(255, wi.ndim)),
      x: { codes: ['E_FORMAT'], word: /truncated|data length/ },
    },
    {
      name: 'header ndim 255 with dims 0xffffffff',
      file: build(basic((r) => (r[0]!.hdr = { shape: Array(255).fill(0xffffffff) })), { trailer: true }).buf,
      x: { codes: ['E_FORMAT'], word: /shape/, tensor: 'w' },
    },
    { name: 'header ndim 255 in a normal header', file: patch((b) => b.writeUInt8(255, w.ndim)), x: { codes: ['E_FORMAT'], word: /too short/, tensor: 'w' } },
    { name: 'index data_length 2^62', file: patch((b) => b.writeBigUInt64LE(2n ** 62n, wi.dataLength)), x: { codes: ['E_FORMAT'], word: /past the end/, tensor: 'w', offset: wi.headerOffset } },
    { name: 'index data_length 2^64-1', file: patch((b) => b.writeBigUInt64LE(2n ** 64n - 1n, wi.dataLength)), x: { codes: ['E_FORMAT'], word: /past the end/, tensor: 'w' } },
    { name: 'header data_length 2^62', file: patch((b) => b.writeBigInt64LE(2n ** 62n, w.dataLengthField)), x: { codes: ['E_FORMAT'], word: /absurd data length/, tensor: 'w', offset: w.dataLengthField } },
    { name: 'header data_length -1', file: patch((b) => b.writeBigInt64LE(-1n, w.dataLengthField)), x: { codes: ['E_FORMAT'], word: /negative data length/, tensor: 'w', offset: w.dataLengthField } },
    { name: 'header data_length 2^40 (safe integer, wrong)', file: patch((b) => b.writeBigInt64LE(2n ** 40n, w.dataLengthField)), x: { codes: ['E_FORMAT'], word: /data length/, tensor: 'w' } },
    { name: 'header_offset into the metadata', file: patch((b) => b.writeBigUInt64LE(80n, wi.headerOffset)), x: { codes: ['E_FORMAT'], word: /inside the metadata/, tensor: 'w' } },
    { name: 'header_offset 0', file: patch((b) => b.writeBigUInt64LE(0n, wi.headerOffset)), x: { codes: ['E_FORMAT'], word: /inside the metadata/, tensor: 'w' } },
    { name: 'header_offset past EOF', file: patch((b) => b.writeBigUInt64LE(BigInt(base.buf.length + 1000), wi.headerOffset)), x: { codes: ['E_FORMAT'], word: /past the end/, tensor: 'w' } },
    { name: 'header_offset 2^64-1', file: patch((b) => b.writeBigUInt64LE(2n ** 64n - 1n, wi.headerOffset)), x: { codes: ['E_FORMAT'], word: /past the end/, tensor: 'w' } },
    { name: 'data_offset before header_offset', file: patch((b) => b.writeBigUInt64LE(BigInt(w.headerOffset - 10), wi.dataOffset)), x: { codes: ['E_FORMAT'], word: /smallest possible header/, tensor: 'w' } },
    { name: 'data_offset 2^64-1', file: patch((b) => b.writeBigUInt64LE(2n ** 64n - 1n, wi.dataOffset)), x: { codes: ['E_FORMAT'], word: /past the end/, tensor: 'w' } },
    {
      name: 'second record header_offset overlapping the first',
      file: patch((b) => b.writeBigUInt64LE(BigInt(w.headerOffset), base.idx[1]!.headerOffset)),
      x: { codes: ['E_FORMAT'], word: /contiguous/, tensor: 'b' },
    },
    {
      name: 'crypt-info length 2^64-1 (v4, encrypted flag)',
      file: build(basic((r) => (r[0]!.hdr = { crypt: u64(2n ** 64n - 1n) })), { version: 4, flags: 1n }).buf,
      x: { codes: ['E_FORMAT'], word: /crypt-info length/, tensor: 'w' },
    },
    {
      name: 'crypt chunk count 0xffff (v3)',
      file: build(basic((r) => { r[0]!.hdr = { crypt: Buffer.concat([u64(2), Buffer.from([0xff, 0xff])]) }; r[1]!.hdr = { crypt: Buffer.concat([u64(2), Buffer.alloc(2)]) }; }), { version: 3 }).buf,
      x: { codes: ['E_FORMAT'], word: /crypt/, tensor: 'w' },
    },
    {
      name: 'crypt chunk length 2^64-1 (v3)',
      file: build(basic((r) => { r[0]!.hdr = { crypt: Buffer.concat([u64(12), Buffer.from([1, 0]), u64(2n ** 64n - 1n), Buffer.alloc(2)]) }; }), { version: 3 }).buf,
      x: { codes: ['E_FORMAT'], word: /crypt chunk length/, tensor: 'w' },
    },
  ];
  for (const c of cases) {
    t.test(c.name, async (t) => {
      const p = join(dir, 'absurd.tensors');
      writeFileSync(p, c.file);
      const rss0 = process.memoryUsage().rss;
      const t0 = performance.now();
      const o = await verifyPath(p, verifyFile, 5000);
      const ms = performance.now() - t0;
      const grew = process.memoryUsage().rss - rss0;
      expectError(t, o, { ...c.x, file: p }, describe(o));
      // Not work in proportion to the lengths claimed (up to 2^64): a bound no busy machine reaches.
      t.ok(ms < 20_000, `took ${ms.toFixed(1)} ms`);
      t.ok(grew < 100 * 1024 * 1024, `rss grew by ${(grew / 1048576).toFixed(1)} MiB`);
    });
  }
});
