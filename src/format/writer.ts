/**
 * Streaming writer for the tensorizer format. The index is written first with exact
 * offsets (header sizes do not depend on hash values), then every tensor's data is copied
 * from its input ranges straight to its place in the output while CRC32 and SHA-256 are
 * computed, on a pool of worker threads; each header is written once its hashes are known.
 * Memory use is one chunk per thread, whatever the model size. Output goes to a temporary
 * file renamed into place only on success.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { inTensor, TensorizeError } from '../errors.js';
import { fsError } from '../sources/file.js';
import { sourceBytes, writeFully, type SourceData } from '../engine/job.js';
import { fetchedHashes, fetchNative, incrementally, networkTargetOf } from '../engine/fetch.js';
import { readRemote } from '../engine/remote.js';
import type { ByteSource } from '../sources/source.js';
import type { MultipartUpload, UploadOptions } from '../outputs/s3upload.js';
import { sourceKind } from '../sources/open.js';
import { onInterrupt } from '../util/interrupt.js';
import { JobRunner } from '../engine/runner.js';
import { TempOutput } from '../util/tempfile.js';
import { HashType, MAGIC, METADATA_OFFSET, metadataEntrySize, TensorType } from './constants.js';
import { swapBytes, type DTypeInfo } from './dtypes.js';
import { encodeHeader, headerSize, numel } from './header.js';
import { encodePath, isPlain, PathRegistry, pathToString, type TensorPath } from './paths.js';

export interface WriteTensor {
  path: TensorPath;
  type: TensorType;
  dtype: DTypeInfo;
  shape: number[];
  moduleIdx?: number;
  /** Write as a meta tensor: dtype and shape only, no data (forces data version 4). */
  meta?: boolean;
  /** Where the tensor's bytes are: ranges of a local file, concatenated in order, or a strided view. */
  data?: SourceData;
}

export interface WriteOptions {
  threads?: number;
  chunkSize?: number;
  onProgress?: (bytes: number) => void;
  /** Called once the layout is known, with the total number of data bytes to copy. */
  onStart?: (totalBytes: number) => void;
  /** Write the 8-byte zero end marker tensorizer writes (default true). */
  trailer?: boolean;
  /** For an s3://bucket/key output: client settings, part size, parts in flight. */
  s3?: UploadOptions;
  /** Inputs read over HTTP(S)/S3 (InputModel.sources): the source behind each such `data.path`. */
  sources?: Map<string, ByteSource>;
  /** Network inputs: range requests in flight (default 8). */
  readConcurrency?: number;
  /** Told when a network input must be downloaded before it can be converted. */
  onWarning?: (message: string) => void;
  /**
   * Start every tensor's data at a multiple of this many bytes (a power of two up to 1 MiB),
   * by zero padding at the end of its header (see encodeHeader). Default 1: no padding,
   * the bytes tensorizer itself writes (`tensorize serialize` passes DEFAULT_ALIGN). Aligned
   * data lets mmap'd tensors (load --mmap) be used in place with typed views and vector loads.
   */
  align?: number;
}

export const MAX_ALIGN = 1 << 20;

/**
 * The alignment `tensorize serialize` (and bench's conversions) write by default: a cache
 * line, a multiple of every element size (so load --mmap finds no misaligned tensor) and of
 * the widest vector loads (AVX-512). tensorizer 2.10.1, 2.11.1 and 2.12.1 read such files.
 */
export const DEFAULT_ALIGN = 64;

/** Validate an alignment: a power of two from 1 to MAX_ALIGN. */
export function checkAlign(align: number): number {
  if (!Number.isInteger(align) || align < 1 || align > MAX_ALIGN || (align & (align - 1)) !== 0) {
    throw new TensorizeError('E_USAGE', `alignment must be a power of two from 1 to ${MAX_ALIGN}, not ${align}`);
  }
  return align;
}

export interface WriteSummary {
  path: string;
  tensors: number;
  dataBytes: number;
  fileBytes: number;
  version: number;
  warnings: string[];
}

const HASHES = [HashType.CRC32, HashType.SHA256] as const;

interface Planned {
  t: WriteTensor;
  name: Buffer;
  dtypeBytes: Buffer;
  headerOffset: number;
  headerSize: number;
  dataOffset: number;
  dataLength: number;
  /** Zero bytes at the end of the header, before data_length (alignment). */
  padding: number;
}

export function plan(tensors: readonly WriteTensor[], align = 1): { planned: Planned[]; version: number; metadataLength: number; warnings: string[] } {
  if (tensors.length === 0) throw new TensorizeError('E_INPUT', 'no tensors to write (tensorizer cannot open a file with an empty index)');
  const registry = new PathRegistry();
  const warnings: string[] = [];
  let version = 1;
  let metadataLength = 0;
  const pre = tensors.map((t) => {
    const conflict = registry.add(t.path);
    if (conflict) throw new TensorizeError('E_INPUT', conflict);
    if (!isPlain(t.path) && t.type !== TensorType.STATE_DICT) {
      throw new TensorizeError('E_INPUT', `tensor ${pathToString(t.path)}: structured paths need the state_dict tensor type`);
    }
    const name = encodePath(t.path);
    const dtypeBytes = Buffer.from(t.dtype.tensorizer, 'latin1');
    const size64 = numel(t.shape) * BigInt(t.dtype.itemsize);
    if (size64 > BigInt(Number.MAX_SAFE_INTEGER)) throw new TensorizeError('E_INEXPRESSIBLE', `tensor ${pathToString(t.path)} is too large`);
    const size = Number(size64);
    if (t.dtype.opaque) version = Math.max(version, 2);
    if (t.meta) version = Math.max(version, 4);
    else {
      const have = t.data ? sourceBytes(t.data) : 0;
      if (have !== size) {
        throw new TensorizeError('E_INPUT', `tensor ${pathToString(t.path)}: ${have} bytes of data given for ${size} bytes (${t.shape.join('x') || 'scalar'} of ${t.dtype.name})`);
      }
    }
    if (t.dtype.opaque && (t.meta || size === 0) && size64 === 0n) {
      warnings.push(`tensor ${pathToString(t.path)} has no elements and the opaque dtype ${t.dtype.name}: tensorizer 2.11 cannot open files holding such tensors`);
    } else if (t.dtype.opaque && t.meta) {
      warnings.push(`meta tensor ${pathToString(t.path)} has the opaque dtype ${t.dtype.name}: tensorizer 2.11 cannot open files holding such tensors`);
    }
    metadataLength += metadataEntrySize(name.length, dtypeBytes.length, t.shape.length);
    return { t, name, dtypeBytes, size };
  });
  let pos = METADATA_OFFSET + metadataLength;
  const planned = pre.map(({ t, name, dtypeBytes, size }) => {
    const dataLength = t.meta ? 0 : size;
    const bare = headerSize(name.length, dtypeBytes.length, t.shape.length, HASHES);
    const padding = dataLength > 0 ? (align - ((pos + bare) % align)) % align : 0;
    const hs = bare + padding;
    const p: Planned = { t, name, dtypeBytes, headerOffset: pos, headerSize: hs, dataOffset: pos + hs, dataLength, padding };
    pos += hs + dataLength;
    return p;
  });
  return { planned, version, metadataLength, warnings };
}

function encodePrologue(planned: Planned[], version: number, metadataLength: number): Buffer {
  const b = Buffer.alloc(METADATA_OFFSET + metadataLength);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(version, 5);
  // flags (bytes 9-40) stay zero: this writer does not encrypt.
  b.writeBigUInt64LE(BigInt(planned.reduce((n, p) => n + p.dataLength, 0)), 41);
  b.writeBigUInt64LE(BigInt(planned.length), 57);
  b.writeBigUInt64LE(BigInt(metadataLength), 65);
  let o = METADATA_OFFSET;
  for (const p of planned) {
    b.writeUInt16LE(p.name.length, o); o += 2;
    p.name.copy(b, o); o += p.name.length;
    b.writeUInt8(p.t.type, o); o += 1;
    b.writeUInt8(p.dtypeBytes.length, o); o += 1;
    p.dtypeBytes.copy(b, o); o += p.dtypeBytes.length;
    b.writeUInt8(p.t.shape.length, o); o += 1;
    for (const d of p.t.shape) { b.writeUInt32LE(d, o); o += 4; }
    b.writeBigUInt64LE(BigInt(p.headerOffset), o); o += 8;
    b.writeBigUInt64LE(BigInt(p.dataOffset), o); o += 8;
    b.writeBigUInt64LE(BigInt(p.dataLength), o); o += 8;
  }
  return b;
}

/** The header of a planned tensor, with its hash values zeroed (they are hashed that way). */
function headerOf(p: Planned) {
  return encodeHeader({
    moduleIdx: p.t.moduleIdx ?? 0,
    type: p.t.type,
    nameBytes: p.name,
    dtypeBytes: p.dtypeBytes,
    shape: p.t.shape,
    hashTypes: HASHES,
    dataLength: p.dataLength,
    padding: p.padding,
  });
}

/** Put the hash values into an encoded header. */
function setHashes(h: ReturnType<typeof encodeHeader>, crc: number, sha: Uint8Array): void {
  h.buf.writeUInt32LE(crc, h.valueOffsets[0]!);
  Buffer.from(sha).copy(h.buf, h.valueOffsets[1]!);
}

/** Hashes of a header alone (meta and empty tensors). */
function headerOnlyHashes(h: Buffer): { crc: number; sha: Uint8Array } {
  return { crc: crc32(h) >>> 0, sha: createHash('sha256').update(h).digest() };
}

/**
 * Tensors of network inputs, grouped by source, to be read by range. A source whose
 * tensors are not all one contiguous range each (PyTorch strided views, byte swaps) is
 * downloaded to a temporary file first (with a warning), and its tensors, like those of a
 * source that already is a local copy (a server without range support), go the local way.
 */
async function prepareNetwork(planned: Planned[], opts: WriteOptions): Promise<{ groups: Map<ByteSource, Planned[]>; cleanup: () => Promise<void> }> {
  const groups = new Map<ByteSource, Planned[]>();
  const temps: TempOutput[] = [];
  const cleanup = async () => {
    for (const t of temps) await t.discard();
  };
  const sources = opts.sources;
  if (!sources?.size) return { groups, cleanup };
  const sourceOf = (p: Planned) => (p.dataLength > 0 && p.t.data ? sources.get(p.t.data.path) : undefined);
  const needCopy = new Set<ByteSource>();
  for (const p of planned) {
    const src = sourceOf(p);
    const d = p.t.data;
    if (src && d && src.localPath === undefined && (d.view || d.ranges.length !== 1 || (d.swap ?? 1) > 1)) needCopy.add(src);
  }
  const local = new Map<ByteSource, string>();
  try {
    for (const src of needCopy) {
      opts.onWarning?.(`${src.name} holds strided views, which are not read by range; downloading it (${src.size} bytes) to a temporary file first`);
      const tmp = await TempOutput.create(join(tmpdir(), 'tensorize-input'));
      temps.push(tmp);
      await downloadTo(src, tmp.path, opts);
      local.set(src, tmp.path);
    }
  } catch (e) {
    await cleanup();
    throw e;
  }
  for (const p of planned) {
    const src = sourceOf(p);
    if (!src) continue;
    const path = src.localPath ?? local.get(src);
    if (path !== undefined) {
      p.t = { ...p.t, data: { ...p.t.data!, path } };
      continue;
    }
    const g = groups.get(src) ?? [];
    g.push(p);
    groups.set(src, g);
  }
  return { groups, cleanup };
}

/** The whole object into `path` (the native fetcher, else undici), for local processing. */
async function downloadTo(src: ByteSource, path: string, opts: WriteOptions): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.truncate(src.size);
    const job = { offset: 0, length: src.size, dst: 0, prefix: [], crc32: false, sha256: false };
    const net = await networkTargetOf(src);
    if (net) {
      await fetchNative(src, net, [job], { output: path, concurrency: opts.readConcurrency });
    } else {
      await readRemote(src, [job], { concurrency: opts.readConcurrency, onPart: (_k, off, bytes) => writeFully(fh.fd, bytes, off) });
    }
  } finally {
    await fh.close();
  }
}

/**
 * Read network tensors (one source): hash each (header prefix, then data) and, with `fd`,
 * write the data in place. The native fetcher when it can, else undici.
 */
async function readNetworkTensors(
  src: ByteSource,
  group: Planned[],
  headers: Map<Planned, ReturnType<typeof encodeHeader>>,
  sink: { path: string; fd: number } | undefined,
  opts: WriteOptions,
): Promise<{ crc32?: number; sha256?: Uint8Array }[]> {
  const jobs = group.map((p) => ({ offset: p.t.data!.ranges[0]!.offset, length: p.dataLength, dst: p.dataOffset, prefix: [headers.get(p)!.buf], crc32: true, sha256: true }));
  const net = await networkTargetOf(src);
  if (net) {
    const onProgress = incrementally(opts.onProgress);
    const { stats } = await fetchNative(src, net, jobs, { output: sink?.path, concurrency: opts.readConcurrency, onProgress });
    return jobs.map((_, k) => fetchedHashes(stats, k));
  }
  return readRemote(src, jobs, {
    concurrency: opts.readConcurrency,
    onProgress: opts.onProgress,
    onPart: sink ? (k, off, bytes) => writeFully(sink.fd, bytes, jobs[k]!.dst + off) : undefined,
  });
}

export async function writeTensorizer(out: string, tensors: readonly WriteTensor[], opts: WriteOptions = {}): Promise<WriteSummary> {
  if (sourceKind(out) === 's3') return writeTensorizerToS3(out, tensors, opts);
  if (sourceKind(out) === 'http') throw new TensorizeError('E_USAGE', `${out}: cannot write to an HTTP URL; write to a file or to s3://bucket/key`);
  const { planned, version, metadataLength, warnings } = plan(tensors, checkAlign(opts.align ?? 1));
  const last = planned[planned.length - 1]!;
  const trailer = opts.trailer ?? true;
  const fileBytes = last.dataOffset + last.dataLength + (trailer ? 8 : 0);
  const dataBytes = planned.reduce((n, p) => n + p.dataLength, 0);
  const { groups, cleanup } = await prepareNetwork(planned, opts);
  opts.onStart?.(dataBytes);

  const tmp = await TempOutput.create(out);
  const fh = await open(tmp.path, 'w+');
  const pool = new JobRunner(opts.threads, opts.onProgress, opts.chunkSize);
  try {
    await fh.truncate(fileBytes);
    const prologue = encodePrologue(planned, version, metadataLength);
    await fh.write(prologue, 0, prologue.length, 0);
    // Header sizes do not depend on the hash values: hash each header with zeroed values,
    // then fill them in and write the header in place.
    const headers = new Map(planned.map((p) => [p, headerOf(p)]));
    const fromNetwork = new Set([...groups.values()].flat());
    const network = [...groups].map(async ([src, group]) => {
      const got = await readNetworkTensors(src, group, headers, { path: tmp.path, fd: fh.fd }, opts);
      for (const [k, p] of group.entries()) {
        const h = headers.get(p)!;
        setHashes(h, got[k]!.crc32!, got[k]!.sha256!);
        await fh.write(h.buf, 0, h.buf.length, p.headerOffset);
      }
    });
    await Promise.all([
      ...network,
      ...planned.map(async (p, id) => {
        if (fromNetwork.has(p)) return;
        const h = headers.get(p)!;
        let crc: number;
        let sha: Uint8Array;
        if (p.dataLength === 0) {
          // Meta and empty tensors: the hashes cover the header alone.
          ({ crc, sha } = headerOnlyHashes(h.buf));
        } else {
          const r = await pool
            .run({ id, src: p.t.data!, dst: { path: tmp.path, offset: p.dataOffset }, prefix: [h.buf], crc32: true, sha256: true })
            .catch((e: unknown) => {
              throw inTensor(e, pathToString(p.t.path));
            });
          crc = r.crc32!;
          sha = r.sha256!;
        }
        setHashes(h, crc, sha);
        await fh.write(h.buf, 0, h.buf.length, p.headerOffset);
      }),
    ]);
    await pool.close();
    await fh.close();
    await tmp.commit();
  } catch (e) {
    await pool.close();
    await fh.close().catch(() => {});
    await tmp.discard();
    throw e instanceof TensorizeError ? e : fsError(e, out);
  } finally {
    await cleanup();
  }
  return { path: out, tensors: planned.length, dataBytes, fileBytes, version, warnings };
}

/**
 * serialize -o s3://bucket/key: two passes with bounded memory. First every tensor is hashed
 * where it lies (strided views are gathered into a local temporary file on the way), then
 * the file's bytes are produced in order (prologue, each header with its hashes, the data
 * read again from the input) into a multipart upload. Any failure, or SIGINT, aborts the
 * upload: no partial object is left. Progress counts both passes.
 */
async function writeTensorizerToS3(out: string, tensors: readonly WriteTensor[], opts: WriteOptions): Promise<WriteSummary> {
  const { planned, version, metadataLength, warnings } = plan(tensors, checkAlign(opts.align ?? 1));
  const { groups, cleanup } = await prepareNetwork(planned, opts);
  const networkSource = new Map([...groups].flatMap(([src, g]) => g.map((p) => [p, src] as const)));
  const last = planned[planned.length - 1]!;
  const trailer = opts.trailer ?? true;
  const fileBytes = last.dataOffset + last.dataLength + (trailer ? 8 : 0);
  const dataBytes = planned.reduce((n, p) => n + p.dataLength, 0);
  opts.onStart?.(2 * dataBytes);

  // Pass 1: hashes; gathered views land in a temporary file the second pass reads back.
  const views = planned.filter((p) => p.dataLength > 0 && p.t.data?.view);
  const gathered = views.length ? await TempOutput.create(join(tmpdir(), 'tensorize-gather')) : undefined;
  const from = new Map<Planned, SourceData>();
  const headers = new Map<Planned, ReturnType<typeof encodeHeader>>();
  const runner = new JobRunner(opts.threads, opts.onProgress, opts.chunkSize);
  let upload: MultipartUpload | undefined;
  let unhook = () => {};
  // Abort the upload once, and say what happened once, whoever asks first: the interrupt
  // hook (the process exits right after it, so it must say so itself) or the error path.
  let aborted: Promise<void> | undefined;
  const abort = (interrupted: boolean): Promise<void> =>
    (aborted ??= upload
      ? upload.abort().then(
          () => void (interrupted && opts.onWarning?.(`${out}: interrupted; the multipart upload was aborted and no object was created`)),
          (e: unknown) => void opts.onWarning?.(describeFailure(e)),
        )
      : Promise.resolve());
  try {
    if (gathered) {
      const fh = await open(gathered.path, 'w');
      await fh.truncate(views.reduce((n, p) => n + p.dataLength, 0));
      await fh.close();
    }
    let gpos = 0;
    for (const p of planned) headers.set(p, headerOf(p));
    const network = [...groups].map(async ([src, group]) => {
      const got = await readNetworkTensors(src, group, headers, undefined, opts);
      group.forEach((p, k) => setHashes(headers.get(p)!, got[k]!.crc32!, got[k]!.sha256!));
    });
    await Promise.all([
      ...network,
      ...planned.map(async (p, id) => {
        if (networkSource.has(p)) return;
        const h = headers.get(p)!;
        if (p.dataLength === 0) {
          const { crc, sha } = headerOnlyHashes(h.buf);
          return setHashes(h, crc, sha);
        }
        let dst: { path: string; offset: number } | undefined;
        if (p.t.data!.view) {
          dst = { path: gathered!.path, offset: gpos };
          from.set(p, { path: gathered!.path, ranges: [{ offset: gpos, length: p.dataLength }] });
          gpos += p.dataLength;
        } else {
          from.set(p, p.t.data!);
        }
        const r = await runner.run({ id, src: p.t.data!, dst, prefix: [h.buf], crc32: true, sha256: true }).catch((e: unknown) => {
          throw inTensor(e, pathToString(p.t.path));
        });
        setHashes(h, r.crc32!, r.sha256!);
      }),
    ]);
    await runner.close();

    // Pass 2: the bytes in file order, into the multipart upload.
    upload = await (await import('../outputs/s3upload.js')).MultipartUpload.start(out, { ...opts.s3, expectedBytes: fileBytes });
    unhook = onInterrupt(() => abort(true));
    await upload.write(encodePrologue(planned, version, metadataLength));
    const files = new Map<string, FileHandle>();
    const chunk = Buffer.allocUnsafeSlow(8 << 20);
    try {
      for (const p of planned) {
        await upload.write(headers.get(p)!.buf);
        const net = networkSource.get(p);
        if (net) {
          // Read again, in order, into the upload: pass 1 hashed these bytes, and If-Match
          // on every request keeps the object from changing in between.
          let chain = Promise.resolve();
          await readRemote(net, [{ offset: p.t.data!.ranges[0]!.offset, length: p.dataLength, prefix: [], crc32: false, sha256: false }], {
            concurrency: opts.readConcurrency,
            onPart: (_k, _off, bytes) => (chain = chain.then(() => upload!.write(bytes))),
            onProgress: opts.onProgress,
          });
          await chain;
          continue;
        }
        const src = from.get(p);
        if (!src) continue;
        let fh = files.get(src.path);
        if (!fh) files.set(src.path, (fh = await open(src.path, 'r')));
        for (const r of src.ranges) {
          for (let pos = 0; pos < r.length; ) {
            const n = Math.min(chunk.length, r.length - pos);
            const { bytesRead } = await fh.read(chunk, 0, n, r.offset + pos);
            if (bytesRead !== n) throw new TensorizeError('E_IO', `${src.path}: short read at byte ${r.offset + pos}; the file changed while being read (tensor ${JSON.stringify(pathToString(p.t.path))})`);
            const piece = chunk.subarray(0, n);
            swapBytes(piece, src.swap);
            await upload.write(piece);
            opts.onProgress?.(n);
            pos += n;
          }
        }
      }
      if (trailer) await upload.write(Buffer.alloc(8));
    } finally {
      for (const fh of files.values()) await fh.close();
    }
    if (upload.bytes !== fileBytes) throw new TensorizeError('E_NATIVE', `${out}: produced ${upload.bytes} bytes, planned ${fileBytes}`);
    await upload.complete();
  } catch (e) {
    await runner.close();
    await abort(false);
    throw e instanceof TensorizeError ? e : fsError(e, out);
  } finally {
    unhook();
    await gathered?.discard();
    await cleanup();
  }
  return { path: out, tensors: planned.length, dataBytes, fileBytes, version, warnings };
}

/** An error with its hints, as one warning. */
function describeFailure(e: unknown): string {
  if (!(e instanceof TensorizeError)) return String((e as Error)?.message ?? e);
  return [e.message, ...e.hints.map((h) => `  hint: ${h}`)].join('\n');
}

/** Byte-swap every group of `unit` bytes (big-endian inputs), as the copy jobs do. */