/**
 * One timed measurement of `tensorize bench`: a load method (tensorize --plaid, --mmap,
 * without --plaid, the naive baseline) or a ceiling probe (raw read, raw download, pinned
 * host-to-device copy). The bench runs each in a fresh child process (./child.ts), so that
 * peak RSS is the method's own and no method inherits another's memory or CUDA state.
 */
import { TensorizerFile } from '../format/reader.js';
import { ALIGNMENT, load, parseDevice } from '../ops/load.js';
import { native } from '../native/binding.js';
import { hugePagesByDefault } from '../util/memory.js';
import { FileSource } from '../sources/file.js';
import { openSource, sourceKind } from '../sources/open.js';
import { checkRange, type ByteSource } from '../sources/source.js';
import { transfer } from '../engine/transfer.js';
import { fetchNativeMany, networkTargetOf } from '../engine/fetch.js';
import { closeCheckpoint, isMultiFile, openSafetensorsCheckpoint } from '../inputs/safetensors-checkpoint.js';
import { isSafetensorsHead, readSafetensorsHeader } from '../inputs/safetensors-header.js';
import type { Sample, Task } from './types.js';

export const REMOTE_RANGE = 8 << 20;
export const H2D_PROBE_BYTES = 256 << 20;
export const H2D_PROBE_ITERATIONS = 5;
/** Read calls of the naive baseline, and the largest Buffer it holds the file in. */
const NAIVE_READ = 64 << 20;
const NAIVE_PIECE = 1 << 30;

const sample = (bytes: number, seconds: number, extra: Partial<Sample> = {}): Sample => ({ seconds, bytes, gbPerSecond: seconds > 0 ? bytes / seconds / 1e9 : 0, ...extra });

/** Create the CUDA context before any clock starts, the same for every method. */
export function warmUp(device: string): void {
  const bin = native();
  const d = parseDevice(device, () => bin.info());
  if (d >= 0) bin.free(bin.alloc({ device: d, total: ALIGNMENT }));
}

export async function measure(task: Task): Promise<Sample> {
  switch (task.id) {
    case 'plaid':
    case 'mmap':
    case 'simple': {
      const m = await load(task.file, {
        device: task.device,
        plaid: task.id === 'plaid',
        mmap: task.id === 'mmap',
        readers: task.readers,
        chunkSize: task.chunkSize,
        source: task.source,
        concurrency: task.concurrency,
      });
      m.close();
      return sample(m.stats.bytes, m.stats.totalMs / 1000, { firstTensorMs: m.stats.firstTensorMs });
    }
    case 'naive':
      return naive(task);
    case 'read-parallel':
    case 'read-sequential': {
      const threads = task.id === 'read-parallel' ? task.readers : 1;
      const r = await native().readProbe(task.file, threads, task.chunkSize);
      return sample(r.bytes, r.seconds);
    }
    case 'download':
      return download(task);
    case 'h2d': {
      const bps = native().probeH2D(parseDevice(task.device, () => native().info()), H2D_PROBE_BYTES, H2D_PROBE_ITERATIONS);
      return sample(H2D_PROBE_BYTES, H2D_PROBE_BYTES / bps);
    }
  }
}

/** A file held in memory as Buffers of at most 1 GiB, read through the ByteSource interface. */
class MemorySource implements ByteSource {
  constructor(
    readonly name: string,
    readonly pieces: Buffer[],
    readonly size: number,
  ) {}
  /** Calls `f` with each piece of [offset, offset + length) in order, and where it goes. */
  each(offset: number, length: number, f: (part: Buffer, at: number) => void): void {
    checkRange(this, offset, length, 'a read');
    for (let at = 0; at < length; ) {
      const p = Math.floor((offset + at) / NAIVE_PIECE);
      const from = offset + at - p * NAIVE_PIECE;
      const part = this.pieces[p]!.subarray(from, Math.min(NAIVE_PIECE, from + length - at));
      f(part, at);
      at += part.length;
    }
  }
  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const out = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    this.each(offset, length, (part, at) => part.copy(out, at));
    return out;
  }
  async close(): Promise<void> {}
}

/**
 * The naive baseline: read the whole file into memory (sequential 64 MiB reads into
 * Buffers, as a plain readFile does; one ranged GET at a time for remote objects), parse
 * the index from memory, then copy each tensor into one destination with a synchronous
 * copy (memcpy into host memory, cudaMemcpy from pageable memory to a GPU).
 */
async function naive(task: Task): Promise<Sample> {
  const t0 = performance.now();
  const bin = native();
  const device = parseDevice(task.device, () => bin.info());
  const src = sourceKind(task.file) === 'file' ? await FileSource.open(task.file) : await openSource(task.file, task.source);
  const pieces: Buffer[] = [];
  try {
    for (let off = 0; off < src.size; off += NAIVE_PIECE) {
      const piece = Buffer.allocUnsafeSlow(Math.min(NAIVE_PIECE, src.size - off));
      for (let at = 0; at < piece.length; at += NAIVE_READ) await src.read(off + at, Math.min(NAIVE_READ, piece.length - at), piece.subarray(at));
      pieces.push(piece);
    }
  } finally {
    await src.close();
  }
  const mem = new MemorySource(task.file, pieces, src.size);
  // A .tensors file's index, or a safetensors file's header, parsed from memory.
  const ranges: [number, number][] = [];
  if (isSafetensorsHead(await mem.read(0, Math.min(16, mem.size)), mem.size)) {
    const h = await readSafetensorsHeader(mem);
    for (const t of h.tensors) ranges.push([h.dataStart + t.begin, t.end - t.begin]);
  } else {
    for (const e of (await TensorizerFile.open(mem)).entries) ranges.push([e.dataOffset, e.dataLength]);
  }
  const plan: [number, number, number][] = [];
  let total = 0;
  for (const [offset, length] of ranges) {
    if (length === 0) continue;
    plan.push([offset, length, total]);
    total += Math.ceil(length / ALIGNMENT) * ALIGNMENT;
  }
  const h = bin.alloc({ device, total, hugePages: device < 0 && hugePagesByDefault() });
  let first = -1;
  let bytes = 0;
  try {
    for (const [off, len, dst] of plan) {
      mem.each(off, len, (part, at) => bin.write(h, dst + at, part));
      if (first < 0) first = performance.now() - t0;
      bytes += len;
    }
  } finally {
    bin.free(h);
  }
  return sample(bytes, (performance.now() - t0) / 1000, { firstTensorMs: first });
}

/**
 * The remote ceiling: the whole object as parallel 8 MiB range reads, bytes dropped, by the
 * transfer loads use (the native fetcher; TENSORIZE_NET=js: undici). A sharded checkpoint:
 * every shard whole, its connections spread over them all (the native fetcher, as its load).
 */
async function download(task: Task): Promise<Sample> {
  if (await isMultiFile(task.file)) {
    const c = await openSafetensorsCheckpoint(task.file, { source: task.source });
    try {
      const srcs = c.shards.map((x) => x.source);
      const nets = await Promise.all(srcs.map(networkTargetOf));
      const t0 = performance.now();
      if (nets.every((n) => n !== undefined)) {
        const jobs = srcs.map((x, file) => ({ offset: 0, length: x.size, dst: 0, crc32: false, sha256: false, file }));
        const { stats } = await fetchNativeMany(srcs.map((src, k) => ({ src, net: nets[k]! })), jobs, { concurrency: task.concurrency, chunkSize: REMOTE_RANGE });
        return sample(stats.bytes, stats.transferMs / 1000);
      }
      const share = Math.max(1, Math.floor(task.concurrency / srcs.length));
      const done = await Promise.all(srcs.map((src) => transfer([{ src: { offset: 0, length: src.size } }], { kind: 'hash' }, { source: src, concurrency: share, chunkSize: REMOTE_RANGE })));
      return sample(done.reduce((n, d) => n + d.stats.bytes, 0), (performance.now() - t0) / 1000);
    } finally {
      await closeCheckpoint(c);
    }
  }
  const src = await openSource(task.file, task.source);
  try {
    const { stats } = await transfer([{ src: { offset: 0, length: src.size } }], { kind: 'hash' }, { source: src, concurrency: task.concurrency, chunkSize: REMOTE_RANGE });
    return sample(stats.bytes, stats.transferMs / 1000);
  } finally {
    await src.close();
  }
}
