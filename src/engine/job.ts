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
import { swapBytes } from '../format/dtypes.js';
import type { SourceData, StridedView } from '../format/view.js';
import type { NativeItemCrypt, NativeSealItem } from '../native/binding.js';

export interface StreamJob {
  id: number;
  src: SourceData;
  dst?: { path: string; offset: number };
  /** Bytes hashed before the data and not written (a tensor header with zeroed hash values). */
  prefix?: Uint8Array[];
  crc32: boolean;
  sha256: boolean;
  /**
   * Encrypted data (one range, not swapped), decrypted before hashing and writing; or data
   * to encrypt after hashing (its MACs in the result). The native copy engine only: the
   * worker pool refuses them (E_UNSUPPORTED).
   */
  crypt?: Omit<NativeItemCrypt, 'key'> & { key: Buffer };
  seal?: Omit<NativeSealItem, 'key'> & { key: Buffer };
}

export interface JobResult {
  id: number;
  bytes: number;
  crc32?: number;
  sha256?: Uint8Array;
  /** Jobs sealed on the way (TransferOptions.seal): their chunks' MACs. */
  macs?: Buffer;
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

function readFully(fd: number, path: string, buf: Buffer, n: number, offset: number): void {
  let got = 0;
  while (got < n) {
    const k = readSync(fd, buf, got, n - got, offset + got);
    if (k === 0) {
      throw new TensorizeError('E_IO', `${path}: short read at byte ${offset + got}; the file is truncated or changed while being read`);
    }
    got += k;
  }
}

export function writeFully(fd: number, b: Buffer, pos: number): void {
  for (let o = 0; o < b.length; ) o += writeSync(fd, b, o, b.length - o, pos + o);
}

/** The job's CRC32 and SHA-256, running over its prefix and then its data in order. */
class JobHash {
  private crc = 0;
  private readonly sha;
  constructor(private readonly job: StreamJob) {
    this.sha = job.sha256 ? createHash('sha256') : undefined;
    for (const p of job.prefix ?? []) this.update(p);
  }
  update(b: Uint8Array): void {
    this.sha?.update(b);
    if (this.job.crc32) this.crc = crc32(b, this.crc);
  }
  result(bytes: number): JobResult {
    const res: JobResult = { id: this.job.id, bytes };
    if (this.job.crc32) res.crc32 = this.crc >>> 0;
    if (this.sha) res.sha256 = new Uint8Array(this.sha.digest());
    return res;
  }
}

export function runJob(job: StreamJob, fds: FdCache, buf: Buffer, onBytes: (n: number) => void): JobResult {
  if (job.src.view) return runGather(job, job.src.view, fds, buf, onBytes);
  const hash = new JobHash(job);
  const inFd = fds.get(job.src.path, false);
  const outFd = job.dst ? fds.get(job.dst.path, true) : -1;
  let outPos = job.dst?.offset ?? 0;
  let total = 0;
  for (const r of job.src.ranges) {
    for (let pos = 0; pos < r.length; ) {
      const n = Math.min(buf.length, r.length - pos);
      readFully(inFd, job.src.path, buf, n, r.offset + pos);
      const chunk = buf.subarray(0, n);
      swapBytes(chunk, job.src.swap);
      hash.update(chunk);
      if (outFd >= 0) {
        writeFully(outFd, chunk, outPos);
        outPos += n;
      }
      pos += n;
      total += n;
      onBytes(n);
    }
  }
  return hash.result(total);
}

const TILE = 64;

/** Largest source span (and output block) a gather holds in memory at once. */
export const GATHER_WINDOW = 16 * 1024 * 1024;

interface Box {
  start: number[];
  len: number[];
}

/**
 * Gather a strided view into contiguous row-major bytes with bounded memory. The view is
 * cut into boxes (halving the dimension with the largest reach) until each box's source
 * span and output fit the window; each box is read with one pread and gathered in memory.
 * When the whole view fits, the result is hashed and written directly; otherwise each box
 * is written to its runs of the output and the output is read back to hash it in order.
 */
function runGather(job: StreamJob, view: StridedView, fds: FdCache, buf: Buffer, onBytes: (n: number) => void, window = GATHER_WINDOW): JobResult {
  const { itemsize, shape, strides } = view;
  const nd = shape.length;
  const total = shape.reduce((a, n) => a * n, itemsize);
  const outStrides = new Array<number>(nd);
  for (let d = nd - 1, s = 1; d >= 0; d--) {
    outStrides[d] = s;
    s *= shape[d]!;
  }
  const span = (len: number[]): number => len.reduce((a, n, d) => a + (n - 1) * strides[d]!, 1) * itemsize;
  const count = (len: number[]): number => len.reduce((a, n) => a * n, itemsize);
  const single = span(shape) <= window && total <= window;
  if (!single && !job.dst) throw new TensorizeError('E_INPUT', `${job.src.path}: a strided tensor larger than ${window} bytes can only be gathered into an output file`);
  const w = itemsize % 4 === 0 ? 4 : itemsize % 2 === 0 ? 2 : 1;
  const k = itemsize / w;
  const srcBuf = Buffer.allocUnsafeSlow(Math.min(window, span(shape)));
  const outBuf = Buffer.allocUnsafeSlow(Math.min(window, total));
  const words = (b: Buffer): Uint8Array | Uint16Array | Uint32Array =>
    w === 4 ? new Uint32Array(b.buffer, b.byteOffset, b.length >>> 2) : w === 2 ? new Uint16Array(b.buffer, b.byteOffset, b.length >>> 1) : new Uint8Array(b.buffer, b.byteOffset, b.length);
  const src = words(srcBuf);
  const out = words(outBuf);
  const inFd = fds.get(job.src.path, false);
  const outFd = job.dst ? fds.get(job.dst.path, true) : -1;

  const emit = (box: Box): number => {
    const n = count(box.len);
    const sp = span(box.len);
    let base = view.offset;
    for (let d = 0; d < nd; d++) base += box.start[d]! * strides[d]! * itemsize;
    readFully(inFd, job.src.path, srcBuf, sp, base);
    swapBytes(srcBuf.subarray(0, sp), job.src.swap);
    // Gather in box row-major order. The last two dimensions are walked in square tiles so
    // that a transpose reads and writes nearby memory instead of striding across the span.
    if (nd === 1) {
      const step = strides[0]! * k;
      for (let j = 0, s = 0, o = 0; j < box.len[0]!; j++, s += step) for (let c = 0; c < k; c++) out[o++] = src[s + c]!;
      return n;
    }
    const R = box.len[nd - 2]!;
    const C = box.len[nd - 1]!;
    const rs = strides[nd - 2]! * k;
    const cs = strides[nd - 1]! * k;
    const idx = new Array<number>(nd - 2).fill(0);
    for (let o0 = 0; ; o0 += R * C * k) {
      let s0 = 0;
      for (let d = 0; d < nd - 2; d++) s0 += idx[d]! * strides[d]! * k;
      for (let r0 = 0; r0 < R; r0 += TILE) {
        const rEnd = Math.min(R, r0 + TILE);
        for (let c0 = 0; c0 < C; c0 += TILE) {
          const cEnd = Math.min(C, c0 + TILE);
          for (let r = r0; r < rEnd; r++) {
            let s = s0 + r * rs + c0 * cs;
            let o = o0 + (r * C + c0) * k;
            if (k === 1) for (let c = c0; c < cEnd; c++, s += cs) out[o++] = src[s]!;
            else for (let c = c0; c < cEnd; c++, s += cs) for (let e = 0; e < k; e++) out[o++] = src[s + e]!;
          }
        }
      }
      let d = nd - 3;
      while (d >= 0 && ++idx[d]! === box.len[d]) idx[d--] = 0;
      if (d < 0) break;
    }
    return n;
  };

  if (single) {
    const n = emit({ start: new Array<number>(nd).fill(0), len: [...shape] });
    const data = outBuf.subarray(0, n);
    const hash = new JobHash(job);
    hash.update(data);
    if (outFd >= 0) writeFully(outFd, data, job.dst!.offset);
    onBytes(n);
    return hash.result(total);
  }

  const todo: Box[] = [{ start: new Array<number>(nd).fill(0), len: [...shape] }];
  while (todo.length) {
    const box = todo.pop()!;
    if (span(box.len) > window || count(box.len) > window) {
      // Split the dimension that reaches furthest in the source (or, when the source is
      // small but the output is not, the outermost one), so output runs stay long.
      let d = -1;
      if (span(box.len) > window) {
        for (let i = 0; i < nd; i++) if (box.len[i]! > 1 && (d < 0 || (box.len[i]! - 1) * strides[i]! > (box.len[d]! - 1) * strides[d]!)) d = i;
      } else d = box.len.findIndex((n) => n > 1);
      const h = Math.floor(box.len[d]! / 2);
      const a = { start: [...box.start], len: [...box.len] };
      const b = { start: [...box.start], len: [...box.len] };
      a.len[d] = h;
      b.start[d] = box.start[d]! + h;
      b.len[d] = box.len[d]! - h;
      todo.push(b, a);
      continue;
    }
    const n = emit(box);
    // The box's output is contiguous along its last partial dimension and every full one after it.
    let j = nd - 1;
    while (j >= 0 && box.len[j] === shape[j]) j--;
    const run = j < 0 ? n : box.len[j]! * outStrides[j]! * itemsize;
    const idx = new Array<number>(Math.max(j, 0)).fill(0);
    for (let o = 0; o < n; o += run) {
      let pos = 0;
      for (let d = 0; d < j; d++) pos += (box.start[d]! + idx[d]!) * outStrides[d]!;
      if (j >= 0) pos += box.start[j]! * outStrides[j]!;
      writeFully(outFd, outBuf.subarray(o, o + run), job.dst!.offset + pos * itemsize);
      let d = j - 1;
      while (d >= 0 && ++idx[d]! === box.len[d]) idx[d--] = 0;
    }
    onBytes(n);
  }
  // Hash the gathered output in order, reading it back (it is in the page cache).
  const hash = new JobHash(job);
  for (let pos = 0; pos < total; ) {
    const n = Math.min(buf.length, total - pos);
    readFully(outFd, job.dst!.path, buf, n, job.dst!.offset + pos);
    hash.update(buf.subarray(0, n));
    pos += n;
  }
  return hash.result(total);
}

/** Exposed for tests: gather with a chosen window. */
export const runGatherForTest = runGather;
