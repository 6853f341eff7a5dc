/**
 * The one transfer API: every command that moves tensor bytes (serialize, verify, export,
 * load, bench) hands `transfer()` a list of jobs and a sink, and this module alone picks the
 * engine, polls progress, names the tensor in errors and compares hashes.
 *
 * A job is a byte range of the transfer's source (or, for local inputs, ranges or a strided
 * view of a file: a SourceData), hashed on the way when asked (CRC32 and SHA-256 over a
 * prefix, then the data) and checked against stored hashes when it has some. A load hands
 * its jobs over packed (PackedJobs: numbers and names, no object per tensor). Sinks:
 *
 *   hash    nothing is written: the hashes only (or the bytes are dropped, for a benchmark)
 *   file    an existing file; each job's bytes land at its `dst` (a job without one is only hashed)
 *   stream  an ordered consumer (the S3 multipart upload): the jobs' bytes one after another
 *   memory  a new native destination (GPU or host memory); each job's bytes at its `dst`
 *
 * Engines, by source and sink:
 *
 *   local files  hash, file   the native copy engine (runner.ts); strided views, no addon or
 *                             TENSORIZE_ENGINE=js: the pool of JavaScript workers
 *   local files  stream       ordered reads on this thread
 *   local file   memory       the native loader (pinned ring to the GPU, or host memory, or mmap)
 *   network      hash, file,  the native fetcher (fetch.ts); no addon or TENSORIZE_NET=js:
 *                memory       ordered parallel range reads in JavaScript (remote.ts)
 *   network      stream       ordered parallel range reads in JavaScript
 */
import { open } from 'node:fs/promises';
import { inTensor, TensorizeError } from '../errors.js';
import { hashFailures, verifyError, type Computed, type HashFailure } from '../format/check.js';
import { swapBytes } from '../format/dtypes.js';
import type { Range, SourceData } from '../format/view.js';
import { native, type NativeCrypt, type NativeExpect, type NativeSeal, type NativeFetchStats, type NativeHandle, type NativeHashGroup } from '../native/binding.js';
import type { ByteSource } from '../sources/source.js';
import { writeFully, type JobResult, type StreamJob } from './job.js';
import { fetchedHashes, fetchNative, fetchNativeMany, networkTargetOf, type FetchJob } from './fetch.js';
import { pollProgress } from './progress.js';
import { DEFAULT_CONCURRENCY, readRemote, type RemoteJob } from './remote.js';
import { checkPlans, encryptionOf, jsEncrypted } from './encrypted.js';
import { JobRunner } from './runner.js';

export interface TransferJob {
  /** A range of the transfer's `source`, or (local inputs, no `source`) where in which file. */
  src: Range | SourceData;
  /** Where the bytes go: an offset in the file or native destination (file and memory sinks). */
  dst?: number;
  /** Bytes hashed before the data and not written (a tensor header with zeroed hash values). */
  prefix?: readonly Uint8Array[];
  crc32?: boolean;
  sha256?: boolean;
  /** Stored hashes: computed and compared here; a mismatch is a failure in the result. */
  expect?: Computed;
  /** The tensor, for errors and failures. */
  name?: string;
  /** The tensor's index in its file, for failures. */
  index?: number;
}

/**
 * Range jobs of the transfer's source packed as the native loader takes them: a plan of
 * many tensors (a load of tens of thousands) without an object per job.
 */
export interface PackedJobs {
  /** Three numbers per job: offset in the source, length, destination offset. */
  items: Float64Array;
  /** The tensor of each job, for errors and failures. */
  names: readonly string[];
  /** Each tensor's index in its file, for failures (default: the job's own). */
  indexes?: readonly number[];
  /** Hashes to check on the way (every job, or none): each job's stored hashes and the prefix they cover. */
  checks?: readonly NativeExpect[];
  /** With several sources (TransferOptions.sources): each job's source. */
  files?: Uint32Array;
  /**
   * Whole-file SHA-256s (instead of `checks`), checked while the data streams: each group's
   * SHA-256 is over `prefix`, then its `items`' (job indexes) bytes in this order, which must
   * be the jobs' order (and, from the network, one source's file order). `name` (the
   * shard's path or URL) names it in a mismatch. Memory sinks only (the native loader and
   * fetcher); the JavaScript network path (TENSORIZE_NET=js, no addon) does not do them.
   */
  groups?: readonly { sha256: Buffer; prefix: Buffer; items: Uint32Array; name: string }[];
}

export type Sink =
  | { kind: 'hash' }
  | { kind: 'file'; path: string }
  | { kind: 'stream'; write: (bytes: Buffer) => Promise<void> }
  | {
      kind: 'memory';
      /** -1: host memory. */
      device: number;
      /** Bytes to allocate. */
      total: number;
      hugePages?: boolean;
      /** Local files: the native loader's settings (see LoadOptions). */
      plaid?: boolean;
      mmap?: boolean;
      readers?: number;
      /**
       * Local sources, one per source: its size when its index was read (the loader fails
       * if it differs), and with mmap where it is mapped in the destination.
       */
      files?: readonly { size: number; mapAt: number }[];
    };

export interface TransferOptions {
  /** Where range jobs read from; without it every job names its file (a SourceData). */
  source?: ByteSource;
  /**
   * Or several sources, all local or all remote (a sharded checkpoint), read at once into
   * one memory sink: PackedJobs.files says which holds each job.
   */
  sources?: readonly ByteSource[];
  /** Local engines: threads. */
  threads?: number;
  /** Bytes per read (local engines, the loader's ring slots, the network's range requests). */
  chunkSize?: number;
  /** Network sources: range requests in flight (default 8). */
  concurrency?: number;
  /** Bytes done since the last call. */
  onProgress?: (bytes: number) => void;
  /**
   * Encrypted jobs, one entry per job (null: not encrypted): each piece is decrypted in place
   * before anything hashes, copies or writes it; a MAC that does not match fails the
   * transfer with E_DECRYPT naming the tensor. The hashes are the plaintext's.
   */
  crypt?: NativeCrypt;
  /**
   * Or jobs to encrypt, one entry per job (local files into file, hash or stream sinks:
   * serialize --encrypt): sealed after hashing (the hashes are the plaintext's), their MACs
   * in the results. Encrypted and sealed jobs must be one range, not byte-swapped, and need
   * the native addon (the JavaScript worker pool refuses them: E_UNSUPPORTED).
   */
  seal?: NativeSeal;
}

export type TransferEngine = 'copy' | 'workers' | 'stream' | 'loader' | 'fetcher' | 'js';

/** How the bytes of a network source came (a load's report says it too). */
export interface NetworkStats {
  /** `native`: the addon's fetcher (one thread per connection, no bytes through JS); `js`: undici. */
  engine: 'native' | 'js';
  connections: number;
  /** Range requests sent, retries included. */
  requests: number;
  retries: number;
  /** Body bytes received: tensor data, the headers between tensors, and retried bytes. */
  wireBytes: number;
}

export interface TransferStats {
  engine: TransferEngine;
  bytes: number;
  /** The run, as the engine measured it (the native loader and fetcher), else as measured here. */
  transferMs: number;
  /** The run, measured here around the engine. */
  wallMs: number;
  /** Memory sinks: allocating the destination (and the pinned ring). */
  allocMs: number;
  /** Memory sinks: from the start until the first job was complete; -1 when unknown. */
  firstJobMs: number;
  pinnedBytes: number;
  deviceBytes: number;
  hostBytes: number;
  mappedBytes: number;
  /** Network sources. */
  network?: NetworkStats;
}

export interface TransferResult {
  /**
   * Per job, in order: the bytes moved and the hashes computed. Empty for the native loader
   * (a local file into memory), which checks the hashes itself and fails at a mismatch.
   */
  results: JobResult[];
  /** Jobs whose computed hashes disagree with their `expect`, in job order. */
  failures: HashFailure[];
  stats: TransferStats;
  /** Memory sinks: the destination (free it with native().free, or hand it to a LoadedModel). */
  handle?: NativeHandle;
}

/** A job of a network source: one range, with a prefix (maybe empty) and the hashes it wants. */
type Ranged = FetchJob & RemoteJob;

const wants = (j: TransferJob) => ({ crc32: j.crc32 ?? j.expect?.crc32 !== undefined, sha256: j.sha256 ?? j.expect?.sha256 !== undefined });
const isRange = (s: Range | SourceData): s is Range => !('ranges' in s);
const nameOf = (j: TransferJob, k: number) => j.name ?? `#${k}`;

function emptyStats(engine: TransferEngine): TransferStats {
  return { engine, bytes: 0, transferMs: 0, wallMs: 0, allocMs: 0, firstJobMs: -1, pinnedBytes: 0, deviceBytes: 0, hostBytes: 0, mappedBytes: 0 };
}

/** Move the jobs' bytes from the source to the sink (see the module comment). */
export async function transfer(jobs: readonly TransferJob[] | PackedJobs, sink: Sink, opts: TransferOptions = {}): Promise<TransferResult> {
  const t0 = performance.now();
  const srcs = opts.sources ?? (opts.source ? [opts.source] : []);
  const src = srcs[0];
  const network = src !== undefined && src.localPath === undefined;
  if (srcs.some((x) => (x.localPath === undefined) !== network)) throw new TensorizeError('E_NATIVE', 'the sources of one transfer must be all local or all remote');
  if (opts.seal?.items.some((x) => x !== null) && (network || sink.kind === 'memory')) {
    throw new TensorizeError('E_NATIVE', 'jobs are sealed (encrypted) from local files into file, hash or stream sinks only');
  }
  const grouped = isPacked(jobs) && (jobs.groups?.length ?? 0) > 0;
  if (grouped && sink.kind !== 'memory') throw new TensorizeError('E_UNSUPPORTED', 'hash groups (whole-file SHA-256s) are checked on loads into memory only');
  if (srcs.length > 1 || (grouped && network)) {
    if (sink.kind !== 'memory' || !isPacked(jobs)) throw new TensorizeError('E_NATIVE', 'several sources are read into memory only, from packed jobs');
    const out = network ? await fromNetworkMany(srcs, jobs, sink, opts) : await loadLocal(jobs, sink, { ...opts, sources: srcs });
    return { ...out, results: [], failures: [], stats: finish(out.stats, t0) };
  }
  if (!network && sink.kind === 'memory') {
    // The native loader checks the hashes itself and fails at a mismatch: no failures to list.
    const out = await loadLocal(isPacked(jobs) ? jobs : pack(jobs), sink, opts);
    return { ...out, results: [], failures: [], stats: finish(out.stats, t0) };
  }
  const list = isPacked(jobs) ? unpack(jobs) : jobs;
  const out = network ? await fromNetwork(src, list, sink, opts) : await fromFiles(list.map((j) => localData(j, src)), list, sink as Exclude<Sink, { kind: 'memory' }>, opts);
  finish(out.stats, t0);
  if (out.stats.bytes === 0) for (const r of out.results) out.stats.bytes += r.bytes;
  const failures: HashFailure[] = [];
  for (let k = 0; k < list.length; k++) {
    const j = list[k]!;
    if (j.expect) failures.push(...hashFailures({ tensor: nameOf(j, k), index: j.index ?? k }, j.expect, out.results[k]!));
  }
  return { ...out, failures };
}

function finish(stats: TransferStats, t0: number): TransferStats {
  stats.wallMs = performance.now() - t0;
  if (stats.transferMs === 0) stats.transferMs = stats.wallMs;
  return stats;
}

const isPacked = (jobs: readonly TransferJob[] | PackedJobs): jobs is PackedJobs => !Array.isArray(jobs);

/** Range jobs, packed (for the loader). */
function pack(jobs: readonly TransferJob[]): PackedJobs {
  const items = new Float64Array(jobs.length * 3);
  jobs.forEach((j, k) => {
    if (!isRange(j.src)) throw new TensorizeError('E_NATIVE', 'the loader takes ranges of a local source');
    items.set([j.src.offset, j.src.length, j.dst ?? 0], 3 * k);
  });
  const checks = jobs.some((j) => j.expect) ? jobs.map((j) => ({ crc32: j.expect?.crc32, sha256: j.expect?.sha256 && asBuffer(j.expect.sha256), prefix: Buffer.concat(j.prefix ?? []) })) : undefined;
  return { items, names: jobs.map(nameOf), indexes: jobs.map((j, k) => j.index ?? k), checks };
}

/** Packed jobs as a list. */
function unpack(p: PackedJobs): TransferJob[] {
  return p.names.map((name, k) => ({
    src: { offset: p.items[3 * k]!, length: p.items[3 * k + 1]! },
    dst: p.items[3 * k + 2]!,
    name,
    index: p.indexes?.[k] ?? k,
    ...(p.checks ? { prefix: [p.checks[k]!.prefix], expect: { crc32: p.checks[k]!.crc32, sha256: p.checks[k]!.sha256 } } : {}),
  }));
}

function localData(j: TransferJob, src: ByteSource | undefined): SourceData {
  if (!isRange(j.src)) return j.src;
  if (src?.localPath === undefined) throw new TensorizeError('E_NATIVE', 'a range job needs a source');
  return { path: src.localPath, ranges: [j.src] };
}

async function fromFiles(data: SourceData[], jobs: readonly TransferJob[], sink: Exclude<Sink, { kind: 'memory' }>, opts: TransferOptions): Promise<{ results: JobResult[]; stats: TransferStats }> {
  checkPlans(opts, jobs.length);
  const enc = jobs.map((j, k) => encryptionOf(opts, k, data[k]!, j.name));
  if (sink.kind === 'stream') return { results: await streamFiles(data, jobs, enc, sink.write, opts), stats: emptyStats('stream') };
  const runner = new JobRunner(opts.threads, opts.onProgress, opts.chunkSize);
  try {
    // Refused before any job starts (the runner would refuse them one by one).
    if (runner.engine === 'js' && enc.some((e) => e.crypt || e.seal)) throw jsEncrypted(false);
    const results = await Promise.all(
      jobs.map((j, k) =>
        runner
          .run({
            id: k,
            src: data[k]!,
            dst: sink.kind === 'file' && j.dst !== undefined ? { path: sink.path, offset: j.dst } : undefined,
            prefix: j.prefix ? [...j.prefix] : undefined,
            ...wants(j),
            ...enc[k],
          })
          .catch((e: unknown) => {
            throw j.name === undefined ? e : inTensor(e, j.name);
          }),
      ),
    );
    return { results, stats: emptyStats(runner.engine === 'native' && !data.some((d) => d.view) ? 'copy' : 'workers') };
  } finally {
    await runner.close();
  }
}

/**
 * Each job's bytes in order into `write`, read on this thread (byte-swapped where asked),
 * encrypted jobs decrypted and sealed ones encrypted piece by piece (pieces of whole crypt
 * chunks), their MACs in the results.
 */
async function streamFiles(data: SourceData[], jobs: readonly TransferJob[], enc: readonly Pick<StreamJob, 'crypt' | 'seal'>[], write: (b: Buffer) => Promise<void>, opts: TransferOptions): Promise<JobResult[]> {
  const files = new Map<string, Awaited<ReturnType<typeof open>>>();
  const chunk = Buffer.allocUnsafeSlow(opts.chunkSize ?? 8 << 20);
  const results: JobResult[] = [];
  try {
    for (const [k, d] of data.entries()) {
      if (d.view || wants(jobs[k]!).crc32 || wants(jobs[k]!).sha256) throw new TensorizeError('E_NATIVE', 'a stream sink takes ranges without hashes');
      let fh = files.get(d.path);
      if (!fh) files.set(d.path, (fh = await open(d.path, 'r')));
      const { crypt, seal } = enc[k]!;
      const c = crypt ?? seal;
      // Pieces of whole crypt chunks: as many as fit the buffer, at least one.
      const step = c ? Math.max(c.chunk, chunk.length - (chunk.length % c.chunk)) : chunk.length;
      const buf = step > chunk.length ? Buffer.allocUnsafeSlow(step) : chunk;
      const macs: Buffer[] = [];
      let bytes = 0;
      for (const r of d.ranges) {
        for (let pos = 0; pos < r.length; ) {
          const n = Math.min(step, r.length - pos);
          const { bytesRead } = await fh.read(buf, 0, n, r.offset + pos);
          if (bytesRead !== n) {
            const what = jobs[k]!.name === undefined ? '' : ` (tensor ${JSON.stringify(jobs[k]!.name)})`;
            throw new TensorizeError('E_IO', `${d.path}: short read at byte ${r.offset + pos}; the file changed while being read${what}`);
          }
          const piece = buf.subarray(0, n);
          swapBytes(piece, d.swap);
          try {
            if (crypt) native().open(crypt.key, crypt.nonce, crypt.chunk, crypt.macs, r.length, pos, piece);
            if (seal) macs.push(native().seal(seal.key, seal.nonce, seal.chunk, r.length, pos, piece));
          } catch (e) {
            throw jobs[k]!.name === undefined ? e : inTensor(e, jobs[k]!.name!);
          }
          await write(piece);
          opts.onProgress?.(n);
          pos += n;
          bytes += n;
        }
      }
      results.push({ id: k, bytes, ...(seal ? { macs: Buffer.concat(macs) } : {}) });
    }
  } finally {
    for (const fh of files.values()) await fh.close();
  }
  return results;
}

/** A local file into GPU or host memory (or mapped) by the native loader, which checks the hashes itself. */
async function loadLocal(jobs: PackedJobs, sink: Extract<Sink, { kind: 'memory' }>, opts: TransferOptions): Promise<{ stats: TransferStats; handle: NativeHandle }> {
  const bin = native();
  const srcs = opts.sources ?? (opts.source ? [opts.source] : []);
  if (srcs.length === 0 || srcs.some((x) => x.localPath === undefined)) throw new TensorizeError('E_NATIVE', 'the loader needs local sources');
  const path = srcs[0]!.localPath!;
  const { handle, done } = bin.start({
    files: srcs.map((x, k) => ({ path: x.localPath!, size: sink.files?.[k]?.size, mapAt: sink.files?.[k]?.mapAt ?? 0 })),
    itemFiles: jobs.files,
    device: sink.device,
    plaid: sink.plaid ?? true,
    mmap: sink.mmap ?? false,
    readers: sink.readers ?? 8,
    chunkSize: opts.chunkSize ?? 16 << 20,
    verify: jobs.checks !== undefined,
    hugePages: sink.hugePages ?? false,
    total: sink.total,
    items: jobs.items,
    expect: jobs.checks,
    groups: nativeGroups(jobs.groups),
    crypt: opts.crypt,
  });
  const stop = pollProgress(() => bin.progress(handle), opts.onProgress);
  try {
    const st = await done;
    stop();
    const stats: TransferStats = {
      ...emptyStats('loader'),
      bytes: st.bytes,
      transferMs: st.transferMs,
      allocMs: st.allocMs,
      firstJobMs: st.firstTensorMs,
      pinnedBytes: st.pinnedBytes,
      deviceBytes: st.deviceBytes,
      hostBytes: st.hostBytes,
      mappedBytes: st.mappedBytes,
    };
    return { stats, handle };
  } catch (e) {
    stop();
    throw groupError(
      nativeError(e, (k) => (k < jobs.names.length ? { name: jobs.names[k]!, index: jobs.indexes?.[k] ?? k } : undefined), srcs[jobs.files?.[0] ?? 0]!.name ?? path),
      jobs.groups,
    );
  }
}

async function fromNetwork(src: ByteSource, jobs: readonly TransferJob[], sink: Sink, opts: TransferOptions): Promise<{ results: JobResult[]; stats: TransferStats; handle?: NativeHandle }> {
  const ranged = jobs.map((j, k) => {
    const d = j.src;
    const r = isRange(d) ? d : !d.view && d.ranges.length === 1 && (d.swap ?? 1) <= 1 ? d.ranges[0] : undefined;
    if (!r) throw new TensorizeError('E_NATIVE', `job ${k}: a network source is read by single ranges`);
    return { offset: r.offset, length: r.length, dst: j.dst ?? 0, prefix: j.prefix ? [...j.prefix] : [], ...wants(j) } satisfies Ranged;
  });
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  const net = sink.kind === 'stream' ? undefined : await networkTargetOf(src);
  if (net) {
    const memory = sink.kind === 'memory' ? { device: sink.device, total: sink.total, hugePages: sink.hugePages } : undefined;
    const common = { output: sink.kind === 'file' ? sink.path : undefined, concurrency, chunkSize: opts.chunkSize, onProgress: opts.onProgress, crypt: opts.crypt };
    let r: { handle?: NativeHandle; stats: NativeFetchStats };
    try {
      r = memory ? await fetchNative(src, net, ranged, { ...common, ...memory }) : await fetchNative(src, net, ranged, common);
    } catch (e) {
      throw nativeError(e, (k) => (jobs[k] && jobs[k].name !== undefined ? { name: jobs[k].name!, index: jobs[k].index ?? k } : undefined), src.name);
    }
    const st = r.stats;
    const hashing = ranged.some((j) => j.crc32 || j.sha256);
    const results = ranged.map((j, k) => ({ id: k, bytes: j.length, ...(hashing ? pick(j, fetchedHashes(st, k)) : {}) }));
    return { results, stats: fetcherStats(st, ranged, memory), handle: r.handle };
  }
  noJsDecryption(opts.crypt);
  return readNetworkJs(src, ranged, sink, { ...opts, concurrency });
}

/**
 * The JavaScript network path (TENSORIZE_NET=js, no addon, a stream sink) hashes and writes
 * the pieces as they come and does not decrypt: encrypted jobs there are E_UNSUPPORTED.
 */
function noJsDecryption(crypt: NativeCrypt | undefined): void {
  if (!crypt?.items.some((c) => c !== null)) return;
  throw new TensorizeError('E_UNSUPPORTED', 'encrypted tensors over the network need the native fetcher (not TENSORIZE_NET=js)', {
    hints: ['unset TENSORIZE_NET=js (the native addon must be built: npm run build:native), or copy the file to a local disk first'],
  });
}

/**
 * Several network sources (a sharded checkpoint's shards) into one memory sink: the native
 * fetcher with its connections spread over them all; without it (TENSORIZE_NET=js, no
 * addon), JavaScript range reads, `concurrency` requests in flight across the sources.
 */
async function fromNetworkMany(srcs: readonly ByteSource[], packed: PackedJobs, sink: Extract<Sink, { kind: 'memory' }>, opts: TransferOptions): Promise<{ stats: TransferStats; handle?: NativeHandle }> {
  const jobs = unpack(packed);
  const file = (k: number) => packed.files?.[k] ?? 0;
  const ranged = jobs.map((j, k) => ({ ...(j.src as Range), dst: j.dst ?? 0, prefix: [] as Uint8Array[], crc32: false, sha256: false, file: file(k) }));
  const concurrency = opts.concurrency ?? DEFAULT_CONCURRENCY;
  const nets = await Promise.all(srcs.map(networkTargetOf));
  if (nets.every((n) => n !== undefined)) {
    const memory = { device: sink.device, total: sink.total, hugePages: sink.hugePages };
    let r: { handle: NativeHandle; stats: NativeFetchStats };
    try {
      const groups = nativeGroups(packed.groups);
      r = await fetchNativeMany(srcs.map((src, k) => ({ src, net: nets[k]! })), ranged, { concurrency, chunkSize: opts.chunkSize, onProgress: opts.onProgress, groups, crypt: opts.crypt, ...memory });
    } catch (e) {
      throw groupError(
        nativeError(e, (k) => (jobs[k] ? { name: jobs[k].name!, index: jobs[k].index ?? k } : undefined), srcs[0]!.name),
        packed.groups,
      );
    }
    return { stats: fetcherStats(r.stats, ranged, memory), handle: r.handle };
  }
  if (packed.groups?.length)
    throw new TensorizeError('E_UNSUPPORTED', 'whole-file SHA-256 checks (hash groups) of network sources need the native fetcher (not TENSORIZE_NET=js or a proxy it cannot use)', {
      hints: ['unset TENSORIZE_NET=js, or load without the whole-file hashes'],
    });
  noJsDecryption(opts.crypt);
  const stats = emptyStats('js');
  stats.network = { engine: 'js', connections: concurrency, requests: -1, retries: -1, wireBytes: -1 };
  const bin = native();
  const { handle, a0 } = allocJs(sink, stats);
  try {
    // Each source's jobs, read by `concurrency` lanes shared out over the sources at once.
    const bySource = srcs.map((_, f) => ranged.map((j, k) => ({ j, k })).filter((x) => x.j.file === f));
    let nextSource = 0;
    const lanes = Math.max(1, Math.min(concurrency, srcs.length));
    const lane = async (share: number) => {
      while (nextSource < srcs.length) {
        const f = nextSource++;
        const mine = bySource[f]!;
        await readRemote(srcs[f]!, mine.map((x) => x.j), {
          concurrency: share,
          chunkSize: opts.chunkSize,
          onProgress: opts.onProgress,
          onPart: (i, off, bytes) => bin.writeAsync(handle, mine[i]!.j.dst + off, bytes),
          onJobDone: () => {
            if (stats.firstJobMs < 0) stats.firstJobMs = performance.now() - a0;
          },
        });
      }
    };
    await Promise.all(Array.from({ length: lanes }, (_, i) => lane(Math.floor(concurrency / lanes) + (i < concurrency % lanes ? 1 : 0))));
    stats.bytes = ranged.reduce((n, j) => n + j.length, 0);
    return { stats, handle };
  } catch (e) {
    bin.free(handle);
    throw e;
  }
}

/** The native fetcher's figures as a transfer's. */
function fetcherStats(st: NativeFetchStats, jobs: readonly { length: number }[], memory: { device: number; total: number } | undefined): TransferStats {
  return {
    ...emptyStats('fetcher'),
    bytes: jobs.reduce((n, j) => n + j.length, 0),
    transferMs: st.transferMs,
    allocMs: st.allocMs,
    firstJobMs: st.firstTensorMs < 0 ? -1 : st.allocMs + st.firstTensorMs,
    pinnedBytes: st.pinnedBytes,
    deviceBytes: memory && memory.device >= 0 ? memory.total : 0,
    hostBytes: memory && memory.device < 0 ? memory.total : 0,
    network: { engine: 'native', connections: st.connections, requests: st.requests, retries: st.retries, wireBytes: st.wireBytes },
  };
}

/** A Buffer over the same bytes (no copy). */
const asBuffer = (b: Uint8Array): Buffer => (Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** Only the hashes a job asked for. */
function pick(j: { crc32: boolean; sha256: boolean }, h: { crc32: number; sha256: Uint8Array }): Computed {
  return { ...(j.crc32 ? { crc32: h.crc32 } : {}), ...(j.sha256 ? { sha256: h.sha256 } : {}) };
}

/** The JavaScript network path: ordered parallel range reads (remote.ts), each piece into the sink as it arrives. */
async function readNetworkJs(src: ByteSource, jobs: Ranged[], sink: Sink, opts: TransferOptions) {
  const stats = emptyStats('js');
  stats.network = { engine: 'js', connections: opts.concurrency!, requests: -1, retries: -1, wireBytes: -1 };
  const read = { concurrency: opts.concurrency, chunkSize: opts.chunkSize, onProgress: opts.onProgress };
  if (sink.kind === 'hash') return { results: await readRemote(src, jobs, read), stats };
  if (sink.kind === 'stream') {
    for (let k = 1; k < jobs.length; k++) {
      if (jobs[k]!.offset < jobs[k - 1]!.offset + jobs[k - 1]!.length) throw new TensorizeError('E_NATIVE', 'a stream sink takes jobs in file order');
    }
    let chain = Promise.resolve();
    const results = await readRemote(src, jobs, { ...read, onPart: (_k, _off, bytes) => (chain = chain.then(() => sink.write(bytes))) });
    await chain;
    return { results, stats };
  }
  if (sink.kind === 'file') {
    const fh = await open(sink.path, 'r+');
    try {
      return { results: await readRemote(src, jobs, { ...read, onPart: (k, off, bytes) => writeFully(fh.fd, bytes, jobs[k]!.dst + off) }), stats };
    } finally {
      await fh.close();
    }
  }
  const bin = native();
  const { handle, a0 } = allocJs(sink, stats);
  try {
    const results = await readRemote(src, jobs, {
      ...read,
      onPart: (k, off, bytes) => bin.writeAsync(handle, jobs[k]!.dst + off, bytes),
      onJobDone: () => {
        if (stats.firstJobMs < 0) stats.firstJobMs = performance.now() - a0;
      },
    });
    return { results, stats, handle };
  } catch (e) {
    bin.free(handle);
    throw e;
  }
}

/** The JavaScript network path's destination: allocated and counted in `stats`; `a0`: when allocating began. */
function allocJs(sink: Extract<Sink, { kind: 'memory' }>, stats: TransferStats): { handle: NativeHandle; a0: number } {
  const a0 = performance.now();
  const handle = native().alloc({ device: sink.device, total: sink.total, hugePages: sink.hugePages });
  stats.allocMs = performance.now() - a0;
  stats[sink.device >= 0 ? 'deviceBytes' : 'hostBytes'] = sink.total;
  return { handle, a0 };
}

/** PackedJobs.groups as the addon takes them. */
function nativeGroups(groups: PackedJobs['groups']): NativeHashGroup[] | undefined {
  return groups?.length ? groups.map(({ sha256, prefix, items }) => ({ sha256, prefix, items })) : undefined;
}

/**
 * A native error about a hash group (its `group`: the index) in the group's words: a
 * mismatch names the shard and both SHA-256s (the computed one from the native message).
 */
export function groupError(e: unknown, groups: PackedJobs['groups']): unknown {
  if (!(e instanceof TensorizeError) || !groups) return e;
  const g = (e as TensorizeError & { group?: number }).group;
  const group = g === undefined ? undefined : groups[g];
  if (!group) return e;
  if (e.code !== 'E_HASH_MISMATCH') return new TensorizeError(e.code, `${group.name}: ${e.message}`, { hints: e.hints, cause: e });
  const computed = /computed ([0-9a-f]{64})/.exec(e.message)?.[1] ?? 'unknown';
  const expected = group.sha256.toString('hex');
  return new TensorizeError('E_HASH_MISMATCH', `${group.name}: SHA-256 mismatch: the file is not the one expected (expected ${expected}, computed ${computed})`, { hints: e.hints, cause: e });
}

/**
 * The one place a native error meets the jobs: its `item` (the failing job's index) names
 * the tensor, and a hash mismatch the native side found reads as verify reports it.
 */
export function nativeError(e: unknown, job: (k: number) => { name: string; index: number } | undefined, file: string): unknown {
  if (!(e instanceof TensorizeError)) return e;
  const idx = (e as TensorizeError & { item?: number }).item;
  const j = idx === undefined ? undefined : job(idx);
  if (!j) return e;
  const hashes = (e as TensorizeError & { hashes?: string[] }).hashes;
  if (e.code === 'E_HASH_MISMATCH' && hashes?.length) {
    // Reported as verify reports it (the stored and computed values stay in the cause).
    const failures = hashes.map((h) => ({ tensor: j.name, index: j.index, hash: h === 'crc32' ? ('crc32' as const) : ('sha256' as const), expected: '', actual: '' }));
    const v = verifyError(file, failures, []);
    return new TensorizeError(v.code, v.message, { hints: v.hints, cause: e });
  }
  return new TensorizeError(e.code, `${e.message} (tensor ${JSON.stringify(j.name)})`, { hints: e.hints, cause: e });
}
