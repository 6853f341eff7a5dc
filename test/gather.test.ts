// Strided tensor views (what PyTorch checkpoints hold: slices, transposes, permutes,
// expands) gathered into contiguous bytes: viewSource picks ranges or a gather, and the
// job's output and hashes equal an element-by-element reference, including when the
// gather window is tiny and the view is cut into many boxes, and with byte swapping.
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { FdCache, runGatherForTest, runJob, type StreamJob } from '../src/engine/job.js';
import { viewSource } from '../src/format/view.js';
import { bytes } from './helpers/util.js';

function reference(file: Buffer, base: number, itemsize: number, offset: number, shape: number[], stride: number[], swap?: number): Buffer {
  const n = shape.reduce((a, d) => a * d, 1);
  const out = Buffer.alloc(n * itemsize);
  const idx = new Array<number>(shape.length).fill(0);
  for (let e = 0; e < n; e++) {
    let s = offset;
    for (let d = 0; d < shape.length; d++) s += idx[d]! * stride[d]!;
    file.copy(out, e * itemsize, base + s * itemsize, base + (s + 1) * itemsize);
    for (let d = shape.length - 1; d >= 0 && ++idx[d]! === shape[d]; d--) idx[d] = 0;
  }
  if (swap === 2) out.swap16();
  if (swap === 4) out.swap32();
  if (swap === 8) out.swap64();
  return out;
}

function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n: number) => {
    s = (s * 1103515245 + 12345) >>> 0;
    return (s >>> 8) % n;
  };
}

t.test('viewSource: contiguous views are one range, row runs are ranges, the rest a gather', async (t) => {
  t.same(viewSource('f', 100, 4, 5, [3, 4], [4, 1]), { path: 'f', ranges: [{ offset: 120, length: 48 }] });
  t.same(viewSource('f', 0, 4, 0, [1, 4, 1], [99, 1, 7]), { path: 'f', ranges: [{ offset: 0, length: 16 }] }, 'size-1 dims ignored');
  t.same(viewSource('f', 0, 2, 3, [], []), { path: 'f', ranges: [{ offset: 6, length: 2 }] }, '0-dim');
  t.same(viewSource('f', 0, 2, 3, [0, 5], [5, 1]), { path: 'f', ranges: [] }, 'empty');
  t.same(viewSource('f', 0, 4, 0, [2, 1024], [2048, 1]).ranges, [{ offset: 0, length: 4096 }, { offset: 8192, length: 4096 }], 'long row runs');
  t.same(viewSource('f', 0, 4, 0, [3, 2], [1, 3]).view, { offset: 0, itemsize: 4, shape: [3, 2], strides: [1, 3] }, 'transpose');
  t.same(viewSource('f', 0, 4, 0, [2, 4], [8, 1]).view, { offset: 0, itemsize: 4, shape: [2, 4], strides: [8, 1] }, 'short runs are gathered');
  t.equal(viewSource('f', 0, 2, 0, [4], [1], 2).swap, 2);
});

t.test('random views, gathered with windows from tiny to whole, match the reference', async (t) => {
  const dir = t.testdir();
  const file = bytes(1 << 16, 3);
  const inPath = join(dir, 'in.bin');
  const outPath = join(dir, 'out.bin');
  writeFileSync(inPath, file);
  const fds = new FdCache();
  t.teardown(() => fds.closeAll());
  const buf = Buffer.alloc(256);
  const r = rng(11);
  let gathered = 0;
  let multiBox = 0;
  for (let i = 0; i < 400; i++) {
    const itemsize = [1, 2, 4, 8, 16][r(5)]!;
    const nd = 1 + r(4);
    const shape = Array.from({ length: nd }, () => 1 + r(7));
    // a random permutation of a contiguous base, sometimes with steps, slices or stride 0
    const perm = [...shape.keys()].sort(() => r(3) - 1);
    const baseStrides = new Array<number>(nd);
    for (let d = nd - 1, s = 1; d >= 0; d--) {
      baseStrides[d] = s;
      s *= shape[d]! * (1 + r(2));
    }
    const stride = perm.map((p) => (r(10) === 0 ? 0 : baseStrides[p]!));
    const viewShape = perm.map((p) => shape[p]!);
    const offset = r(50);
    const reach = viewShape.reduce((a, n, d) => a + (n - 1) * stride[d]!, offset) + 1;
    if (reach * itemsize + 64 > file.length) continue;
    const swap = r(4) === 0 ? ([1, 2, 4, 8].filter((u) => u <= itemsize && itemsize % u === 0).pop() ?? 1) : undefined;
    const want = reference(file, 64, itemsize, offset, viewShape, stride, swap);
    const src = viewSource(inPath, 64, itemsize, offset, viewShape, stride, swap);
    writeFileSync(outPath, Buffer.alloc(want.length + 32, 0xee));
    const job: StreamJob = { id: i, src, dst: { path: outPath, offset: 16 }, prefix: [Buffer.from('hdr')], crc32: true, sha256: true };
    const window = [itemsize, 64, 256, 1 << 20][r(4)]!;
    let progress = 0;
    const res = src.view ? runGatherForTest(job, src.view, fds, buf, (n) => (progress += n), window) : runJob(job, fds, buf, (n) => (progress += n));
    if (src.view) {
      gathered++;
      if (want.length > window || src.view.shape.reduce((a, n, d) => a + (n - 1) * src.view!.strides[d]!, 1) * itemsize > window) multiBox++;
    }
    const out = readFileSync(outPath);
    const ctx = `#${i}: itemsize ${itemsize}, shape [${viewShape}], stride [${stride}], offset ${offset}, window ${window}, swap ${swap}`;
    if (!out.subarray(16, 16 + want.length).equals(want)) {
      t.fail(`bytes differ ${ctx}`);
      continue;
    }
    t.ok(out.subarray(0, 16).equals(Buffer.alloc(16, 0xee)) && out.subarray(16 + want.length).equals(Buffer.alloc(16, 0xee)), `nothing written outside ${ctx}`);
    const withHdr = Buffer.concat([Buffer.from('hdr'), want]);
    t.equal(res.crc32, crc32(withHdr) >>> 0, `crc32 ${ctx}`);
    t.same(Buffer.from(res.sha256!), createHash('sha256').update(withHdr).digest(), `sha256 ${ctx}`);
    t.equal(res.bytes, want.length);
    t.equal(progress, want.length, `progress ${ctx}`);
  }
  t.ok(gathered > 100, `${gathered} views needed a gather`);
  t.ok(multiBox > 30, `${multiBox} of them were cut into several boxes`);
});

t.test('a gather that fits the window needs no output file (hash only)', async (t) => {
  const dir = t.testdir();
  const file = bytes(4096, 5);
  writeFileSync(join(dir, 'in.bin'), file);
  const fds = new FdCache();
  t.teardown(() => fds.closeAll());
  const src = viewSource(join(dir, 'in.bin'), 0, 2, 0, [8, 16], [1, 8]);
  const res = runJob({ id: 0, src, crc32: false, sha256: true }, fds, Buffer.alloc(64), () => {});
  t.same(Buffer.from(res.sha256!), createHash('sha256').update(reference(file, 0, 2, 0, [8, 16], [1, 8])).digest());
  t.throws(() => runGatherForTest({ id: 0, src, crc32: false, sha256: true }, src.view!, fds, Buffer.alloc(64), () => {}, 16), { message: /can only be gathered into an output file/ });
});
