/**
 * Hostile and corrupted inputs: every one must end in a clean TensorizeError (with a code,
 * and a message that names the file and, where it matters, the tensor and byte offset),
 * never another exception type, a hang or a huge allocation.
 *
 * Speed: a StreamPool worker thread takes ~2 s to start under tap's TypeScript loader, and
 * verifyFile starts a fresh pool per call, so the bulk loops (thousands of truncated and
 * bit-flipped files) use verifyFile with the pool swapped (t.mockImport) for an in-process
 * one that runs the very same runJob(). The real worker pool is exercised by the
 * "real worker pool" subtests.
 */
import t, { type Test } from 'tap';
import { copyFileSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TensorizeError } from '../src/errors.js';
import { TensorType } from '../src/format/constants.js';
import { encodePath } from '../src/format/paths.js';
import { TensorizerFile, type TensorEntry } from '../src/format/reader.js';
import { verifyFile as realVerifyFile, type VerifyResult } from '../src/format/verify.js';
import { openInput } from '../src/inputs/index.js';
import { FileSource } from '../src/sources/file.js';
import { POOL_MOCK } from './helpers/pool.js';

import { VECTORS } from './helpers/util.js';
import { basic, build, f32, u64, type Built } from './helpers/tensors-builder.js';

type VerifyFn = typeof realVerifyFile;
const { verifyFile } = await t.mockImport<typeof import('../src/format/verify.js')>('../src/format/verify.js', POOL_MOCK);
const { writeTensorizer } = await t.mockImport<typeof import('../src/format/writer.js')>('../src/format/writer.js', POOL_MOCK);
const { exportSafetensors } = await t.mockImport<typeof import('../src/outputs/safetensors.js')>('../src/outputs/safetensors.js', POOL_MOCK);

// ---------------------------------------------------------------------------------------
// Running a check and classifying what happened.

type Outcome = { kind: 'ok'; r: VerifyResult } | { kind: 'error'; e: unknown } | { kind: 'hang' };

async function withTimeout<T>(p: Promise<T>, ms: number): Promise<T | 'hang'> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<'hang'>((res) => {
    timer = setTimeout(() => res('hang'), ms);
  });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

async function verifyPath(path: string, verify: VerifyFn = verifyFile, ms = 10_000): Promise<Outcome> {
  const run = async (): Promise<Outcome> => {
    let src: FileSource | undefined;
    try {
      src = await FileSource.open(path);
      return { kind: 'ok', r: await verify(src, { threads: 1 }) };
    } catch (e) {
      return { kind: 'error', e };
    } finally {
      await src?.close();
    }
  };
  const o = await withTimeout(run(), ms);
  return o === 'hang' ? { kind: 'hang' } : o;
}

async function inputOutcome(path: string, ms = 10_000): Promise<{ kind: 'ok'; m: Awaited<ReturnType<typeof openInput>> } | { kind: 'error'; e: unknown } | { kind: 'hang' }> {
  const o = await withTimeout(
    openInput(path).then(
      (m) => ({ kind: 'ok' as const, m }),
      (e: unknown) => ({ kind: 'error' as const, e }),
    ),
    ms,
  );
  return o === 'hang' ? { kind: 'hang' } : o;
}

function describe(o: { kind: string; e?: unknown; r?: VerifyResult; m?: unknown }): string {
  if (o.kind === 'hang') return 'HANG';
  const r = o.r;
  if (o.kind === 'ok') return `OK ${JSON.stringify(r ? { ok: r.ok, failures: r.failures.map((f) => `${f.tensor}/${f.hash}`), warnings: r.warnings } : 'opened')}`;
  const e = o.e as Error & { code?: string };
  return e instanceof TensorizeError ? `TensorizeError ${e.code}: ${e.message}` : `NOT A TensorizeError (${e?.constructor?.name}): ${e?.message ?? String(e)}`;
}

interface ErrExpect {
  codes: string[];
  file: string;
  /** A distinctive word or phrase saying what is wrong. */
  word?: RegExp;
  tensor?: string;
  offset?: number | bigint;
}

/** Returns a list of problems (empty when the outcome is the expected clean error). */
function errorProblems(o: { kind: string; e?: unknown }, x: ErrExpect): string[] {
  if (o.kind !== 'error') return [`expected a TensorizeError, got ${describe(o as Outcome)}`];
  const e = o.e;
  if (!(e instanceof TensorizeError)) return [`expected a TensorizeError, got ${describe(o as Outcome)}`];
  const p: string[] = [];
  if (!x.codes.includes(e.code)) p.push(`code ${e.code} is not one of ${x.codes.join('/')}: ${e.message}`);
  if (!e.message.includes(x.file)) p.push(`message does not name the file: ${e.message}`);
  if (x.word && !x.word.test(e.message)) p.push(`message does not match ${x.word}: ${e.message}`);
  if (x.tensor !== undefined && !e.message.includes(JSON.stringify(x.tensor))) p.push(`message does not name tensor ${JSON.stringify(x.tensor)}: ${e.message}`);
  if (x.offset !== undefined && !new RegExp(`\\bbytes? ${x.offset}\\b`).test(e.message)) p.push(`message does not give byte ${x.offset}: ${e.message}`);
  return p;
}

/** `todo`: the assertion documents correct behaviour that src/ does not have yet (a known bug). */
function expectError(tt: Tap, o: { kind: string; e?: unknown }, x: ErrExpect, msg: string, todo?: string): void {
  const p = errorProblems(o, x);
  tt.same(p, [], msg, todo ? { todo } : {});
}

type Tap = Test;


// ---------------------------------------------------------------------------------------
// safetensors helpers

function safetensors(header: string | Buffer | object, data: Buffer | number = 0, lenOverride?: bigint): Buffer {
  const json = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const d = typeof data === 'number' ? Buffer.alloc(data) : data;
  return Buffer.concat([u64(lenOverride ?? BigInt(json.length)), json, d]);
}

// ---------------------------------------------------------------------------------------
// The compact file: written by our writer from a hand-made safetensors file.

let compactCache: { path: string; buf: Buffer; dir: string } | undefined;
async function compact(): Promise<{ path: string; buf: Buffer }> {
  if (compactCache) return compactCache;
  const dir = t.testdir({});
  const st = join(dir, 'compact.safetensors');
  const data = Buffer.alloc(24 + 10 + 8 + 1);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + 11) & 0xff;
  writeFileSync(
    st,
    safetensors(
      {
        __metadata__: { format: 'pt' },
        a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] },
        e: { dtype: 'F32', shape: [0, 4], data_offsets: [24, 24] },
        'b.weight': { dtype: 'I16', shape: [5], data_offsets: [24, 34] },
        c: { dtype: 'BF16', shape: [2, 2], data_offsets: [34, 42] },
        s: { dtype: 'U8', shape: [], data_offsets: [42, 43] },
      },
      data,
    ),
  );
  const model = await openInput(st);
  const path = join(dir, 'compact.tensors');
  await writeTensorizer(
    path,
    model.tensors.map((x) => ({ path: x.path, type: TensorType.PARAM, dtype: x.dtype, shape: x.shape, data: x.data })),
    { threads: 1, trailer: false },
  );
  compactCache = { path, buf: readFileSync(path), dir };
  return compactCache;
}

/** Where the fields of each record's header are, from the (intact) index. */
function headerFields(e: TensorEntry) {
  const n = encodePath(e.path).length;
  const d = Buffer.byteLength(e.dtypeString, 'latin1');
  const h = e.headerOffset;
  const hashBlockLen = h + 15 + n + d + 4 * e.shape.length;
  return {
    moduleIdx: [h + 8, h + 10],
    hashBlockLen,
    hashCount: hashBlockLen + 2,
    crc: [hashBlockLen + 5, hashBlockLen + 9],
    sha: [hashBlockLen + 11, hashBlockLen + 43],
    dataLengthField: e.dataOffset - 8,
  };
}

async function structure(path: string): Promise<{ entries: TensorEntry[]; version: number; metadataLength: number }> {
  const src = await FileSource.open(path);
  try {
    const tf = await TensorizerFile.open(src);
    return { entries: tf.entries, version: tf.info.version, metadataLength: tf.info.metadataLength };
  } finally {
    await src.close();
  }
}

/** Bytes used by the index entries (the rest of M is padding). */
function indexEnd(entries: TensorEntry[]): number {
  return 73 + entries.reduce((n, e) => n + 2 + encodePath(e.path).length + 2 + Buffer.byteLength(e.dtypeString, 'latin1') + 1 + 4 * e.shape.length + 24, 0);
}

/** Offset of an index entry's dtype string (intact index, entries in file order). */
function dtypeStringOffset(entries: TensorEntry[], e: TensorEntry): number {
  let o = 73;
  for (const x of entries) {
    const n = encodePath(x.path).length;
    if (x === e) return o + 2 + n + 2;
    o += 2 + n + 2 + Buffer.byteLength(x.dtypeString, 'latin1') + 1 + 4 * x.shape.length + 24;
  }
  return -1;
}

// =======================================================================================

t.test('builder sanity: reproduces the 216-byte golden file of the notes and verifies', async (t) => {
  // tensorizer-format.md §5.2: one tensor, exact-size metadata, no trailer.
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
  const o = await verifyPath(p);
  t.equal(o.kind, 'ok', describe(o));
  if (o.kind === 'ok') t.ok(o.r.ok);
  // and the two-tensor base every structural case starts from
  writeFileSync(p, build(basic(), { trailer: true }).buf);
  const o2 = await verifyPath(p);
  t.ok(o2.kind === 'ok' && o2.r.ok && o2.r.warnings.length === 0, describe(o2));
});

// =======================================================================================
// 1. Truncation everywhere

t.test('1. truncation', async (t) => {
  t.test('compact file (our writer, no trailer): every length 0..size-1', async (t) => {
    const { buf } = await compact();
    const dir = t.testdir({});
    const p = join(dir, 'trunc.tensors');
    writeFileSync(p, buf);
    t.ok((await verifyPath(p)).kind === 'ok', 'the intact file verifies');
    const problems: string[] = [];
    const t0 = Date.now();
    for (let len = buf.length - 1; len >= 0; len--) {
      truncateSync(p, len);
      const o = await verifyPath(p);
      for (const x of errorProblems(o, { codes: ['E_FORMAT', 'E_IO'], file: p })) problems.push(`len ${len}: ${x}`);
    }
    t.same(problems.slice(0, 20), [], `all ${buf.length} truncations reject cleanly (${problems.length} problems)`);
    t.comment(`compact file: ${buf.length} bytes, ${buf.length} truncations in ${Date.now() - t0} ms`);
  });

  for (const name of ['structured_paths', 'meta_marker_v4', 'module_bf16_v2', 'dtypes_v1', 'many_tensors']) {
    t.test(`real vector ${name}.tensors`, async (t) => {
      const dir = t.testdir({});
      const p = join(dir, `${name}.tensors`);
      copyFileSync(join(VECTORS, `${name}.tensors`), p);
      const size = statSync(p).size;
      const { entries } = await structure(p);
      // Every offset in the fixed header and the index entries, a sample of the index
      // padding, every byte of the first and last three records' headers, the edges of
      // every record, and a sample inside the data.
      const lens = new Set<number>();
      const addRange = (a: number, b: number, step = 1) => {
        for (let x = Math.max(0, a); x < Math.min(size, b); x += step) lens.add(x);
      };
      // (a big index is sampled: any cut inside it fails the same "metadata runs past the end" check)
      const iEnd = indexEnd(entries);
      addRange(0, Math.min(iEnd, 4096) + 16);
      addRange(4096, iEnd - 512, 97);
      addRange(iEnd - 512, iEnd + 16);
      addRange(iEnd, entries[0]!.headerOffset, 4093);
      const few = entries.length <= 20 ? entries : [...entries.slice(0, 3), ...entries.slice(-3)];
      for (const e of few) addRange(e.headerOffset - 1, e.dataOffset + 2);
      const stride = Math.max(1, Math.floor(entries.length / 200));
      for (let i = 0; i < entries.length; i += stride) {
        const e = entries[i]!;
        for (const x of [e.headerOffset - 1, e.headerOffset, e.headerOffset + 1, e.headerOffset + 8, e.dataOffset - 8, e.dataOffset - 1, e.dataOffset, e.dataOffset + 1, e.dataOffset + e.dataLength - 1]) {
          if (x >= 0 && x < size) lens.add(x);
        }
      }
      for (let k = 0; k < 150; k++) lens.add(Math.floor(((k * 2654435761) % 1_000_003) / 1_000_003 * size));
      addRange(size - 12, size);
      const sorted = [...lens].sort((a, b) => b - a);
      const trailerStart = size - 8; // tensorizer's optional 8-byte end marker
      const problems: string[] = [];
      const t0 = Date.now();
      for (const len of sorted) {
        truncateSync(p, len);
        const o = await verifyPath(p);
        if (len === trailerStart) {
          // Cutting off exactly the optional end marker leaves a valid file.
          if (o.kind !== 'ok' || !o.r.ok) problems.push(`len ${len} (without the end marker): ${describe(o)}`);
          continue;
        }
        if (len > trailerStart) {
          // A partial end marker is bytes no hash covers: verify fails, naming them.
          if (o.kind !== 'ok' || o.r.ok || !o.r.problems.some((x) => /ends [0-9] bytes into tensorizer.s 8-byte end marker.*cut short/.test(x))) problems.push(`len ${len} (partial end marker): ${describe(o)}`);
          continue;
        }
        for (const x of errorProblems(o, { codes: ['E_FORMAT', 'E_IO'], file: p })) problems.push(`len ${len}: ${x}`);
      }
      t.same(problems.slice(0, 20), [], `${sorted.length} truncations of a ${size}-byte file (${problems.length} problems)`);
      t.comment(`${name}: ${sorted.length} truncations in ${Date.now() - t0} ms`);
    });
  }

  t.test('a file that shrinks after it was opened: E_IO naming the file', async (t) => {
    const { buf } = await compact();
    const dir = t.testdir({});
    const p = join(dir, 'shrink.tensors');
    writeFileSync(p, buf);
    const { entries } = await structure(p);
    const first = entries[0]!;
    const last = entries[entries.length - 1]!;
    const TODO_NAME = undefined; // short reads name the tensor being read
    const cases = [
      // Cut inside the first tensor's data: a later header cannot be read (FileSource.read in readHeader).
      { label: 'later header gone', cut: first.dataOffset + 3, tensor: entries[1]!.name, verify: verifyFile },
      // Cut inside the last tensor's data: every header reads, the data job comes up short.
      { label: 'last data gone, in-process pool', cut: last.dataOffset, tensor: last.name, verify: verifyFile },
      { label: 'last data gone, real worker pool', cut: last.dataOffset, tensor: last.name, verify: realVerifyFile },
    ];
    for (const c of cases) {
      writeFileSync(p, buf);
      const src = await FileSource.open(p);
      truncateSync(p, c.cut);
      let o: Outcome;
      try {
        o = { kind: 'ok', r: await c.verify(src, { threads: 1 }) };
      } catch (e) {
        o = { kind: 'error', e };
      } finally {
        await src.close();
      }
      expectError(t, o, { codes: ['E_IO'], file: p, word: /short read/ }, `${c.label}: ${describe(o)}`);
      expectError(t, o, { codes: ['E_IO'], file: p, tensor: c.tensor }, `${c.label}: the message names tensor ${JSON.stringify(c.tensor)}`, TODO_NAME);
    }
  });
});

// =======================================================================================
// 2. Bit flips

t.test('2. bit flips', async (t) => {
  const { buf } = await compact();
  const dir = t.testdir({});
  const p = join(dir, 'flip.tensors');
  writeFileSync(p, buf);
  const { entries, version } = await structure(p);
  t.equal(version, 2, 'the compact file is data version 2 (it holds a bfloat16 tensor)');
  const fields = entries.map(headerFields);
  const inRange = (x: number, [a, b]: number[]) => x >= a! && x < b!;

  t.test('every bit and every byte (XOR 0xff) of the file header, index and tensor headers', async (t) => {
    // Regions: [0, first record) and each tensor header.
    const offsets: number[] = [];
    for (let x = 0; x < entries[0]!.headerOffset; x++) offsets.push(x);
    for (const e of entries) for (let x = e.headerOffset; x < e.dataOffset; x++) offsets.push(x);
    const problems: string[] = [];
    const accepted: string[] = [];
    let runs = 0;
    const t0 = Date.now();
    for (const off of offsets) {
      for (const mask of [1, 2, 4, 8, 16, 32, 64, 128, 0xff]) {
        const b = Buffer.from(buf);
        b[off] ^= mask;
        writeFileSync(p, b);
        const o = await verifyPath(p);
        runs++;
        const where = `byte ${off} ^ 0x${mask.toString(16)}`;
        const ti = entries.findIndex((e) => off >= e.headerOffset && off < e.dataOffset);
        // Bytes tensorizer ignores: tensor_size (41-48), reserved (49-56), flag bit 0 below v4.
        const ignored = (off >= 41 && off < 57) || (off === 9 && mask === 1 && version < 4);
        if (ignored) {
          if (o.kind !== 'ok' || !o.r.ok) problems.push(`${where} (ignored by tensorizer): ${describe(o)}`);
          continue;
        }
        if (o.kind === 'hang') {
          problems.push(`${where}: HANG`);
          continue;
        }
        if (o.kind === 'error') {
          for (const x of errorProblems(o, { codes: ['E_FORMAT', 'E_UNSUPPORTED'], file: p })) problems.push(`${where}: ${x}`);
          continue;
        }
        // Verified without an exception: only acceptable inside a tensor header, as a hash
        // failure of that tensor alone.
        const r = o.r;
        if (ti < 0) {
          // Two index corruptions pass, both ignored by tensorizer too (see the report):
          // a smaller tensor_count (the rest of the file is warned about as trailing bytes),
          // and '<' <-> '|' in an opaque dtype string of the index ("|V2\0torch.bfloat16").
          const countDown = off >= 57 && off < 65 && b.readBigUInt64LE(57) < BigInt(entries.length) && b.readBigUInt64LE(57) > 0n;
          const opaquePrefix = entries.some((e) => e.dtype.opaque && off === dtypeStringOffset(entries, e)) && (b[off] === 0x3c || b[off] === 0x7c);
          if (countDown && !r.ok && r.problems.some((x) => /unexpected bytes follow the last tensor record/.test(x))) continue; // rejected, as it should be
          else if (opaquePrefix && r.ok) accepted.push(`${where} (index dtype prefix '${String.fromCharCode(b[off]!)}'): ${describe(o)}`);
          else problems.push(`${where} (file header / index): accepted: ${describe(o)}`);
          continue;
        }
        const e = entries[ti]!;
        const f = fields[ti]!;
        const got = r.failures.map((x) => `${x.tensor}/${x.hash}`).sort();
        if (r.failures.some((x) => x.tensor !== e.name || x.index !== ti)) {
          problems.push(`${where} (header of ${e.name}): failure names another tensor: ${got}`);
          continue;
        }
        if (off === f.hashCount && !r.ok && r.failures.length === 0 && r.problems.some((x) => x.includes(JSON.stringify(e.name)) && /stores no hashes/.test(x))) continue; // rejected
        if (inRange(off, f.crc)) {
          if (got.join() !== `${e.name}/crc32`) problems.push(`${where} (CRC32 value of ${e.name}): ${describe(o)}`);
        } else if (inRange(off, f.sha)) {
          if (got.join() !== `${e.name}/sha256`) problems.push(`${where} (SHA-256 value of ${e.name}): ${describe(o)}`);
        } else if (r.ok) {
          // Covered by the hashes but still passed: only possible when the flip removed the hashes.
          accepted.push(`${where} (header of ${e.name}): ${describe(o)}`);
          if (!(off === f.hashCount && r.warnings.some((w) => w.includes(JSON.stringify(e.name)) && /no hashes/.test(w)))) {
            problems.push(`${where} (header of ${e.name}): a corrupted header verifies OK: ${describe(o)}`);
          }
        } else if (got.join() !== `${e.name}/crc32,${e.name}/sha256`) {
          problems.push(`${where} (header of ${e.name}): expected both hashes of ${e.name} to fail: ${describe(o)}`);
        }
      }
    }
    t.same(problems.slice(0, 30), [], `${runs} flipped files: each is a TensorizeError, a hash failure of the right tensor, or an ignored byte (${problems.length} problems)`);
    t.comment(`${runs} bit/byte flips in ${Date.now() - t0} ms`);
    // Accepted corruptions (each listed in the report): hash_count 2 -> 0 (warned "no hashes"),
    // a smaller tensor_count (warned "bytes follow"), '<' -> '|' in an opaque index dtype (silent).
    // They are the only ones the loop above lets through; a stricter reader would just shrink this list.
    for (const a of accepted) t.comment(`accepted: ${a}`);
  });

  t.test('explicitly listed ignored bytes verify OK', async (t) => {
    for (const [off, mask, why] of [
      [41, 0xff, 'tensor_size low byte'],
      [48, 0x80, 'tensor_size high bit'],
      [49, 0xff, 'reserved'],
      [56, 0xff, 'reserved'],
      [9, 0x01, 'flag bit 0 (encrypted) is ignored below data version 4'],
    ] as const) {
      const b = Buffer.from(buf);
      b[off] ^= mask;
      writeFileSync(p, b);
      const o = await verifyPath(p);
      t.ok(o.kind === 'ok' && o.r.ok, `byte ${off} ^ 0x${mask.toString(16)} (${why}): ${describe(o)}`);
    }
  });

  t.test('every byte of tensor data: ok false naming that tensor, crc32 and sha256', async (t) => {
    const problems: string[] = [];
    for (const [ti, e] of entries.entries()) {
      for (let x = e.dataOffset; x < e.dataOffset + e.dataLength; x++) {
        const b = Buffer.from(buf);
        b[x] ^= 0x10;
        writeFileSync(p, b);
        const o = await verifyPath(p);
        const want = [{ tensor: e.name, index: ti, hash: 'crc32' }, { tensor: e.name, index: ti, hash: 'sha256' }];
        if (o.kind !== 'ok' || o.r.ok || JSON.stringify(o.r.failures.map(({ tensor, index, hash }) => ({ tensor, index, hash }))) !== JSON.stringify(want)) {
          problems.push(`data byte ${x} of ${e.name}: ${describe(o)}`);
        }
      }
    }
    t.same(problems, [], 'every data flip is caught by both hashes of its own tensor');
  });

  t.test('real worker pool: a data flip in the compact file and in the 2 MiB tensor of dtypes_v1', async (t) => {
    const a = entries.find((e) => e.name === 'a')!;
    const b = Buffer.from(buf);
    b[a.dataOffset + 5] ^= 1;
    writeFileSync(p, b);
    const o = await verifyPath(p, realVerifyFile, 30_000);
    t.ok(o.kind === 'ok' && !o.r.ok && o.r.failures.map((f) => `${f.tensor}/${f.hash}`).join() === 'a/crc32,a/sha256', describe(o));

    const q = join(dir, 'dtypes_v1.tensors');
    copyFileSync(join(VECTORS, 'dtypes_v1.tensors'), q);
    const { entries: de } = await structure(q);
    const big = de.reduce((m, e) => (e.dataLength > m.dataLength ? e : m));
    t.ok(big.dataLength >= 2 * 1024 * 1024, `largest tensor ${big.name} spans more than one 1 MiB chunk`);
    const fd = readFileSync(q);
    fd[big.dataOffset + Math.floor(big.dataLength * 0.75)] ^= 0x40;
    writeFileSync(q, fd);
    const o2 = await verifyPath(q, realVerifyFile, 30_000);
    t.ok(o2.kind === 'ok' && !o2.r.ok && o2.r.failures.every((f) => f.tensor === big.name) && o2.r.failures.length === 2, describe(o2));
  });
});

// =======================================================================================
// 3. Absurd lengths

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
  const cases: { name: string; file: Buffer; x: Omit<ErrExpect, 'file'>; todo?: string }[] = [
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
    t.test(c.name, c.todo ? { todo: c.todo } : {}, async (t) => {
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

// =======================================================================================
// 4. Structural rules

t.test('4. structural rules', async (t) => {
  const dir = t.testdir({});
  let n = 0;
  const check = async (tt: Tap, b: Built | Buffer, x: Omit<ErrExpect, 'file'>, msg: string, todo?: string) => {
    const p = join(dir, `s${n++}.tensors`);
    writeFileSync(p, Buffer.isBuffer(b) ? b : b.buf);
    const o = await verifyPath(p);
    expectError(tt, o, { ...x, file: p }, `${msg}: ${describe(o)}`, todo);
    return o;
  };
  const accept = async (tt: Tap, b: Built | Buffer, msg: string, warn?: RegExp) => {
    const p = join(dir, `s${n++}.tensors`);
    writeFileSync(p, Buffer.isBuffer(b) ? b : b.buf);
    const o = await verifyPath(p);
    tt.ok(o.kind === 'ok' && o.r.ok, `${msg}: ${describe(o)}`);
    if (warn) tt.ok(o.kind === 'ok' && o.r.warnings.some((w) => warn.test(w)), `${msg}: warns ${warn}`);
    return o;
  };

  // Accepted by tensorizer but refused by verify: the result is not ok and says why.
  const refuse = async (tt: Tap, b: Built | Buffer, msg: string, why: RegExp) => {
    const p = join(dir, `s${n++}.tensors`);
    writeFileSync(p, Buffer.isBuffer(b) ? b : b.buf);
    const o = await verifyPath(p);
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
    const todoSP = undefined; // fixed: structured paths need the state_dict type
    await check(t, build([{ name: '\x1e["a",0]', type: 0 }]), { codes: ['E_FORMAT'], word: /structured/ }, 'structured path with PARAM type is refused', todoSP);
    await check(t, build([{ name: '\x1e["a",0]', type: 1 }]), { codes: ['E_FORMAT'], word: /structured/ }, 'structured path with BUFFER type is refused', todoSP);
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
    await check(t, build(basic(), { version: 5 }), { codes: ['E_UNSUPPORTED'], word: /data version 5/ }, 'data version 5');
    await check(t, build(basic(), { version: 3 }), { codes: ['E_FORMAT'], word: /crypt/, tensor: 'w' }, 'data version 3 without crypt info');
    await check(t, build(basic(), { version: 4, flags: 1n }), { codes: ['E_FORMAT'], word: /crypt/, tensor: 'w' }, 'v4 encrypted flag without crypt info');
    await check(t, build(basic(), { flags: 2n }), { codes: ['E_FORMAT'], word: /feature flags/, offset: 9 }, 'flags = 2');
    await check(t, build(basic(), { flags: 1n << 255n }), { codes: ['E_FORMAT'], word: /feature flags/, offset: 9 }, 'flags = 2^255');
    await check(t, build(basic(), { count: 0n }), { codes: ['E_FORMAT'], word: /empty/, offset: 57 }, 'tensor count 0');
    const magic = build(basic()).buf;
    magic[2] = 0x58;
    await check(t, magic, { codes: ['E_FORMAT'], word: /not a tensorizer file/ }, 'bad magic');
    const enc = build(basic((r) => r.forEach((x) => (x.hdr = { crypt: Buffer.concat([u64(14), Buffer.from([1, 0]), u64(4), Buffer.from([2, 0, 9, 9])]) }))), { version: 3 });
    await check(t, enc, { codes: ['E_UNSUPPORTED'], word: /encrypted/ }, 'an encrypted file (crypt chunk present)');
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
    const o = await verifyPath(p);
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

// =======================================================================================
// 5. safetensors input

t.test('5. safetensors input', async (t) => {
  const dir = t.testdir({});
  let n = 0;
  const st = async (tt: Tap, file: Buffer, x: Omit<ErrExpect, 'file' | 'codes'> & { codes?: string[] }, msg: string, todo?: string) => {
    const p = join(dir, `in${n++}.safetensors`);
    writeFileSync(p, file);
    const o = await inputOutcome(p);
    expectError(tt, o, { codes: ['E_SAFETENSORS'], ...x, file: p }, `${msg}: ${describe(o)}`, todo);
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
    const v = await verifyPath(tz);
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
    const todo = undefined; // fixed: the reserved name is refused
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
    t.ok(o.kind === 'ok' && o.m.tensors.some((x) => x.path[0] === '__metadata__'), `exported, then re-read: ${describe(o)}`, { todo });
  });
});
