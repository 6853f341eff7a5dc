/**
 * Hostile inputs, part 1: truncation everywhere. Every length of a small file written by our
 * writer, thousands of cut points in the reference vectors, and a file that shrinks after it
 * was opened: each must end in a clean TensorizeError (E_FORMAT or E_IO) naming the file,
 * never another exception, a hang or a huge allocation.
 *
 * The bulk of it runs verifyFile with the worker pool swapped (t.mockImport with POOL_MOCK)
 * for an in-process one that runs the very same runJob(): a worker thread costs ~2 s to
 * start under tap's TypeScript loader. Why, and the shared scaffolding: helpers/hostile.ts.
 */
import t from 'tap';
import { copyFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodePath } from '../src/format/paths.js';
import type { TensorEntry } from '../src/format/reader.js';
import { verifyFile as realVerifyFile } from '../src/ops/verify.js';
import { FileSource } from '../src/sources/file.js';
import { POOL_MOCK } from './helpers/pool.js';
import { VECTORS } from './helpers/util.js';
import { compact, describe, errorProblems, expectError, structure, verifyPath, type Outcome } from './helpers/hostile.js';

const { verifyFile } = await t.mockImport<typeof import('../src/ops/verify.js')>('../src/ops/verify.js', POOL_MOCK);
const { writeTensorizer } = await t.mockImport<typeof import('../src/ops/serialize.js')>('../src/ops/serialize.js', POOL_MOCK);

/** Bytes used by the index entries (the rest of M is padding). */
function indexEnd(entries: TensorEntry[]): number {
  return 73 + entries.reduce((n, e) => n + 2 + encodePath(e.path).length + 2 + Buffer.byteLength(e.dtypeString, 'latin1') + 1 + 4 * e.shape.length + 24, 0);
}

t.test('1. truncation', async (t) => {
  for (const long of [false, true])
  t.test(`compact file${long ? ' with a [2^32, 0] tensor (data version 5)' : ''} (our writer, no trailer): every length 0..size-1`, async (t) => {
    const dir = t.testdir({});
    const { buf } = await compact(dir, writeTensorizer, { long });
    const p = join(dir, 'trunc.tensors');
    writeFileSync(p, buf);
    t.ok((await verifyPath(p, verifyFile)).kind === 'ok', 'the intact file verifies');
    const problems: string[] = [];
    const t0 = Date.now();
    for (let len = buf.length - 1; len >= 0; len--) {
      truncateSync(p, len);
      const o = await verifyPath(p, verifyFile);
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
        const o = await verifyPath(p, verifyFile);
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
    const dir = t.testdir({});
    const { buf } = await compact(dir, writeTensorizer);
    const p = join(dir, 'shrink.tensors');
    writeFileSync(p, buf);
    const { entries } = await structure(p);
    const first = entries[0]!;
    const last = entries[entries.length - 1]!;
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
      expectError(t, o, { codes: ['E_IO'], file: p, tensor: c.tensor }, `${c.label}: the message names tensor ${JSON.stringify(c.tensor)}`);
    }
  });
});
