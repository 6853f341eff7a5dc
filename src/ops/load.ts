/**
 * `load()`: stream a .tensors file into GPU memory (or host memory) through the native
 * pipeline. TypeScript reads the header and index and hands the native side a plan: one
 * (file range, destination offset) per tensor, all tensors in one allocation at 256-byte
 * aligned offsets. With `verify`, each tensor's CRC32 and SHA-256 are checked while it
 * streams. With `mmap` (host memory, local files) nothing is copied: the file is mapped
 * copy-on-write and the tensors' pages are mapped in from the page cache. The memory stays
 * allocated until close() (and until the last view() Buffer is collected).
 */
import { constants } from 'node:buffer';
import { stat } from 'node:fs/promises';
import { config } from '../config.js';
import { TensorizeError, usageError } from '../errors.js';
import { METADATA_OFFSET, TENSOR_TYPE_NAMES } from '../format/constants.js';
import { dtypeBySafetensors, type DTypeInfo } from '../format/dtypes.js';
import type { TensorPath } from '../format/paths.js';
import { TensorizerFile } from '../format/reader.js';
import { decodeCrypt } from '../format/crypt.js';
import { DecryptionPlan, planFor, type CryptTensor, type DecryptionOptions } from './decrypt.js';
import { assertSound, checkStructure, verifyError, type CheckedTensor } from '../format/check.js';
import { closeCheckpoint, openCheckpointOrFile, type SafetensorsCheckpoint } from '../inputs/safetensors-checkpoint.js';
import { knownHashes, SUMS_FILE, type KnownHash } from '../inputs/checksums.js';
import { withHead, type ByteSource } from '../sources/source.js';
import { sourceKind, type SourceOptions } from '../sources/open.js';
import { DEFAULT_CONCURRENCY, DEFAULT_REMOTE_CHUNK } from '../engine/remote.js';
import { transfer, type NetworkStats, type PackedJobs } from '../engine/transfer.js';
import { hugePagesByDefault } from '../util/memory.js';
import { noDeviceHints, noDeviceReason } from '../native/report.js';
import { native, type NativeExpect, type NativeHandle, type NativeInfo } from '../native/binding.js';

export type { NetworkStats };

export const ALIGNMENT = 256;
export const DEFAULT_CHUNK = 16 * 1024 * 1024;
export const DEFAULT_READERS = 8;

export interface LoadOptions {
  /** `cpu`, `cuda` (device 0) or `cuda:N`. Default: cuda when a device is present, else cpu. */
  device?: string;
  plaid?: boolean;
  readers?: number;
  chunkSize?: number;
  /**
   * Load only the tensors whose names match: a glob (`*` any characters, dots included; `?`
   * one) matching the whole name or its end after a dot (`layers.*.weight` matches
   * `model.layers.0.mlp.weight`), or `/regex/flags` searched anywhere in the name.
   */
  filter?: string;
  verify?: boolean;
  /**
   * With verify, for a safetensors checkpoint: the files' expected SHA-256, `HEX` (one file)
   * or `NAME=HEX` per shard (NAME relative to the checkpoint's directory). A SHA256SUMS file
   * beside the checkpoint and the server's X-Linked-Etag are used too (inputs/checksums.ts).
   */
  sha256?: readonly string[];
  /**
   * Host memory from a local file, without copying: the file is mapped copy-on-write
   * (MAP_PRIVATE) and the tensors' pages are mapped in from the page cache by `readers`
   * threads (read from disk where not cached). Tensors then sit at their file offsets;
   * writing to one copies its pages, never touching the file. As with any mapped weights,
   * a file truncated by someone else while mapped makes later reads of it fault (SIGBUS).
   * Implies device `cpu`.
   */
  mmap?: boolean;
  /**
   * Host-memory destinations: ask for transparent huge pages. Default: yes, except on VMs
   * that report free memory back to their host, where fresh huge pages load 4x slower
   * (see util/memory.ts); TENSORIZE_HUGEPAGES=1|0 overrides the default.
   */
  hugePages?: boolean;
  /**
   * An encrypted file's key or passphrase (ops/decrypt.ts): required for one, refused for any
   * other. Each piece is authenticated and decrypted in place as it streams, before it is
   * hashed or copied to the device; a piece that fails fails the load, freeing everything.
   */
  decryption?: DecryptionOptions;
  /** http(s):// and s3:// sources: how to reach them (headers, endpoint, retries, ...). */
  source?: SourceOptions;
  /** Remote sources: range requests in flight (default 8). */
  concurrency?: number;
  onStart?: (totalBytes: number) => void;
  onProgress?: (bytesDone: number) => void;
  /** Things the user should know before the load runs (e.g. that it goes to host memory for want of a GPU). */
  onWarning?: (message: string) => void;
}

export interface LoadedTensor {
  name: string;
  path: TensorPath;
  type: string;
  dtype: string;
  shape: number[];
  device: string;
  /** Byte offset of the tensor in the allocation (with `mmap`: in the file). */
  offset: number;
  bytes: number;
  meta: boolean;
  /** Sharded checkpoints: the shard (path or URL) it was read from. */
  file?: string;
}

export interface LoadStats {
  device: string;
  /** The GPU's name, or `host memory`. */
  deviceName: string;
  /**
   * What ran the load: `cuda` (the NVIDIA driver), `simulated` (TENSORIZE_SIM_GPU: a CPU
   * stand-in, not a GPU), or `host` (host memory).
   */
  backend: 'cuda' | 'simulated' | 'host';
  /** What was read: a .tensors file, or a safetensors checkpoint as it is. */
  format: 'tensorizer' | 'safetensors';
  /** Files read (a sharded checkpoint's shards). */
  files: number;
  /** --verify of a safetensors checkpoint: the files whose SHA-256 was checked while they streamed, and against what. */
  checksums?: { file: string; sha256: string; from: string }[];
  /** --verify of a safetensors checkpoint: the files whose SHA-256 is not known, so not checked. */
  unchecked?: string[];
  plaid: boolean;
  /** The file was mapped, not copied (see LoadOptions.mmap). */
  mmap: boolean;
  readers: number;
  chunkSize: number;
  verified: boolean;
  /** Opening the file and reading its header and index (and tensor headers when verifying). */
  openMs: number;
  /** From the start of the load until the first tensor was complete in its destination. */
  firstTensorMs: number;
  /** Allocation and transfer, native side. */
  transferMs: number;
  /** The part of transferMs spent allocating: the destination and, for a GPU, the pinned ring. */
  allocMs: number;
  totalMs: number;
  bytes: number;
  gbPerSecond: number;
  pinnedBytes: number;
  deviceBytes: number;
  hostBytes: number;
  /** mmap: bytes of the file mapped (the page cache's pages, shared, not new memory). */
  mappedBytes: number;
  /**
   * Tensors whose data does not start at a multiple of their element size (only with
   * mmap, where tensors sit at their file offsets: files written without alignment
   * padding, as tensorizer writes them; `serialize` writes aligned ones by default).
   */
  misaligned: number;
  /** The host destination was advised to use huge pages. */
  hugePages: boolean;
  /** No device was asked for and no GPU is usable: why the load went to host memory. */
  noGpu?: string;
  tensors: number;
  skipped: number;
  /** HTTP(S) and S3 sources: how the bytes came. */
  network?: NetworkStats;
  /** An encrypted file: the tensors decrypted (and authenticated) on the way, and where their keys came from. */
  encryption?: { tensors: number; keyFrom: 'key' | 'passphrase' };
}

export function parseDevice(d: string | undefined, info: () => NativeInfo): number {
  if (d === 'cpu') return -1;
  if (d === undefined) {
    const i = info();
    // A simulator asked for and not made (a bad TENSORIZE_SIM_* setting) is an error, not a
    // reason to fall back to host memory: CI that set it means to exercise the GPU path.
    if (i.deviceCount === 0 && config().simGpu) throw usageError(`TENSORIZE_SIM_GPU is set but no simulated device was made: ${noDeviceReason(i)}`);
    return i.deviceCount > 0 ? 0 : -1;
  }
  const m = /^cuda(?::([0-9]{1,3}))?$/.exec(d);
  if (!m) throw usageError(`--device must be cpu, cuda or cuda:N, not ${JSON.stringify(d)}`);
  const n = Number(m[1] ?? 0);
  const i = info();
  if (i.deviceCount === 0) throw new TensorizeError('E_NO_DEVICE', `no CUDA device is usable: ${noDeviceReason(i)}`, { hints: noDeviceHints(i) });
  if (n >= i.deviceCount) throw new TensorizeError('E_NO_DEVICE', `there is no cuda:${n} (${i.deviceCount} device(s) found)`);
  return n;
}

export function compileFilter(f: string | undefined): ((name: string) => boolean) | undefined {
  if (f === undefined) return undefined;
  const re = /^\/(.*)\/([a-z]*)$/s.exec(f);
  if (re) {
    try {
      const r = new RegExp(re[1]!, re[2]);
      return (n) => r.test(n);
    } catch (e) {
      throw usageError(`--filter: invalid regular expression: ${(e as Error).message}`);
    }
  }
  // The whole name, or its end from a component boundary (a dot): Hugging Face names carry
  // prefixes (model., transformer.) that a pattern such as layers.*.weight should not need.
  const glob = new RegExp(`^(?:.*\\.)?${f.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 's');
  return (n) => glob.test(n);
}

export class LoadedModel {
  private closed = false;
  constructor(
    readonly file: string,
    readonly tensors: LoadedTensor[],
    readonly stats: LoadStats,
    private readonly handle: NativeHandle,
  ) {}

  /** A copy of a tensor's bytes, read back from where it was loaded. */
  read(name: string): Buffer {
    if (this.closed) throw usageError('the model was closed');
    const t = this.tensors.find((x) => x.name === name);
    if (!t) throw usageError(`no loaded tensor named ${JSON.stringify(name)}`);
    return native().read(this.handle, t.offset, t.bytes);
  }

  /**
   * Host loads (`device: 'cpu'`): the tensor's bytes where they were loaded, without a copy.
   * The Buffer keeps the memory alive until it is garbage-collected, even after close();
   * with `mmap`, writing to it copies the pages it touches (the file is never written).
   */
  view(name: string): Buffer {
    if (this.closed) throw usageError('the model was closed');
    if (this.stats.device !== 'cpu') throw usageError(`view() needs a load into host memory (device cpu), not ${this.stats.device}; read() copies a tensor back`);
    const t = this.tensors.find((x) => x.name === name);
    if (!t) throw usageError(`no loaded tensor named ${JSON.stringify(name)}`);
    if (t.bytes > constants.MAX_LENGTH) throw new TensorizeError('E_UNSUPPORTED', `${name} is ${t.bytes} bytes, more than a Buffer can hold here (${constants.MAX_LENGTH})`, { hints: ['read it in parts with read(), or filter it out'] });
    return native().view(this.handle, t.offset, t.bytes);
  }

  /** Free the device (or host) memory. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    native().free(this.handle);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export async function load(path: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const t0 = performance.now();
  const bin = native();
  // info() initialises CUDA: ask once, and only when something needs it.
  let cachedInfo: NativeInfo | undefined;
  const info = (): NativeInfo => (cachedInfo ??= bin.info());
  const mmap = opts.mmap ?? false;
  if (mmap && opts.device !== undefined && opts.device !== 'cpu') throw usageError(`--mmap maps the file into host memory: it cannot load to ${opts.device} (leave --device out, or use --device cpu)`);
  const device = mmap ? -1 : parseDevice(opts.device, info);
  const readers = opts.readers ?? DEFAULT_READERS;
  const plaid = opts.plaid ?? true;
  const verify = opts.verify ?? false;
  const hugePages = device < 0 && !mmap && (opts.hugePages ?? hugePagesByDefault());
  const match = compileFilter(opts.filter);

  if (mmap && sourceKind(path) !== 'file') throw usageError(`--mmap maps a local file; ${path} is not one (load it without --mmap, or download it first)`);
  const input = await openLoadInput(path, opts.source, verify, match, opts.sha256 ?? [], opts.decryption);
  const { sources, planned } = input;
  const crypt = planned.decryption;
  // A server without range support was downloaded to a temporary file: load that locally.
  const remote = sources[0]!.localPath === undefined;
  const chunkSize = opts.chunkSize ?? (remote ? DEFAULT_REMOTE_CHUNK : DEFAULT_CHUNK);
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  const tensors: LoadedTensor[] = [];
  // The plan, packed as the loader takes it (a model may hold tens of thousands of tensors).
  const items: number[] = [];
  const itemFiles: number[] = [];
  const names: string[] = [];
  const indexes: number[] = [];
  const checks: NativeExpect[] = [];
  let dataBytes = 0;
  let misaligned = 0;
  try {
    const fileSizes = remote ? sources.map((x) => x.size) : await Promise.all(sources.map(async (x) => (await stat(x.localPath!)).size));
    // --mmap: each file mapped whole at its own place in one region (at 2 MiB boundaries),
    // its tensors at their offsets there.
    const mapAt: number[] = [];
    let mapped = 0;
    for (const size of fileSizes) {
      mapAt.push(mapped);
      mapped += Math.ceil(size / MAP_ALIGN) * MAP_ALIGN;
    }
    if (sources.length === 1) mapped = fileSizes[0]!;
    let dst = 0;
    const devName = device < 0 ? 'cpu' : `cuda:${device}`;
    for (const e of planned.entries) {
      const at = mmap ? mapAt[e.file]! + e.dataOffset : dst;
      const entry: LoadedTensor = {
        name: e.name,
        path: e.path,
        type: e.type,
        dtype: e.dtype,
        shape: e.shape,
        device: e.meta ? 'meta' : devName,
        offset: at,
        bytes: e.meta ? 0 : e.dataLength,
        meta: e.meta,
        ...(sources.length > 1 ? { file: sources[e.file]!.name } : {}),
      };
      tensors.push(entry);
      if (e.meta) continue;
      items.push(e.dataOffset, e.dataLength, at);
      itemFiles.push(e.file);
      names.push(e.name);
      indexes.push(e.index);
      if (e.check) checks.push(e.check);
      dataBytes += e.dataLength;
      if (mmap && e.dataLength > 0 && e.dataOffset % Math.max(1, e.itemsize) !== 0) misaligned++;
      dst += Math.ceil(e.dataLength / ALIGNMENT) * ALIGNMENT;
    }
    // Whole-file hashing interleaves the shards' tensors in the plan; the list stays in file order.
    if (planned.groups) {
      const at = new Map(tensors.map((x, k) => [x, planned.entries[k]!.index]));
      tensors.sort((a, b) => at.get(a)! - at.get(b)!);
    }
    if (tensors.length === 0) throw usageError(opts.filter === undefined ? `${path} holds no tensors` : `--filter ${JSON.stringify(opts.filter)} matches none of the ${planned.count} tensors`);
    const total = mmap ? mapped : dst;
    const openMs = performance.now() - t0;
    opts.onStart?.(dataBytes);
    const noGpu = device < 0 && opts.device === undefined && !mmap ? noDeviceReason(info()) : undefined;
    if (noGpu) opts.onWarning?.(`no usable GPU (${noGpu}): loading into host memory (--device cpu says so and silences this)`);
    for (const w of input.warnings) opts.onWarning?.(w);
    if (planned.unchecked?.length) opts.onWarning?.(`--verify: no SHA-256 is known for ${planned.unchecked.join(', ')}: ${planned.unchecked.length > 1 ? 'they load' : 'it loads'} unverified (only their headers are checked)`);
    let done = 0;
    const onProgress = opts.onProgress && ((n: number) => opts.onProgress!((done += n)));
    const files = fileSizes.map((size, k) => ({ size, mapAt: mmap ? mapAt[k]! : 0 }));
    const sink = { kind: 'memory' as const, device, total, hugePages, plaid, mmap, readers, files };
    // (A safetensors checkpoint has no meta tensors: its entries are the items, in order.)
    const groups = planned.groups?.map((g) => ({ ...g, items: Uint32Array.from(g.items) }));
    const jobs: PackedJobs = {
      items: Float64Array.from(items),
      names,
      indexes,
      checks: verify && !groups ? checks : undefined,
      ...(groups ? { groups } : {}),
      ...(sources.length > 1 ? { files: Uint32Array.from(itemFiles) } : {}),
    };
    const { handle, failures, stats: st } = await transfer(jobs, sink, { sources, chunkSize, concurrency, onProgress, crypt: crypt?.forJobs(indexes) });
    if (failures.length) {
      native().free(handle!);
      throw verifyError(sources[0]!.name, failures, []);
    }
    // Remote loads: the wall time of the transfer (hash comparison included); local: the loader's own.
    const transferMs = remote ? st.wallMs : st.transferMs;
    return new LoadedModel(path, tensors, {
      device: devName,
      deviceName: device < 0 ? 'host memory' : (info().devices[device]?.name ?? devName),
      backend: device < 0 ? 'host' : info().backend === 'simulated' ? 'simulated' : 'cuda',
      format: input.format,
      files: sources.length,
      ...(planned.checksums ? { checksums: planned.checksums, unchecked: planned.unchecked ?? [] } : {}),
      plaid,
      mmap,
      readers: remote ? concurrency : readers,
      chunkSize,
      verified: verify,
      openMs,
      firstTensorMs: st.firstJobMs < 0 ? -1 : openMs + st.firstJobMs,
      transferMs,
      allocMs: st.allocMs,
      totalMs: performance.now() - t0,
      bytes: st.bytes,
      gbPerSecond: transferMs > 0 ? st.bytes / transferMs / 1e6 : 0,
      pinnedBytes: st.pinnedBytes,
      deviceBytes: st.deviceBytes,
      hostBytes: st.hostBytes,
      mappedBytes: st.mappedBytes,
      misaligned,
      hugePages,
      ...(noGpu ? { noGpu } : {}),
      tensors: tensors.length,
      skipped: planned.skipped,
      ...(st.network ? { network: st.network } : {}),
      ...(crypt ? { encryption: { tensors: crypt.encrypted, keyFrom: crypt.keyFrom } } : {}),
    }, handle!);
  } finally {
    crypt?.wipe();
    await Promise.all(sources.map((x) => x.close()));
  }
}

/**
 * --mmap: where each of several files is mapped in the one region: 2 MiB boundaries (a page
 * on every Linux, and where the page cache's large folios can be mapped whole).
 */
const MAP_ALIGN = 2 << 20;

/** What a load reads: its open sources (one per file) and the plan over them. */
interface LoadInput {
  format: 'tensorizer' | 'safetensors';
  sources: ByteSource[];
  planned: Planned;
  warnings: string[];
}

/**
 * Open what `path` names: a .tensors file or a safetensors checkpoint (one file, an index
 * with its shards, a directory), and plan it. The format is sniffed from the first bytes a
 * .tensors opening reads anyway, so that a remote single file costs no request of its own.
 */
async function openLoadInput(
  path: string,
  source: SourceOptions | undefined,
  verify: boolean,
  match: ((name: string) => boolean) | undefined,
  sha256: readonly string[],
  decryption: DecryptionOptions | undefined,
): Promise<LoadInput> {
  const checkpoint = async (c: SafetensorsCheckpoint): Promise<LoadInput> => {
    try {
      // safetensors has no encryption: a key for it is refused as for any plain file.
      await DecryptionPlan.create(path, [], decryption);
      const known = verify ? await knownHashes(c, path, sha256, source) : undefined;
      return { format: 'safetensors', sources: c.shards.map((x) => x.source), planned: planSafetensors(c, path, match, known), warnings: c.warnings };
    } catch (e) {
      await closeCheckpoint(c);
      throw e;
    }
  };
  if (sha256.length && !verify) throw usageError('--sha256 gives the files\' expected SHA-256 for --verify; add --verify');
  const opened = await openCheckpointOrFile(path, METADATA_OFFSET, source);
  if ('checkpoint' in opened) return checkpoint(opened.checkpoint);
  const { other: src, head } = opened;
  try {
    if (sha256.length) throw usageError(`--sha256 is for safetensors checkpoints; ${path} is a .tensors file, which holds its own hashes (--verify checks them)`);
    return { format: 'tensorizer', sources: [src], planned: await planTensorizer(withHead(src, head), verify, match, decryption), warnings: [] };
  } catch (e) {
    await src.close();
    throw e;
  }
}

/** One tensor of a load's plan, whatever the file's format. */
interface PlanEntry {
  name: string;
  path: TensorPath;
  type: string;
  dtype: string;
  itemsize: number;
  shape: number[];
  dataOffset: number;
  dataLength: number;
  /** Its index in the file, or across the shards (what native errors name). */
  index: number;
  /** Which of the load's files holds it. */
  file: number;
  meta: boolean;
  /** --verify: the stored hashes to check. */
  check?: NativeExpect;
}

interface Planned {
  entries: PlanEntry[];
  /**
   * Whole-file SHA-256 checks (--verify of a safetensors checkpoint): per file with a known
   * hash, the header bytes and the positions in `entries` of its tensors, in file order.
   */
  groups?: { sha256: Buffer; prefix: Buffer; items: number[]; name: string }[];
  checksums?: { file: string; sha256: string; from: string }[];
  unchecked?: string[];
  /** An encrypted file's keys and each tensor's encryption (wiped once the load is over). */
  decryption?: DecryptionPlan;
  /** Tensors in the file, and those --filter left out. */
  count: number;
  skipped: number;
}

/**
 * A .tensors file: with --verify, the structural check verify runs, on every tensor
 * (filtered out or not), before anything is read into the destination; without it the
 * index is trusted, but the end of the file is still checked (a lowered tensor count, a file
 * cut short).
 */
async function planTensorizer(src: ByteSource, verify: boolean, match: ((name: string) => boolean) | undefined, decryption: DecryptionOptions | undefined): Promise<Planned> {
  const tf = await TensorizerFile.open(src);
  let checked: CheckedTensor[] | undefined;
  let plan: DecryptionPlan | undefined;
  if (verify) {
    const c = await checkStructure(tf);
    assertSound(c);
    checked = c.tensors;
    plan = await planFor(c, decryption);
  } else {
    const end = await tf.endProblem();
    if (end) throw verifyError(tf.name, [], [end]);
    // Every crypt-info block checked as verify checks them (a malformed one, or a file mixing
    // encrypted and plain tensors, is E_FORMAT there too).
    const crypts: CryptTensor[] = [];
    if (tf.info.hasCryptInfo) {
      for (const { entry, header } of await tf.readHeaders()) {
        const crypt = decodeCrypt(header.crypt?.chunks ?? [], header.dataLength, `${tf.name}: tensor ${JSON.stringify(entry.name)} (#${entry.index})`);
        crypts.push({ name: entry.name, index: entry.index, dataLength: header.dataLength, crypt });
      }
    }
    plan = await DecryptionPlan.create(tf.name, crypts, decryption);
  }
  const entries: PlanEntry[] = [];
  let skipped = 0;
  for (const e of tf.entries) {
    if (match && !match(e.name)) {
      skipped++;
      continue;
    }
    const c = checked?.[e.index];
    const meta = c ? c.meta : e.dataLength === 0 && e.byteSize > 0;
    const dtype = e.dtype as DTypeInfo;
    entries.push({
      name: e.name,
      path: e.path,
      type: TENSOR_TYPE_NAMES[e.type] ?? String(e.type),
      dtype: dtype.name,
      itemsize: dtype.itemsize,
      shape: e.shape,
      dataOffset: e.dataOffset,
      dataLength: e.dataLength,
      index: e.index,
      file: 0,
      meta,
      ...(c ? { check: { crc32: c.crc32, sha256: c.sha256, prefix: Buffer.concat(c.prefix) } } : {}),
    });
  }
  return { entries, count: tf.entries.length, skipped, ...(plan ? { decryption: plan } : {}) };
}

/**
 * A stock safetensors checkpoint, loaded as it is: every shard's header already validated as
 * strictly as `serialize` validates it (offsets that tile the data section exactly, sizes
 * that match dtype x shape, a bounded header) before anything is read into the destination.
 * It holds no hashes; with --verify (`known`: each file's expected SHA-256, where known) each
 * file with one is hashed whole while it streams: its header bytes, then its tensors in file
 * order. Then every tensor loads (a whole-file hash needs every byte), and the shards'
 * tensors are interleaved in the plan so that their hashes advance side by side.
 */
function planSafetensors(c: SafetensorsCheckpoint, path: string, match: ((name: string) => boolean) | undefined, known: (KnownHash | undefined)[] | undefined): Planned {
  if (known) {
    if (match) throw usageError('--verify of a safetensors checkpoint checks each file\'s SHA-256, which covers every tensor: it cannot be combined with --filter');
    if (known.every((k) => k === undefined)) {
      throw usageError(`--verify: no SHA-256 is known for ${c.shards.length > 1 ? `any of the ${c.shards.length} files of ${path}` : path} (safetensors holds no hashes)`, [
        'give it: --sha256 HEX (one file) or --sha256 NAME=HEX (per shard)', `or put a ${SUMS_FILE} file (sha256sum's output) beside the checkpoint`, 'Hugging Face resolve URLs state it themselves (X-Linked-Etag)', 'or load without --verify: the headers are always checked',
      ]);
    }
  }
  const entries: PlanEntry[] = [];
  const order: number[] = [];
  let skipped = 0;
  let index = 0;
  c.shards.forEach((shard, file) => {
    const h = shard.header;
    const dataLen = Math.max(1, shard.source.size - h.dataStart);
    for (const t of h.tensors) {
      if (match && !match(t.name)) {
        skipped++;
        index++;
        continue;
      }
      const d = dtypeBySafetensors(t.dtype);
      order.push(t.begin / dataLen);
      entries.push({
        name: t.name,
        path: [t.name],
        type: 'state_dict',
        dtype: d?.name ?? t.dtype,
        itemsize: d?.itemsize ?? 1,
        shape: t.shape,
        dataOffset: h.dataStart + t.begin,
        dataLength: t.end - t.begin,
        index: index++,
        file,
        meta: false,
      });
    }
  });
  if (!known) return { entries, count: index, skipped };
  // Interleaved by how far into its file each tensor starts (each file's own order kept).
  const perm = entries.map((_, k) => k).sort((a, b) => order[a]! - order[b]! || a - b);
  const sorted = perm.map((k) => entries[k]!);
  const groups: NonNullable<Planned['groups']> = [];
  const checksums: NonNullable<Planned['checksums']> = [];
  const unchecked: string[] = [];
  c.shards.forEach((shard, file) => {
    const k = known[file];
    if (!k) return void unchecked.push(shard.name);
    const items = sorted.flatMap((e, pos) => (e.file === file ? [pos] : []));
    groups.push({ sha256: Buffer.from(k.sha256, 'hex'), prefix: shard.header.head, items, name: shard.name });
    checksums.push({ file: shard.name, sha256: k.sha256, from: k.from });
  });
  return { entries: sorted, count: index, skipped, groups, checksums, unchecked };
}
