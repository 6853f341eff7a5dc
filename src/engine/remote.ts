/**
 * Hashing tensors of a remote source (HTTP, S3): the data region is read in order as
 * chunks (default 8 MiB) with up to `concurrency` range requests in flight, and each
 * chunk's bytes go to the CRC32 and SHA-256 of the tensors they belong to. Neighbouring
 * tensors are read as one span (the tensor headers between them come along), so many small
 * tensors cost no extra round trips. Memory: concurrency x chunk.
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import type { ByteSource } from '../sources/source.js';
import type { JobResult } from './job.js';
import { TensorizeError } from '../errors.js';
import { native } from '../native/binding.js';
import { chooseEngine } from './runner.js';

export interface RemoteJob {
  offset: number;
  length: number;
  prefix: Uint8Array[];
  crc32: boolean;
  sha256: boolean;
}

export interface RemoteOptions {
  chunkSize?: number;
  concurrency?: number;
  onProgress?: (bytes: number) => void;
  /** Gaps up to this many bytes between tensors are read rather than split (default 1 MiB). */
  maxGap?: number;
  /**
   * Each piece of a job's data as it arrives, in order: (job index, offset within the job,
   * bytes). It may return a promise (an asynchronous copy): the chunk's buffer is reused
   * only after it settles, and the run waits for all of them before it returns.
   */
  onPart?: (job: number, offset: number, bytes: Buffer) => void | Promise<void>;
  /** A job has all its bytes. */
  onJobDone?: (job: number) => void;
}

export const DEFAULT_REMOTE_CHUNK = 8 << 20;
export const DEFAULT_CONCURRENCY = 8;

/** [offset, length] reads covering every job's bytes, in file order. */
export function planReads(jobs: readonly RemoteJob[], chunk: number, maxGap: number): [number, number][] {
  const spans: [number, number][] = [];
  const sorted = jobs.filter((j) => j.length > 0).sort((a, b) => a.offset - b.offset);
  for (const j of sorted) {
    const last = spans[spans.length - 1];
    if (last && j.offset - (last[0] + last[1]) <= maxGap && j.offset >= last[0] + last[1]) last[1] = j.offset + j.length - last[0];
    else if (last && j.offset < last[0] + last[1]) last[1] = Math.max(last[1], j.offset + j.length - last[0]);
    else spans.push([j.offset, j.length]);
  }
  const reads: [number, number][] = [];
  for (const [o, l] of spans) for (let p = 0; p < l; p += chunk) reads.push([o + p, Math.min(chunk, l - p)]);
  return reads;
}

/** Read jobs' bytes from a remote source in order (see the module comment), hashing those that ask for it. */
export async function readRemote(source: ByteSource, jobs: readonly RemoteJob[], opts: RemoteOptions = {}): Promise<JobResult[]> {
  const chunk = opts.chunkSize ?? DEFAULT_REMOTE_CHUNK;
  const concurrency = Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY);
  const makeHasher = chooseEngine() === 'native' ? nativeHasher : jsHasher;
  const state = jobs.map((j, id) => ({ j, id, h: j.crc32 || j.sha256 ? makeHasher(j.prefix) : undefined, done: 0 }));
  // Jobs by offset, to find the ones a chunk touches.
  const byOffset = [...state].filter((s) => s.j.length > 0).sort((a, b) => a.j.offset - b.j.offset);
  const reads = planReads(jobs, chunk, opts.maxGap ?? 1 << 20);
  const inFlight: Promise<Buffer>[] = [];
  // Chunk buffers are reused: memory stays at concurrency x chunk instead of waiting for GC.
  const free: Buffer[] = [];
  let next = 0;
  let first = 0; // first job in byOffset that may still need bytes
  // At most 2 x concurrency chunk buffers: reads wait while earlier chunks are still being
  // copied or hashed asynchronously.
  let allocated = 0;
  const issue = () => {
    while (inFlight.length < concurrency && next < reads.length) {
      if (free.length === 0 && allocated >= 2 * concurrency) return;
      const [o, l] = reads[next++]!;
      const into = free.pop() ?? (allocated++, Buffer.allocUnsafeSlow(chunk));
      const p = source.read(o, l, into);
      p.catch(() => {}); // awaited in order below; a failure there rejects the whole run
      inFlight.push(p);
    }
  };
  for (const s of state) if (s.j.length === 0) opts.onJobDone?.(s.id);
  const copying = new Set<Promise<unknown>>();
  let copyFailed: unknown;
  issue();
  try {
    for (let r = 0; r < reads.length; r++) {
      // Every buffer may be waiting for its copies: wait for one to come back.
      while (inFlight.length === 0) {
        if (copyFailed) throw copyFailed;
        if (copying.size === 0) throw new TensorizeError('E_NATIVE', 'remote read stalled with nothing in flight');
        await Promise.race(copying);
        issue();
      }
      const buf = await inFlight.shift()!;
      if (copyFailed) throw copyFailed;
      issue();
      const copies: Promise<void>[] = [];
      const [o, l] = reads[r]!;
      while (first < byOffset.length && byOffset[first]!.j.offset + byOffset[first]!.j.length <= o) first++;
      let useful = 0;
      for (let k = first; k < byOffset.length && byOffset[k]!.j.offset < o + l; k++) {
        const s = byOffset[k]!;
        const a = Math.max(o, s.j.offset + s.done);
        const b = Math.min(o + l, s.j.offset + s.j.length);
        if (b <= a) continue;
        const part = buf.subarray(a - o, b - o);
        const hashed = s.h?.update(part);
        if (hashed) copies.push(hashed);
        const c = opts.onPart?.(s.id, s.done, part);
        if (c) copies.push(c);
        s.done += b - a;
        useful += b - a;
        if (s.done === s.j.length) opts.onJobDone?.(s.id);
      }
      opts.onProgress?.(useful);
      const whole = Buffer.from(buf.buffer, buf.byteOffset, chunk);
      if (copies.length === 0) {
        free.push(whole);
        continue;
      }
      const done = Promise.all(copies).then(
        () => {
          free.push(whole);
          issue();
        },
        (e: unknown) => (copyFailed ??= e),
      );
      copying.add(done);
      void done.finally(() => copying.delete(done));
    }
    await Promise.all(copying);
    if (copyFailed) throw copyFailed;
  } finally {
    await Promise.allSettled([...inFlight, ...copying]);
  }
  return Promise.all(
    state.map(async (s) => {
      const res: JobResult = { id: s.id, bytes: s.j.length };
      if (!s.h) return res;
      const d = await s.h.digest();
      if (s.j.crc32) res.crc32 = d.crc32;
      if (s.j.sha256) res.sha256 = d.sha256;
      return res;
    }),
  );
}

/** CRC32 + SHA-256 of a job's prefix and data, fed in order. */
interface StreamHasher {
  /** A promise when the bytes are hashed asynchronously: they must stay untouched until it settles. */
  update(b: Buffer): Promise<void> | undefined;
  digest(): Promise<{ crc32: number; sha256: Uint8Array }>;
}

/** In this thread: Node's OpenSSL SHA-256 and zlib CRC32. */
function jsHasher(prefix: Uint8Array[]): StreamHasher {
  const sha = createHash('sha256');
  let crc = 0;
  const update = (b: Uint8Array) => {
    sha.update(b);
    crc = crc32(b, crc);
  };
  prefix.forEach(update);
  return {
    update: (b) => (update(b), undefined),
    digest: async () => ({ crc32: crc >>> 0, sha256: new Uint8Array(sha.digest()) }),
  };
}

/**
 * On libuv threads with the addon's SHA-NI / PCLMUL code, so the main thread keeps
 * receiving; updates of one job are chained, different jobs hash in parallel.
 */
function nativeHasher(prefix: Uint8Array[]): StreamHasher {
  const bin = native();
  const h = bin.hasher(Buffer.concat(prefix));
  let chain: Promise<void> = Promise.resolve();
  return {
    update: (b) => (chain = chain.then(() => bin.hashUpdate(h, b))),
    digest: async () => {
      await chain;
      const d = bin.hashDigest(h);
      return { crc32: d.crc32, sha256: new Uint8Array(d.sha256) };
    },
  };
}

export const hashRemote = readRemote;
