/**
 * The one streaming primitive behind serialize, verify and export: read byte ranges of a
 * local file in fixed-size chunks, feed them to CRC32 and SHA-256 (after an optional prefix,
 * the tensor header), and optionally write them at a position in another file. Memory use
 * is one chunk buffer, whatever the tensor size. Runs synchronously, inside a worker thread.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { TensorizeError } from '../errors.js';

export interface Range {
  offset: number;
  length: number;
}

export interface StreamJob {
  id: number;
  src: { path: string; ranges: Range[] };
  dst?: { path: string; offset: number };
  /** Bytes hashed before the data and not written (a tensor header with zeroed hash values). */
  prefix?: Uint8Array[];
  crc32: boolean;
  sha256: boolean;
}

export interface JobResult {
  id: number;
  bytes: number;
  crc32?: number;
  sha256?: Uint8Array;
}

/** Open file descriptors, kept for the life of a worker so many small tensors cost no opens. */
export class FdCache {
  private readonly fds = new Map<string, number>();
  get(path: string, write: boolean): number {
    const key = `${write ? 'w' : 'r'}:${path}`;
    let fd = this.fds.get(key);
    if (fd === undefined) {
      fd = openSync(path, write ? 'r+' : 'r');
      this.fds.set(key, fd);
    }
    return fd;
  }
  closeAll(): void {
    for (const fd of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}

export function runJob(job: StreamJob, fds: FdCache, buf: Buffer, onBytes: (n: number) => void): JobResult {
  let crc = 0;
  const sha = job.sha256 ? createHash('sha256') : undefined;
  for (const p of job.prefix ?? []) {
    if (job.crc32) crc = crc32(p, crc);
    sha?.update(p);
  }
  const inFd = fds.get(job.src.path, false);
  const outFd = job.dst ? fds.get(job.dst.path, true) : -1;
  let outPos = job.dst?.offset ?? 0;
  let total = 0;
  for (const r of job.src.ranges) {
    for (let pos = 0; pos < r.length; ) {
      const n = Math.min(buf.length, r.length - pos);
      let got = 0;
      while (got < n) {
        const k = readSync(inFd, buf, got, n - got, r.offset + pos + got);
        if (k === 0) {
          throw new TensorizeError(
            'E_IO',
            `${job.src.path}: short read at byte ${r.offset + pos + got}; the file is truncated or changed while being read`,
          );
        }
        got += k;
      }
      const chunk = buf.subarray(0, n);
      sha?.update(chunk);
      if (job.crc32) crc = crc32(chunk, crc);
      if (outFd >= 0) {
        for (let w = 0; w < n; ) w += writeSync(outFd, chunk, w, n - w, outPos + w);
        outPos += n;
      }
      pos += n;
      total += n;
      onBytes(n);
    }
  }
  const res: JobResult = { id: job.id, bytes: total };
  if (job.crc32) res.crc32 = crc >>> 0;
  if (sha) res.sha256 = new Uint8Array(sha.digest());
  return res;
}
