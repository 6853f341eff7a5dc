/**
 * `writeTensorizer()` (serialize): the layout comes from format/encode.ts; the index is
 * written first with exact offsets (header sizes do not depend on hash values), then every
 * tensor's data is copied from its input ranges straight to its place in the output while
 * CRC32 and SHA-256 are computed (engine/transfer.ts: the native copy engine, JavaScript
 * workers, or the fetcher for network inputs); the headers are written once every hash is
 * known. Memory use is one chunk per thread, whatever the model size. Output goes to a
 * temporary file renamed into place only on success; `-o s3://` streams a multipart upload.
 *
 * Encryption (`encryption`, ops/encrypt.ts): the copy engine hashes each tensor's plaintext,
 * then seals it (XSalsa20-Poly1305 per 2 MiB chunk) before writing; its MACs go into the
 * header with the hashes. Network inputs are downloaded first (the fetcher does not seal);
 * `-o s3://` gets the MACs in the first pass and seals again in the second, which must
 * produce the same MACs.
 */
import { closeSync, openSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TensorizeError } from '../errors.js';
import { onInterrupt } from '../util/interrupt.js';
import { TempOutput } from '../util/tempfile.js';
import { fsError } from '../sources/file.js';
import { sourceKind } from '../sources/open.js';
import type { MultipartUpload, UploadOptions } from '../sources/s3upload.js';
import type { ByteSource } from '../sources/source.js';
import { checkAlign, encodePrologue, hashedParts, headerOf, headerOnlyHashes, isSealed, plan, setHashes, setMacs, type Planned, type PlannedHeader, type WriteTensor } from '../format/encode.js';
import { MAC_BYTES, type CryptLayout, type EncryptionSummary } from '../format/crypt.js';
import { pathToString } from '../format/paths.js';
import type { NativeSeal } from '../native/binding.js';
import { prepareEncryption, SealingWriter, type EncryptionOptions, type FileEncryption } from './encrypt.js';
import type { SourceData } from '../format/view.js';
import { writeFully } from '../engine/job.js';
import { transfer, type Sink, type TransferResult } from '../engine/transfer.js';

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
  /**
   * Encrypt the tensor data as tensorizer does (XSalsa20-Poly1305 per 2 MiB chunk): with a
   * 32-byte key (raw, or 64 hex characters), or a key derived from a passphrase with
   * Argon2id (default parameters: libsodium's MODERATE, 3 and 256 MiB, tensorizer's
   * default). The caller's buffers are left as they are (wipe them); the key is wiped here.
   */
  encryption?: EncryptionOptions;
}

export interface WriteSummary {
  path: string;
  tensors: number;
  dataBytes: number;
  fileBytes: number;
  version: number;
  warnings: string[];
  /** How the file is encrypted (as `info` describes it), when it is. */
  encryption?: EncryptionSummary;
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
  const needCopy = new Map<ByteSource, string>();
  for (const p of planned) {
    const src = sourceOf(p);
    const d = p.t.data;
    if (!src || !d || src.localPath !== undefined || needCopy.has(src)) continue;
    // The network reader neither gathers views nor encrypts: such sources are read locally.
    if (d.view || d.ranges.length !== 1 || (d.swap ?? 1) > 1) needCopy.set(src, 'holds strided views, which are not read by range');
    else if (isSealed(p)) needCopy.set(src, 'is to be encrypted, which the network reader does not do');
  }
  const local = new Map<ByteSource, string>();
  try {
    for (const [src, why] of needCopy) {
      opts.onWarning?.(`${src.name} ${why}; downloading it (${src.size} bytes) to a temporary file first`);
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

/**
 * Encrypted tensors whose data is not one plain range of a file (PyTorch strided views,
 * tensors in several pieces, big-endian data to swap) are copied into a temporary file
 * first: the copy engine seals only single ranges. Their data then comes from there.
 */
async function gatherForSealing(planned: Planned[], opts: WriteOptions): Promise<TempOutput | undefined> {
  const odd = planned.filter((p) => isSealed(p) && p.t.data && (p.t.data.view || p.t.data.ranges.length !== 1 || (p.t.data.swap ?? 1) > 1));
  if (!odd.length) return undefined;
  const tmp = await TempOutput.create(join(tmpdir(), 'tensorize-gather'));
  try {
    const at = new Map<Planned, number>();
    let pos = 0;
    for (const p of odd) {
      at.set(p, pos);
      pos += p.dataLength;
    }
    const fh = await open(tmp.path, 'w');
    try {
      await fh.truncate(pos);
    } finally {
      await fh.close();
    }
    await transfer(
      odd.map((p) => ({ src: p.t.data!, dst: at.get(p)!, name: pathToString(p.t.path) })),
      { kind: 'file', path: tmp.path },
      { threads: opts.threads, chunkSize: opts.chunkSize },
    );
    for (const p of odd) p.t = { ...p.t, data: { path: tmp.path, ranges: [{ offset: at.get(p)!, length: p.dataLength }] } };
  } catch (e) {
    await tmp.discard();
    throw e;
  }
  return tmp;
}

/** The whole object into `path`, for local processing. */
async function downloadTo(src: ByteSource, path: string, opts: WriteOptions): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.truncate(src.size);
  } finally {
    await fh.close();
  }
  await transfer([{ src: { offset: 0, length: src.size }, dst: 0 }], { kind: 'file', path }, { source: src, concurrency: opts.readConcurrency });
}

/** The tensors' headers, and (an encrypted file) its key and each encrypted tensor's nonce. */
interface Headers {
  of: Map<Planned, PlannedHeader>;
  enc?: FileEncryption;
  nonces: Map<Planned, Buffer>;
}

/** Every tensor's header, with a fresh nonce for each encrypted one (none used twice in the file). */
function makeHeaders(planned: Planned[], enc: FileEncryption | undefined): Headers {
  const sealed = planned.filter(isSealed);
  const nonces = new Map<Planned, Buffer>();
  if (sealed.length) {
    if (!enc) throw new Error('internal: encrypted tensors without a key');
    const drawn = enc.nonces(sealed.map((p) => p.crypt!.macs!));
    sealed.forEach((p, k) => nonces.set(p, drawn[k]!));
  }
  return { of: new Map(planned.map((p) => [p, headerOf(p, nonces.get(p))])), enc, nonces };
}

/**
 * Hash every tensor (its header with zeroed hash values, without its crypt-info segment,
 * then its data) and put the hashes into its header; with `out`, each tensor's data is
 * written to `out.path` at `out.dst(p)` on the way (a tensor without a destination is only
 * hashed). Encrypted tensors are sealed after hashing (what is written is ciphertext) and
 * their MACs put into their headers too. Local inputs and each network source are
 * transferred in parallel; meta and empty tensors hash their header alone.
 */
async function hashTensors(
  planned: Planned[],
  headers: Headers,
  groups: Map<ByteSource, Planned[]>,
  out: { path: string; dst: (p: Planned) => number | undefined } | undefined,
  opts: WriteOptions,
): Promise<void> {
  const fromNetwork = new Set([...groups.values()].flat());
  if ([...fromNetwork].some(isSealed)) throw new Error('internal: a network input to encrypt was not downloaded');
  const job = (p: Planned) => ({ dst: out?.dst(p), prefix: hashedParts(headers.of.get(p)!), crc32: !isSealed(p), sha256: true, name: pathToString(p.t.path) });
  const sink: Sink = out ? { kind: 'file', path: out.path } : { kind: 'hash' };
  const local = planned.filter((p) => p.dataLength > 0 && !fromNetwork.has(p));
  const runs: Promise<{ group: Planned[]; r: TransferResult }>[] = [...groups].map(async ([source, group]) => ({
    group,
    r: await transfer(group.map((p) => ({ src: p.t.data!.ranges[0]!, ...job(p) })), sink, { source, concurrency: opts.readConcurrency, onProgress: opts.onProgress }),
  }));
  if (local.length) {
    const seal = sealOf(local, headers);
    runs.push(transfer(local.map((p) => ({ src: p.t.data!, ...job(p) })), sink, { threads: opts.threads, chunkSize: opts.chunkSize, onProgress: opts.onProgress, ...(seal ? { seal } : {}) }).then((r) => ({ group: local, r })));
  }
  // Every run settles before a failure is reported, so none still writes to a discarded output.
  const settled = await Promise.allSettled(runs);
  const failed = settled.find((x) => x.status === 'rejected');
  if (failed) throw failed.reason;
  for (const x of settled) {
    const { group, r } = (x as PromiseFulfilledResult<{ group: Planned[]; r: TransferResult }>).value;
    group.forEach((p, k) => {
      const res = r.results[k]!;
      const h = headers.of.get(p)!;
      setHashes(h, res.crc32, res.sha256!);
      if (h.macs) {
        if (!res.macs) throw new TensorizeError('E_NATIVE', `tensor ${JSON.stringify(pathToString(p.t.path))}: the copy engine returned no MACs for data it was to encrypt`);
        setMacs(h, res.macs);
      }
    });
  }
  for (const p of planned) {
    if (p.dataLength > 0) continue;
    const h = headers.of.get(p)!;
    const { crc, sha } = headerOnlyHashes(h);
    setHashes(h, crc, sha);
  }
}

/** TransferOptions.seal for these jobs (one entry per tensor), or undefined when none is encrypted. */
function sealOf(jobs: readonly Planned[], headers: Headers): NativeSeal | undefined {
  if (!headers.enc || !jobs.some(isSealed)) return undefined;
  const chunk = headers.enc.layout.chunkSize;
  return { keys: [headers.enc.key], items: jobs.map((p) => (isSealed(p) ? { key: 0, chunk, nonce: headers.nonces.get(p)! } : null)) };
}

/**
 * The plan of a file (encrypted: with a fresh salt) and, once planned, its key: nothing is
 * derived for a file that cannot be written, and the key is wiped by the caller (`wipe`).
 */
async function planFile(tensors: readonly WriteTensor[], opts: WriteOptions) {
  const align = checkAlign(opts.align ?? 1);
  const prep = opts.encryption ? prepareEncryption(opts.encryption) : undefined;
  const layout: CryptLayout | undefined = prep?.layout;
  const planned = plan(tensors, align, layout);
  const enc = prep ? await prep.key() : undefined;
  const encryption = enc?.summary(planned.planned.filter(isSealed).length);
  return { ...planned, enc, encryption };
}

export async function writeTensorizer(out: string, tensors: readonly WriteTensor[], opts: WriteOptions = {}): Promise<WriteSummary> {
  if (sourceKind(out) === 'http') throw new TensorizeError('E_USAGE', `${out}: cannot write to an HTTP URL; write to a file or to s3://bucket/key`);
  const file = await planFile(tensors, opts);
  try {
    return await (sourceKind(out) === 's3' ? writeS3 : writeLocal)(out, file, opts);
  } finally {
    file.enc?.wipe();
  }
}

type PlannedFile = Awaited<ReturnType<typeof planFile>>;

async function writeLocal(out: string, file: PlannedFile, opts: WriteOptions): Promise<WriteSummary> {
  const { planned, version, metadataLength, warnings, enc, encryption } = file;
  const last = planned[planned.length - 1]!;
  const trailer = opts.trailer ?? true;
  const fileBytes = last.dataOffset + last.dataLength + (trailer ? 8 : 0);
  const dataBytes = planned.reduce((n, p) => n + p.dataLength, 0);
  const { groups, cleanup } = await prepareNetwork(planned, opts);
  let gathered: TempOutput | undefined;
  try {
    gathered = await gatherForSealing(planned, opts);
  } catch (e) {
    await cleanup();
    throw e;
  }
  opts.onStart?.(dataBytes);

  const tmp = await TempOutput.create(out);
  try {
    const fh = await open(tmp.path, 'w+');
    try {
      await fh.truncate(fileBytes);
      const prologue = encodePrologue(planned, version, metadataLength);
      await fh.write(prologue, 0, prologue.length, 0);
    } finally {
      await fh.close();
    }
    // Header sizes do not depend on the hash values (nor on the MACs): each header is hashed
    // with zeroed values, then filled in and written in place.
    const headers = makeHeaders(planned, enc);
    await hashTensors(planned, headers, groups, { path: tmp.path, dst: (p) => p.dataOffset }, opts);
    const fd = openSync(tmp.path, 'r+');
    try {
      for (const p of planned) writeFully(fd, headers.of.get(p)!.buf, p.headerOffset);
    } finally {
      closeSync(fd);
    }
    await tmp.commit();
  } catch (e) {
    await tmp.discard();
    throw e instanceof TensorizeError ? e : fsError(e, out);
  } finally {
    await gathered?.discard();
    await cleanup();
  }
  return { path: out, tensors: planned.length, dataBytes, fileBytes, version, warnings, ...(encryption ? { encryption } : {}) };
}

/**
 * serialize -o s3://bucket/key: two passes with bounded memory. First every tensor is hashed
 * where it lies (strided views are gathered into a local temporary file on the way; tensors
 * to encrypt are sealed too, in memory, which gives their MACs),
 * then the file's bytes are produced in order (prologue, each header with its hashes and
 * MACs, the data read again from the input and sealed again on its way) into a multipart
 * upload. Any failure, or SIGINT, aborts the upload: no partial object is left. Progress
 * counts both passes.
 */
async function writeS3(out: string, file: PlannedFile, opts: WriteOptions): Promise<WriteSummary> {
  const { planned, version, metadataLength, warnings, enc, encryption } = file;
  const { groups, cleanup: cleanupNetwork } = await prepareNetwork(planned, opts);
  let sealable: TempOutput | undefined;
  try {
    sealable = await gatherForSealing(planned, opts);
  } catch (e) {
    await cleanupNetwork();
    throw e;
  }
  const cleanup = async () => {
    await sealable?.discard();
    await cleanupNetwork();
  };
  const networkSource = new Map([...groups].flatMap(([src, g]) => g.map((p) => [p, src] as const)));
  const last = planned[planned.length - 1]!;
  const trailer = opts.trailer ?? true;
  const fileBytes = last.dataOffset + last.dataLength + (trailer ? 8 : 0);
  const dataBytes = planned.reduce((n, p) => n + p.dataLength, 0);
  opts.onStart?.(2 * dataBytes);

  // Pass 1: hashes (and MACs); gathered views land in a temporary file the second pass reads
  // back (to encrypt, they were gathered before: gatherForSealing).
  const views = planned.filter((p) => p.dataLength > 0 && p.t.data?.view && !networkSource.has(p));
  const gathered = views.length ? await TempOutput.create(join(tmpdir(), 'tensorize-gather')) : undefined;
  const from = new Map<Planned, SourceData>();
  const gatheredAt = new Map<Planned, number>();
  const headers = makeHeaders(planned, enc);
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
    let gpos = 0;
    for (const p of planned) {
      if (p.dataLength === 0 || networkSource.has(p)) continue;
      if (p.t.data!.view) {
        gatheredAt.set(p, gpos);
        from.set(p, { path: gathered!.path, ranges: [{ offset: gpos, length: p.dataLength }] });
        gpos += p.dataLength;
      } else from.set(p, p.t.data!);
    }
    if (gathered) {
      const fh = await open(gathered.path, 'w');
      await fh.truncate(gpos);
      await fh.close();
    }
    await hashTensors(planned, headers, groups, gathered ? { path: gathered.path, dst: (p) => gatheredAt.get(p) } : undefined, opts);

    // Pass 2: the bytes in file order, into the multipart upload.
    upload = await (await import('../sources/s3upload.js')).MultipartUpload.start(out, { ...opts.s3, expectedBytes: fileBytes });
    unhook = onInterrupt(() => abort(true));
    const into: Sink = { kind: 'stream', write: (b) => upload!.write(b) };
    await upload.write(encodePrologue(planned, version, metadataLength));
    for (const p of planned) {
      const h = headers.of.get(p)!;
      await upload.write(h.buf);
      const name = pathToString(p.t.path);
      // Network inputs are read again, in order: pass 1 hashed these bytes, and If-Match
      // on every request keeps the object from changing in between.
      const net = networkSource.get(p);
      if (net) await transfer([{ src: p.t.data!.ranges[0]!, name }], into, { source: net, concurrency: opts.readConcurrency, onProgress: opts.onProgress });
      else if (from.has(p)) {
        // Tensors to encrypt are sealed again on their way, and must give the MACs of pass 1.
        if (!h.macs) {
          await transfer([{ src: from.get(p)!, name }], into, { onProgress: opts.onProgress });
          continue;
        }
        const expect = h.buf.subarray(h.macs.offset, h.macs.offset + MAC_BYTES * h.macs.count);
        const w = new SealingWriter(enc!.key, headers.nonces.get(p)!, enc!.layout.chunkSize, p.dataLength, expect, (b) => upload!.write(b), name);
        await transfer([{ src: from.get(p)!, name }], { kind: 'stream', write: (b) => w.write(b) }, { onProgress: opts.onProgress });
        await w.end();
      }
    }
    if (trailer) await upload.write(Buffer.alloc(8));
    if (upload.bytes !== fileBytes) throw new TensorizeError('E_NATIVE', `${out}: produced ${upload.bytes} bytes, planned ${fileBytes}`);
    await upload.complete();
  } catch (e) {
    await abort(false);
    throw e instanceof TensorizeError ? e : fsError(e, out);
  } finally {
    unhook();
    await gathered?.discard();
    await cleanup();
  }
  return { path: out, tensors: planned.length, dataBytes, fileBytes, version, warnings, ...(encryption ? { encryption } : {}) };
}

/** An error with its hints, as one warning. */
function describeFailure(e: unknown): string {
  if (!(e instanceof TensorizeError)) return String((e as Error)?.message ?? e);
  return [e.message, ...e.hints.map((h) => `  hint: ${h}`)].join('\n');
}

