/**
 * Hostile inputs, part 4: the structural rules of a .tensors file (names, types, hashes,
 * versions, flags, counts, record order, header against index), each broken on its own in a
 * file made by the hand-rolled builder (helpers/tensors-builder.ts), which is first checked
 * against the golden file of docs/format.md §5.2. Every broken file must end in a clean
 * TensorizeError naming the file (and the tensor and byte offset where it matters), or, for
 * what tensorizer accepts but verify refuses, a result that is not ok and says why.
 *
 * The bulk of it runs verifyFile with the worker pool swapped (t.mockImport with POOL_MOCK)
 * for an in-process one that runs the very same runJob(): a worker thread costs ~2 s to
 * start under tap's TypeScript loader. Why, and the shared scaffolding: helpers/hostile.ts.
 */
import t, { type Test } from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileSource } from '../src/sources/file.js';
import { POOL_MOCK } from './helpers/pool.js';
import { describe, expectError, verifyPath, type ErrExpect } from './helpers/hostile.js';
import { basic, build, f32, u64, type BuildOpts, type Built, type Rec } from './helpers/tensors-builder.js';

const { verifyFile } = await t.mockImport<typeof import('../src/ops/verify.js')>('../src/ops/verify.js', POOL_MOCK);
const { exportSafetensors } = await t.mockImport<typeof import('../src/ops/export.js')>('../src/ops/export.js', POOL_MOCK);

t.test('builder sanity: reproduces the 216-byte golden file of docs/format.md §5.2 and verifies', async (t) => {
  // docs/format.md §5.2: one tensor, exact-size metadata, no trailer.
  const golden = Buffer.from(
    [
      '0000: 7c 54 5a 52 7c 01 00 00 00 00 00 00 00 00 00 00',
      '0010: 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00',
      '0020: 00 00 00 00 00 00 00 00 00 18 00 00 00 00 00 00',
      '0030: 00 00 00 00 00 00 00 00 00 01 00 00 00 00 00 00',
      '0040: 00 29 00 00 00 00 00 00 00 01 00 77 00 03 3c 66',
      '0050: 34 02 02 00 00 00 03 00 00 00 72 00 00 00 00 00',
      '0060: 00 00 c0 00 00 00 00 00 00 00 18 00 00 00 00 00',
      '0070: 00 00 4e 00 00 00 00 00 00 00 00 00 00 01 00 77',
      '0080: 03 3c 66 34 02 02 00 00 00 03 00 00 00 29 00 02',
      '0090: 00 04 fd bd 1b 0e 01 20 db 63 6a ef 3f 1b fc ab',
      '00a0: bf 20 24 b0 83 65 95 b7 ad 93 86 a8 78 1c 0e f2',
      '00b0: d8 aa 56 6e 6e b1 84 1f 18 00 00 00 00 00 00 00',
      '00c0: 00 00 00 00 00 00 80 3f 00 00 00 40 00 00 40 40',
      '00d0: 00 00 80 40 00 00 a0 40',
    ]
      .map((l) => l.slice(6).replace(/ /g, ''))
      .join(''),
    'hex',
  );
  t.equal(golden.length, 216);
  const b = build([{ name: 'w', shape: [2, 3], data: f32(0, 1, 2, 3, 4, 5) }]);
  t.equal(b.buf.toString('hex'), golden.toString('hex'), 'builder output equals the golden dump');
  const dir = t.testdir({});
  const p = join(dir, 'g.tensors');
  writeFileSync(p, b.buf);
  const o = await verifyPath(p, verifyFile);
  t.equal(o.kind, 'ok', describe(o));
  if (o.kind === 'ok') t.ok(o.r.ok);
  // and the two-tensor base every structural case starts from
  writeFileSync(p, build(basic(), { trailer: true }).buf);
  const o2 = await verifyPath(p, verifyFile);
  t.ok(o2.kind === 'ok' && o2.r.ok && o2.r.warnings.length === 0, describe(o2));
});

// =======================================================================================
// 4. Structural rules

t.test('4. structural rules', async (t) => {
  const dir = t.testdir({});
  let n = 0;
  const check = async (tt: Test, b: Built | Buffer, x: Omit<ErrExpect, 'file'>, msg: string) => {
    const p = join(dir, `s${n++}.tensors`);
    writeFileSync(p, Buffer.isBuffer(b) ? b : b.buf);
    const o = await verifyPath(p, verifyFile);
    expectError(tt, o, { ...x, file: p }, `${msg}: ${describe(o)}`);
    return o;
  };
  const accept = async (tt: Test, b: Built | Buffer, msg: string, warn?: RegExp) => {
    const p = join(dir, `s${n++}.tensors`);
    writeFileSync(p, Buffer.isBuffer(b) ? b : b.buf);
    const o = await verifyPath(p, verifyFile);
    tt.ok(o.kind === 'ok' && o.r.ok, `${msg}: ${describe(o)}`);
    if (warn) tt.ok(o.kind === 'ok' && o.r.warnings.some((w) => warn.test(w)), `${msg}: warns ${warn}`);
    return o;
  };

  // Accepted by tensorizer but refused by verify: the result is not ok and says why.
  const refuse = async (tt: Test, b: Built | Buffer, msg: string, why: RegExp) => {
    const p = join(dir, `s${n++}.tensors`);
    writeFileSync(p, Buffer.isBuffer(b) ? b : b.buf);
    const o = await verifyPath(p, verifyFile);
    tt.ok(o.kind === 'ok' && !o.r.ok && o.r.problems.some((x) => why.test(x)), `${msg}: ${describe(o)}`);
    return o;
  };

  t.test('positive controls (things tensorizer accepts)', async (t) => {
    await accept(t, build(basic(), { metaPad: 1000 }), 'zero padding after the index entries');
    await accept(t, build(basic(), { gapAfterMeta: 100 }), 'a 100-byte gap between the index and the first record');
    await accept(t, build(basic(), { trailer: true }), 'the 8-byte end marker');
    await accept(t, build(basic((r) => r.forEach((x) => (x.hdr = { crypt: Buffer.concat([u64(2), Buffer.alloc(2)]) }))), { version: 4, flags: 1n }), 'v4 with the encrypted flag and empty crypt info');
    await refuse(t, build(basic((r) => (r[0]!.hdr = { hashes: [] }))), 'a tensor with no hashes (refused: its data is unchecked)', /"w" \(#0\) stores no hashes/);
    await accept(t, build(basic((r) => (r[0]!.hdr = { hashes: [{ type: 1, len: 32 }] }))), 'SHA-256 only');
    await accept(t, build([{ name: '\x1e["a",0]', type: 2 }, { name: '\x1e["a",1]', type: 2 }, { name: '\x1e["b"]', type: 2 }]), 'structured paths');
    await accept(t, build([{ name: 'bf', dtype: '<V2\0torch.bfloat16', shape: [2] }], { version: 2 }), 'opaque dtype');
    await accept(t, build([{ name: 'u', dtype: '<V2\0torch.uint16', shape: [2] }]), 'older opaque uint16 spelling');
    const withTrailing = build(basic(), { trailer: true }).buf;
    withTrailing[withTrailing.length - 1] = 7;
    await refuse(t, withTrailing, 'a non-zero 8-byte end marker (refused; tensorizer ignores it)', /the 8 bytes after the last tensor record .* are not tensorizer's zero end marker/);
  });

  t.test('records: gap, order, overlap', async (t) => {
    await check(t, build(basic(), { gapBetween: 16 }), { codes: ['E_FORMAT'], word: /contiguous/, tensor: 'b' }, '16-byte gap between records');
    await check(t, build(basic(), { swapIndex: [0, 1] }), { codes: ['E_FORMAT'], word: /index order/ }, 'two index entries swapped');
    await check(t, build(basic(), { count: 3n, metaPad: 200 }), { codes: ['E_FORMAT'], word: /empty name|truncated|name/ }, 'count larger than the entries (zero padding parsed as an entry)');
  });

  t.test('names', async (t) => {
    await check(t, build([{ name: 'x' }, { name: 'x' }]), { codes: ['E_FORMAT'], word: /duplicate/, tensor: 'x' }, 'duplicate names');
    await check(t, build([{ name: 'a', type: 2 }, { name: '\x1e["a",0]', type: 2 }]), { codes: ['E_FORMAT'], word: /conflicts|prefix/ }, '"a" then ["a",0]');
    await check(t, build([{ name: '\x1e["a",0]', type: 2 }, { name: 'a', type: 2 }]), { codes: ['E_FORMAT'], word: /prefix|conflicts/, tensor: 'a' }, '["a",0] then "a"');
    await check(t, build([{ name: '\x1e["a",0]', type: 2 }, { name: '\x1e["a","b"]', type: 2 }]), { codes: ['E_FORMAT'], word: /mixes/ }, 'string and integer keys at one level');
    await check(t, build([{ name: '\x1e[1.0]', type: 2 }]), { codes: ['E_FORMAT'], word: /strings or non-negative integers/, offset: 75 }, 'structured path with a float');
    await check(t, build([{ name: '\x1e[1e3]', type: 2 }]), { codes: ['E_FORMAT'], word: /strings or non-negative integers/ }, 'structured path with an exponent');
    await check(t, build([{ name: '\x1e[-1]', type: 2 }]), { codes: ['E_FORMAT'], word: /strings or non-negative integers/ }, 'structured path with a negative integer');
    await check(t, build([{ name: '\x1e{"a":1}', type: 2 }]), { codes: ['E_FORMAT'], word: /JSON array/ }, 'structured path with an object');
    await check(t, build([{ name: '\x1e[{"a":1}]', type: 2 }]), { codes: ['E_FORMAT'], word: /strings or non-negative integers/ }, 'structured path holding an object');
    await check(t, build([{ name: '\x1e[]', type: 2 }]), { codes: ['E_FORMAT'], word: /empty/ }, 'structured path, empty array');
    await check(t, build([{ name: '\x1e[NaN]', type: 2 }]), { codes: ['E_FORMAT'], word: /strings or non-negative integers/ }, 'structured path with NaN');
    await check(t, build([{ name: '\x1e["a",\n0]', type: 2 }]), { codes: ['E_FORMAT'], word: /line break/ }, 'structured path with a raw newline');
    await check(t, build([{ name: '\x1e["a"', type: 2 }]), { codes: ['E_FORMAT'], word: /JSON array/ }, 'structured path without the closing bracket');
    await check(t, build([{ name: '\x1e[99999999999999999999]', type: 2 }]), { codes: ['E_FORMAT'], word: /too large/ }, 'structured path with a huge integer');
    await check(t, build([{ name: Buffer.alloc(0) }]), { codes: ['E_FORMAT'], word: /empty tensor name/ }, 'empty name');
    await check(t, build([{ name: Buffer.from([0x61, 0xff, 0x62]) }]), { codes: ['E_FORMAT'], word: /UTF-8/ }, 'invalid UTF-8 name');
    // tensorizer: ValueError("Cannot deserialize structured tensor paths from non-state-dicts")
    // Structured paths need the state_dict type.
    await check(t, build([{ name: '\x1e["a",0]', type: 0 }]), { codes: ['E_FORMAT'], word: /structured/ }, 'structured path with PARAM type is refused');
    await check(t, build([{ name: '\x1e["a",0]', type: 1 }]), { codes: ['E_FORMAT'], word: /structured/ }, 'structured path with BUFFER type is refused');
  });

  t.test('types, hashes, versions, flags, counts', async (t) => {
    const b = build(basic((r) => (r[0]!.type = 3)));
    await check(t, b, { codes: ['E_FORMAT'], word: /unknown tensor type 3/, tensor: 'w', offset: b.idx[0]!.type }, 'unknown tensor type 3 (index and header)');
    const b2 = build(basic((r) => (r[0]!.hdr = { type: 3 })));
    await check(t, b2, { codes: ['E_FORMAT'], word: /unknown tensor type 3/, tensor: 'w', offset: b2.recs[0]!.type }, 'unknown tensor type 3 (header only)');
    await check(t, build(basic((r) => (r[0]!.hdr = { type: 1 }))), { codes: ['E_FORMAT'], word: /type .*disagrees/, tensor: 'w' }, 'header type differs');
    const h7 = build(basic((r) => (r[1]!.hdr = { hashes: [{ type: 0, len: 4 }, { type: 7, len: 4 }] })));
    await check(t, h7, { codes: ['E_FORMAT'], word: /unknown hash type 7/, tensor: 'b', offset: h7.recs[1]!.hashValues[1]!.off - 2 }, 'unknown hash type 7');
    await check(t, build(basic((r) => (r[0]!.hdr = { hashes: [{ type: 0, len: 32 }] }))), { codes: ['E_FORMAT'], word: /CRC32 hash has length 32/, tensor: 'w' }, 'CRC32 of length 32');
    await check(t, build(basic((r) => (r[0]!.hdr = { hashes: [{ type: 1, len: 4 }] }))), { codes: ['E_FORMAT'], word: /SHA-256 hash has length 4/, tensor: 'w' }, 'SHA-256 of length 4');
    await check(t, build(basic((r) => (r[0]!.hdr = { hashes: [{ type: 0, len: 4 }, { type: 0, len: 4 }] }))), { codes: ['E_FORMAT'], word: /twice/, tensor: 'w' }, 'the same hash type twice');
    await check(t, build(basic((r) => (r[0]!.hdr = { hashBlockLenField: 0 }))), { codes: ['E_FORMAT'], word: /hash block length 0|hash/, tensor: 'w' }, 'hash block length 0');
    for (const v of [0, 99, 0xffffffff]) {
      await check(t, build(basic(), { version: v }), { codes: ['E_FORMAT'], word: /unsupported data version/, offset: 5 }, `data version ${v}`);
    }
    await check(t, build(basic(), { version: 3 }), { codes: ['E_FORMAT'], word: /crypt/, tensor: 'w' }, 'data version 3 without crypt info');
    await check(t, build(basic(), { version: 4, flags: 1n }), { codes: ['E_FORMAT'], word: /crypt/, tensor: 'w' }, 'v4 encrypted flag without crypt info');
    await check(t, build(basic(), { flags: 2n }), { codes: ['E_FORMAT'], word: /feature flags/, offset: 9 }, 'flags = 2');
    await check(t, build(basic(), { flags: 1n << 255n }), { codes: ['E_FORMAT'], word: /feature flags/, offset: 9 }, 'flags = 2^255');
    await check(t, build(basic(), { count: 0n }), { codes: ['E_FORMAT'], word: /empty/, offset: 57 }, 'tensor count 0');
    const magic = build(basic()).buf;
    magic[2] = 0x58;
    await check(t, magic, { codes: ['E_FORMAT'], word: /not a tensorizer file/ }, 'bad magic');
    // Crypt info (docs/format.md, reference §6.4): a well-formed block needs a key (E_KEY);
    // every malformed one is E_FORMAT naming what is wrong (each shown to fail without its check).
    const u16 = (n: number) => Buffer.from([n & 0xff, n >> 8]);
    const i32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeInt32LE(n);
      return b;
    };
    const chunk = (type: number, payload: Buffer) => Buffer.concat([u64(2 + payload.length), u16(type), payload]);
    const block = (...chunks: Buffer[]) => {
      const body = Buffer.concat([u16(chunks.length), ...chunks]);
      return Buffer.concat([u64(body.length), body]);
    };
    const parallel = (o: { size?: number; macs?: number } = {}) =>
      chunk(2, Buffer.concat([u64(o.size ?? 2 ** 21), Buffer.alloc(24, 7), u64(o.macs ?? 1), Buffer.alloc(16 * (o.macs ?? 1), 9)]));
    const kdf = (o: { method?: number; alg?: number; salt?: number; ops?: number; mem?: number } = {}) =>
      chunk(1, Buffer.concat([u16(o.method ?? 1), u64(o.ops ?? 3), u64(o.mem ?? 2 ** 28), i32(o.alg ?? 2), u16(o.salt ?? 16), Buffer.alloc(o.salt ?? 16, 5)]));
    const encrypted = (c: Buffer) => build(basic((r) => r.forEach((x) => (x.hdr = { crypt: c }))), { version: 3 });
    await check(t, encrypted(block(parallel())), { codes: ['E_KEY'], word: /is encrypted; give its key/ }, 'an encrypted file (a key)');
    await check(t, encrypted(block(kdf(), parallel())), { codes: ['E_KEY'], word: /is encrypted; give its passphrase/ }, 'an encrypted file (a passphrase)');
    const mixed = build(basic((r) => r.forEach((x, i) => (x.hdr = { crypt: i === 0 ? block(parallel()) : block() }))), { version: 3 });
    await check(t, mixed, { codes: ['E_FORMAT'], word: /is not encrypted but 1 other tensor\(s\) are/ }, 'a file mixing encrypted and plain tensors');
    const malformed: [Buffer, RegExp, string][] = [
      [block(chunk(2, Buffer.from([9, 9]))), /crypt chunk of type 2: chunk size runs past the end of its chunk/, 'a truncated encryption chunk'],
      [block(chunk(7, Buffer.alloc(4))), /crypt chunk type 7 is unknown/, 'an unknown chunk type'],
      [block(parallel({ macs: 2 })), /2 MACs for \d+ bytes in chunks of 2097152 \(expected 1\)/, 'a MAC count that does not fit the data'],
      [block(parallel({ size: 1000 })), /chunk size 1000 is not a multiple of 64/, 'a chunk size of 1000'],
      [block(parallel(), parallel()), /two encryption chunks/, 'two encryption chunks'],
      [block(kdf({ alg: 1 }), parallel()), /pwhash algorithm 1 is not Argon2id/, 'a KDF algorithm other than Argon2id'],
      [block(kdf({ salt: 8 }), parallel()), /a salt of 8 bytes/, 'an 8-byte salt'],
      [block(kdf({ method: 2 }), parallel()), /key-derivation method 2 is unknown/, 'an unknown KDF method'],
      [block(kdf({ ops: 0 }), parallel()), /opslimit 0 is out of range/, 'opslimit 0'],
      [block(kdf({ mem: 2 ** 50 }), parallel()), /memlimit \d+ is out of range/, 'a 1 PiB memlimit'],
      [block(kdf()), /a key-derivation chunk without an encryption chunk/, 'a KDF chunk alone'],
      [block(chunk(2, Buffer.concat([parallel().subarray(10), Buffer.alloc(3)]))), /3 unexpected bytes after its fields/, 'bytes after the MACs'],
    ];
    for (const [c, word, what] of malformed) await check(t, encrypted(c), { codes: ['E_FORMAT'], word, tensor: 'w' }, what);
  });

  t.test('data version 5: tagged index entries, 64-bit dimensions (docs/format.md §4.1)', async (t) => {
    // What tensorizer 2.12 writes for a tensor with a dimension >= 2^32: version 5, flag bit 1,
    // a u32 tag before every index entry (5: u64 dimensions, 1: u32), u64 dimensions in that
    // tensor's header too (the header has no tag of its own).
    const LONG = 2 ** 32;
    const v5 = (over: (recs: Rec[]) => void = () => {}, o: BuildOpts = {}) =>
      build(basic((r) => {
        r.push({ name: 'long', shape: [LONG, 0], data: Buffer.alloc(0) }, { name: 'tail', dtype: '<i2', shape: [2], data: Buffer.from([5, 0, 6, 0]) });
        over(r);
      }), { version: 5, flags: 2n, trailer: true, ...o });
    const good = v5();
    t.equal(good.buf.readUInt32LE(good.idx[0]!.tag), 1, 'builder: a short entry is tagged 1');
    t.equal(good.buf.readUInt32LE(good.idx[2]!.tag), 5, 'builder: the long entry is tagged 5');
    const o = await accept(t, good, 'v5, flag bit 1, tags 1 and 5, a [2^32, 0] tensor');
    t.equal(o.kind === 'ok' ? o.r.tensors : -1, 4, 'all four tensors checked');
    await accept(t, v5((r) => r.forEach((x) => (x.hdr = { ...x.hdr, crypt: Buffer.concat([u64(2), Buffer.alloc(2)]) })), { flags: 3n }), 'v5 with flag bits 0 and 1 (encrypted, tagged) and empty crypt info');
    await accept(t, build(basic(), { version: 5 }), 'v5 without flag bit 1: untagged entries, 32-bit dimensions (tensorizer reads it as such)');
    await accept(t, v5((r) => r.push({ name: 'meta', shape: [LONG, 3], data: Buffer.alloc(0) })), 'a meta tensor of shape [2^32, 3] (48 GiB, no data)');

    // Flags.
    for (const v of [1, 4]) {
      await check(t, build(basic(), { version: v, flags: 2n }), { codes: ['E_FORMAT'], word: /feature flags 0x2 at byte 9: bit 1 \(tagged index entries\) belongs to data version 5 and later, not to this version \d file/, offset: 9 }, `flag bit 1 (tagged entries) in a data version ${v} file`);
    }
    await check(t, v5(undefined, { flags: 6n }), { codes: ['E_FORMAT'], word: /unknown feature flags 0x6/, offset: 9 }, 'v5 with flag bit 2');
    await check(t, v5(undefined, { flags: 2n | (1n << 200n) }), { codes: ['E_FORMAT'], word: /unknown feature flags/, offset: 9 }, 'v5 with flag bit 200');
    // Tags.
    for (const tag of [0, 2, 3, 4, 6, 0xffffffff]) {
      const b = v5((r) => (r[1]!.idx = { tag }));
      await check(t, b, { codes: ['E_FORMAT'], word: new RegExp(`unknown entry version tag ${tag}\\b`), offset: b.idx[1]!.tag }, `entry tag ${tag}`);
    }
    // Stricter than tensorizer, which reads these: the index is not hashed, and a 1 flipped
    // to 5 on a scalar's entry would read the same (found by the bit-flip test).
    await check(t, v5((r) => (r[0]!.long = true)), { codes: ['E_FORMAT'], word: /metadata entry 0 is tagged 5 \(64-bit dimensions\), but its shape \[2,3\] has no dimension of 2\^32 or more/, tensor: 'w' }, 'a tag-5 entry whose dimensions fit in 32 bits');
    await check(t, v5((r) => r.push({ name: 's', shape: [], data: f32(1), long: true })), { codes: ['E_FORMAT'], word: /metadata entry 4 is tagged 5 .*shape \[\] has no dimension/, tensor: 's' }, 'a scalar\'s entry tagged 5');
    await check(t, v5(undefined, { tagged: false }), { codes: ['E_FORMAT'] }, 'flag bit 1 set but the entries carry no tags');
    await check(t, v5((r) => (r[2]!.idx = { tag: 1 })), { codes: ['E_FORMAT'] }, 'the long entry tagged 1 (its u64 dimensions read as u32 ones)');
    await check(t, build(basic((r) => r.push({ name: 'long', shape: [LONG, 0], data: Buffer.alloc(0) })), { version: 5, flags: 0n, tagged: true }), { codes: ['E_FORMAT'] }, 'tagged entries without flag bit 1');
    // Dimensions against the header.
    await check(t, v5((r) => (r[2]!.hdr = { shape: [LONG + 1, 0] })), { codes: ['E_FORMAT'], word: /shape \(\[4294967297,0\]\) disagrees with the index \(\[4294967296,0\]\)/, tensor: 'long' }, 'header dimension 2^32 + 1, index 2^32');
    await check(t, v5((r) => (r[2]!.hdr = { shape: [0, LONG] })), { codes: ['E_FORMAT'], word: /shape .*disagrees/, tensor: 'long' }, 'header [0, 2^32], index [2^32, 0]');
    await check(t, v5((r) => (r[0]!.idx = { long: true })), { codes: ['E_FORMAT'], tensor: 'w' }, 'index entry tagged 5 (u64 dimensions), header with u32 dimensions');
    await check(t, v5((r) => (r[0]!.hdr = { long: true })), { codes: ['E_FORMAT'], tensor: 'w' }, 'index entry tagged 1, header with u64 dimensions');
    // Dimensions that no tensor can have, or that tensorize cannot hold exactly.
    await check(t, v5((r) => r.push({ name: 'huge', shape: [2 ** 63, 2 ** 63, 2], data: Buffer.alloc(0) })), { codes: ['E_FORMAT'], word: /absurdly large/, tensor: 'huge' }, 'u64 dimensions whose product overflows 64 bits');
    await check(t, v5((r) => r.push({ name: 'huge', shape: [2 ** 40, 2 ** 20], data: Buffer.alloc(0) })), { codes: ['E_FORMAT'], word: /absurdly large/, tensor: 'huge' }, 'a [2^40, 2^20] float32 meta tensor (2^62 bytes)');
    const wide = v5((r) => r.push({ name: 'wide', shape: [2 ** 60, 0], data: Buffer.alloc(0) }));
    await check(t, wide, { codes: ['E_UNSUPPORTED'], word: /dimension 1152921504606846976; tensorize reads dimensions up to 2\^53 - 1/, tensor: 'wide', offset: wide.idx[4]!.ndim + 1 }, 'a zero-element tensor with a dimension of 2^60');
  });

  t.test('count smaller than the records that follow', async (t) => {
    // tensorizer ignores index entries past tensor_count and bytes after the last record it
    // knows about; verify refuses the unexplained trailing bytes (the index may be damaged).
    const o = await refuse(t, build(basic(), { count: 1n }), 'count 1 for a two-tensor file', /unexpected bytes follow the last tensor record/);
    t.equal(o.kind === 'ok' ? o.r.tensors : -1, 1, 'only one tensor is checked');
  });

  t.test('dtypes', async (t) => {
    await check(t, build(basic((r) => (r[0]!.dtype = '>f4'))), { codes: ['E_FORMAT'], word: /unsupported dtype string/, tensor: 'w' }, 'big-endian >f4');
    await check(t, build(basic((r) => (r[0]!.dtype = '<V2\0torch.bfloat16\0x')), { version: 2 }), { codes: ['E_FORMAT'], word: /more than one NUL/, tensor: 'w' }, '<V2\\0torch.bfloat16\\0x');
    await check(t, build(basic((r) => (r[0]!.dtype = ''))), { codes: ['E_FORMAT'], word: /unsupported dtype string/, tensor: 'w' }, 'empty dtype');
    await check(t, build(basic((r) => (r[0]!.dtype = '<V0\0torch.foo'))), { codes: ['E_FORMAT'], word: /zero item size/, tensor: 'w' }, '<V0\\0torch.foo');
    await check(t, build(basic((r) => (r[0]!.dtype = '<V4\0torch.bfloat16'))), { codes: ['E_FORMAT'], word: /2-byte items/, tensor: 'w' }, 'bfloat16 claimed 4 bytes wide');
    await check(t, build(basic((r) => (r[0]!.dtype = '<V4\0numpy.float32'))), { codes: ['E_FORMAT'], word: /does not name a torch dtype/, tensor: 'w' }, 'opaque dtype not naming torch');
    await check(t, build(basic((r) => (r[0]!.hdr = { dtype: '<i4' }))), { codes: ['E_FORMAT'], word: /dtype .*disagrees/, tensor: 'w' }, 'header dtype differs (same item size)');
    await check(t, build(basic((r) => (r[0]!.hdr = { dtype: '>f4' }))), { codes: ['E_FORMAT'], word: /unsupported dtype string/, tensor: 'w' }, 'header dtype >f4');
  });

  t.test('header disagrees with the index', async (t) => {
    await check(t, build(basic((r) => (r[0]!.hdr = { name: 'v' }))), { codes: ['E_FORMAT'], word: /name .*disagrees/, tensor: 'w' }, 'different name');
    await check(t, build(basic((r) => (r[0]!.hdr = { shape: [3, 2] }))), { codes: ['E_FORMAT'], word: /shape .*disagrees/, tensor: 'w' }, 'different shape (same size)');
    await check(t, build(basic((r) => (r[0]!.hdr = { shape: [6] }))), { codes: ['E_FORMAT'], word: /shape .*disagrees/, tensor: 'w' }, 'different ndim (same size)');
    await check(t, build(basic((r) => (r[0]!.hdr = { dataLength: 20n }))), { codes: ['E_FORMAT'], word: /data length .*disagrees/, tensor: 'w' }, 'different data length');
    await check(t, build(basic((r) => (r[0]!.idx = { shape: [2, 2] }))), { codes: ['E_FORMAT'], word: /data length 24 is not 16/, tensor: 'w' }, 'index shape does not match its data length');
    await check(t, build(basic((r) => (r[0]!.hdr = { sizeField: 1000n }))), { codes: ['E_FORMAT'], word: /header size 1000 disagrees/, tensor: 'w' }, 'header size field differs from the index span');
  });

  t.test('meta tensors with absurd shapes', async (t) => {
    // A meta tensor (data_length 0) has nothing to check but its header hash. A shape whose
    // byte size does not fit in a double is clamped to MAX_SAFE_INTEGER in TensorEntry.byteSize.
    const huge = build([{ name: 'm', shape: [0xffffffff, 0xffffffff, 0xffffffff], data: Buffer.alloc(0) }], { version: 4 });
    const p = join(dir, 'hugemeta.tensors');
    writeFileSync(p, huge.buf);
    const o = await verifyPath(p, verifyFile);
    t.ok(o.kind === 'ok' || o.kind === 'error', describe(o));
    if (o.kind === 'error') expectError(t, o, { codes: ['E_FORMAT', 'E_UNSUPPORTED'], file: p }, describe(o));
    {
      const src = await FileSource.open(p);
      const out = join(dir, 'hugemeta.safetensors');
      let e: unknown;
      try {
        await exportSafetensors(src, out, { meta: 'zeros', threads: 1 });
      } catch (x) {
        e = x;
      } finally {
        await src.close();
      }
      expectError(
        t,
        { kind: e === undefined ? 'ok' : 'error', e },
        { codes: ['E_FORMAT', 'E_INEXPRESSIBLE', 'E_UNSUPPORTED'], file: p, word: /large|too big|exceed/ },
        `export --meta zeros of a meta tensor of 2^98 bytes fails cleanly: ${e === undefined ? 'exported' : describe({ kind: 'error', e })}`,
      );
    }
  });
});
