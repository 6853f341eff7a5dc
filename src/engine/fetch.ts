/**
 * Network sources (HTTP(S), S3) read by the native fetcher (native/src/fetch.h): the tensor
 * data is pulled by parallel ranged GETs, one native thread per connection, received
 * straight into host memory, or through a pinned ring into a GPU, or into a file (export), or
 * only hashed (verify). No byte passes through JavaScript. The JavaScript path
 * (engine/remote.ts, undici) stays for machines without the addon and can be forced with
 * TENSORIZE_NET=js.
 */
import { config } from '../config.js';
import { TensorizeError } from '../errors.js';
import { native, nativeAvailable, type NativeCrypt, type NativeFetchStats, type NativeHandle, type NativeHashGroup } from '../native/binding.js';
import { DEFAULT_SPEED_LIMIT, DEFAULT_SPEED_TIME_MS } from '../sources/retry.js';
import type { ByteSource, NetworkTarget } from '../sources/source.js';
import { pollProgress } from './progress.js';
import { DEFAULT_CONCURRENCY, DEFAULT_REMOTE_CHUNK } from './remote.js';

export interface FetchJob {
  offset: number;
  length: number;
  /** Destination offset (ignored when only hashing). */
  dst: number;
  /** Hashed before the data (the tensor header with zeroed hash fields). */
  prefix?: Uint8Array[];
  crc32: boolean;
  sha256: boolean;
}

export interface FetchOptions {
  /** Without a destination: an existing file that receives each job's bytes at its dst (else only hashes). */
  output?: string;
  concurrency?: number;
  chunkSize?: number;
  maxGap?: number;
  /** Bytes received since the last call (polled every 100 ms, and once at the end). */
  onProgress?: (bytes: number) => void;
  /**
   * Hash groups (whole-file SHA-256s over jobs, by index), checked natively: a mismatch
   * rejects with E_HASH_MISMATCH and `group`. Not with per-job hashes.
   */
  groups?: readonly NativeHashGroup[];
  /**
   * Encrypted jobs, one entry per job (null: not encrypted): the native fetcher cuts their
   * ranges at their crypt chunks and decrypts each piece in place once it is in, before it
   * is hashed, copied or written; a MAC that does not match rejects with E_DECRYPT and `item`.
   */
  crypt?: NativeCrypt;
}

/** The native fetcher's target for `src`, or undefined when the JavaScript path must be used. */
export async function networkTargetOf(src: ByteSource): Promise<NetworkTarget | undefined> {
  if (!src.networkTarget || config().netJs || !nativeAvailable()) return undefined;
  return src.networkTarget();
}

/** A new destination on this device (-1: host memory) of `total` bytes. */
export interface Destination {
  device: number;
  total: number;
  /** Host destinations: ask for transparent huge pages. */
  hugePages?: boolean;
}

/** One object of a fetch: what to call it and its size, and how the native fetcher reaches it. */
export interface FetchSource {
  src: Pick<ByteSource, 'name' | 'size'>;
  net: NetworkTarget;
}

/**
 * Run the native fetcher on one object. With a destination, the returned handle holds it
 * (free it with native().free); without one the jobs are only hashed (or written to `output`).
 */
export async function fetchNative(src: Pick<ByteSource, 'name' | 'size'>, net: NetworkTarget, jobs: readonly FetchJob[], opts: FetchOptions & Destination): Promise<{ handle: NativeHandle; stats: NativeFetchStats }>;
export async function fetchNative(src: Pick<ByteSource, 'name' | 'size'>, net: NetworkTarget, jobs: readonly FetchJob[], opts: FetchOptions): Promise<{ stats: NativeFetchStats }>;
export async function fetchNative(src: Pick<ByteSource, 'name' | 'size'>, net: NetworkTarget, jobs: readonly FetchJob[], opts: FetchOptions & Partial<Destination>): Promise<{ handle?: NativeHandle; stats: NativeFetchStats }> {
  return runFetch([{ src, net }], jobs, opts);
}

/**
 * Run the native fetcher on several objects at once (the shards of a checkpoint), into one
 * destination: each job's `file` is its object's index in `objects`. The objects' requests
 * are interleaved so that all are read from the start, and each connection keeps to one
 * endpoint while it has requests there (native/src/fetch_plan.h). The retry settings are
 * the first object's (they come from one set of options). As fetchNative otherwise.
 */
export async function fetchNativeMany(objects: readonly FetchSource[], jobs: readonly (FetchJob & { file: number })[], opts: FetchOptions & Destination): Promise<{ handle: NativeHandle; stats: NativeFetchStats }>;
export async function fetchNativeMany(objects: readonly FetchSource[], jobs: readonly (FetchJob & { file: number })[], opts: FetchOptions): Promise<{ stats: NativeFetchStats }>;
export async function fetchNativeMany(objects: readonly FetchSource[], jobs: readonly (FetchJob & { file: number })[], opts: FetchOptions & Partial<Destination>): Promise<{ handle?: NativeHandle; stats: NativeFetchStats }> {
  if (objects.length === 0) throw new TensorizeError('E_USAGE', 'fetch: no objects to read from');
  return runFetch(objects, jobs, opts);
}

async function runFetch(objects: readonly FetchSource[], jobs: readonly (FetchJob & { file?: number })[], opts: FetchOptions & Partial<Destination>): Promise<{ handle?: NativeHandle; stats: NativeFetchStats }> {
  const bin = native();
  const retry = objects[0]!.net.retry;
  const hashing = jobs.some((j) => j.crc32 || j.sha256);
  const items = new Float64Array(jobs.length * 3);
  jobs.forEach((j, k) => items.set([j.offset, j.length, j.dst], 3 * k));
  const { handle, done } = bin.fetch({
    objects: objects.map(({ src, net }) => ({ ...net.target, name: src.name, size: src.size })),
    itemFiles: objects.length > 1 ? Uint32Array.from(jobs, (j) => j.file ?? 0) : undefined,
    device: opts.device ?? null,
    total: opts.total ?? 0,
    output: opts.output,
    hugePages: opts.hugePages,
    items,
    groups: opts.groups,
    crypt: opts.crypt,
    hashes: hashing ? jobs.map((j) => ({ crc32: j.crc32, sha256: j.sha256, prefix: j.prefix ? Buffer.concat(j.prefix) : undefined })) : undefined,
    chunkSize: opts.chunkSize ?? DEFAULT_REMOTE_CHUNK,
    maxGap: opts.maxGap ?? 1 << 20,
    connections: Math.max(1, opts.concurrency ?? DEFAULT_CONCURRENCY),
    retries: retry.retries ?? 5,
    baseDelayMs: retry.baseDelayMs ?? 200,
    timeoutMs: retry.timeoutMs ?? 30_000,
    speedLimit: retry.speedLimit ?? DEFAULT_SPEED_LIMIT,
    speedTimeMs: retry.speedTimeMs ?? DEFAULT_SPEED_TIME_MS,
  });
  const stop = pollProgress(() => bin.progress(handle), opts.onProgress);
  try {
    const stats = await done;
    stop();
    for (const m of stats.retryLog) retry.onRetry?.(m);
    if (opts.device === undefined) {
      bin.free(handle);
      return { stats };
    }
    return { handle, stats };
  } finally {
    stop();
  }
}

/** CRC32 and SHA-256 of each job (prefix, then data) from the native fetcher's result. */
export function fetchedHashes(stats: NativeFetchStats, k: number): { crc32: number; sha256: Uint8Array } {
  return { crc32: stats.crc32[k]!, sha256: new Uint8Array(stats.sha256.subarray(32 * k, 32 * k + 32)) };
}
