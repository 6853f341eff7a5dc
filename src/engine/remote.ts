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
  const state = jobs.map((j, id) => {
    const sha = j.sha256 ? createHash('sha256') : undefined;
    let crc = 0;
    for (const p of j.prefix) {
      sha?.update(p);
      if (j.crc32) crc = crc32(p, crc);
    }
    return { j, id, sha, crc, done: 0 };
  });
  // Jobs by offset, to find the ones a chunk touches.
  const byOffset = [...state].filter((s) => s.j.length > 0).sort((a, b) => a.j.offset - b.j.offset);
  const reads = planReads(jobs, chunk, opts.maxGap ?? 1 << 20);
  const inFlight: Promise<Buffer>[] = [];
  // Chunk buffers are reused: memory stays at concurrency x chunk instead of waiting for GC.
  const free: Buffer[] = [];
  let next = 0;
  let first = 0; // first job in byOffset that may still need bytes
  const issue = () => {
    while (inFlight.length < concurrency && next < reads.length) {
      const [o, l] = reads[next++]!;
      const into = free.pop() ?? Buffer.allocUnsafeSlow(chunk);
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
        s.sha?.update(part);
        if (s.j.crc32) s.crc = crc32(part, s.crc);
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
        () => free.push(whole),
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
  return state.map((s) => {
    const res: JobResult = { id: s.id, bytes: s.j.length };
    if (s.j.crc32) res.crc32 = s.crc >>> 0;
    if (s.sha) res.sha256 = new Uint8Array(s.sha.digest());
    return res;
  });
}

export const hashRemote = readRemote;
