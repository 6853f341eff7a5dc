/**
 * The typed wrapper around the native addon, and the only module that loads it. Loading
 * is lazy: commands that do not stream into memory never touch it. When it cannot load,
 * one error lists the concrete fixes (sharp style); native errors arrive as TensorizeError
 * instances with a stable .code (better-sqlite3 style).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { config } from '../config.js';
import { TensorizeError } from '../errors.js';

export interface NativeDevice {
  index: number;
  name: string;
  totalMemory: number;
  pciBusId: string;
}

/**
 * The device layer's backend: `cuda` (the NVIDIA driver, loaded at run time), `simulated`
 * (TENSORIZE_SIM_GPU=N: a CPU stand-in for tests), or `none` (no usable GPU).
 */
export type DeviceBackend = 'cuda' | 'simulated' | 'none';

export interface NativeInfo {
  backend: DeviceBackend;
  /** The CUDA version the driver supports (1000 x major + 10 x minor), 0 without a driver. */
  driverVersion: number;
  deviceCount: number;
  /** Why there is no device, when there is none (no NVIDIA driver found, driver too old, ...). */
  noDeviceReason: string;
  devices: NativeDevice[];
  /** What CRC32 and SHA-256 run on here, e.g. "sha-ni x2, pclmul" or "portable". */
  hashImplementation: string;
  /** madvise(MADV_POPULATE_READ/WRITE) works here (Linux >= 5.14): --mmap maps pages in bulk. */
  populate: boolean;
}

export interface NativeExpect {
  crc32?: number;
  sha256?: Buffer;
  prefix: Buffer;
}

/**
 * A hash group: one SHA-256 over `prefix`, then the bytes of `items` one after the other in
 * this order (a safetensors shard's whole-file SHA-256: its header, then its tensors in file
 * order). Checked while the data streams; a mismatch is E_HASH_MISMATCH with `group` (the
 * group's index) on the error, its message "hash group #N: SHA-256 mismatch (stored <hex>,
 * computed <hex>)". Load: the items must come in this order in the plan (`items`); fetch:
 * they must lie in one object, in file order. An item is in at most one group.
 */
export interface NativeHashGroup {
  sha256: Buffer;
  prefix: Buffer;
  items: Uint32Array;
}

/**
 * How one item's bytes are encrypted (native/src/crypt.h): XSalsa20-Poly1305 per `chunk`
 * bytes under `keys[key]`, chunk i with `nonce` + i (little-endian), one 16-byte MAC per
 * chunk in `macs`. The engines decrypt each piece in place before hashing or copying it;
 * a MAC that does not match is E_DECRYPT with `item` set.
 */
export interface NativeItemCrypt {
  key: number;
  chunk: number;
  nonce: Buffer;
  macs: Buffer;
}

/** A run's encryption: its keys (32 bytes each; wipe them after the call) and one entry per item (null: not encrypted). */
export interface NativeCrypt {
  keys: readonly Buffer[];
  items: readonly (NativeItemCrypt | null)[];
}

/** Encryption on the way (serialize --encrypt): each job's data sealed in `chunk`-byte chunks after hashing; its MACs in the result. */
export interface NativeSeal {
  keys: readonly Buffer[];
  items: readonly (NativeSealItem | null)[];
}

/** A job to encrypt: under `keys[key]`, in `chunk`-byte chunks (a positive multiple of 64), chunk i with `nonce` + i. */
export interface NativeSealItem {
  key: number;
  chunk: number;
  nonce: Buffer;
}

export interface NativeSpec {
  /** One input file; or `files`. */
  path?: string;
  /**
   * Several input files (a sharded checkpoint): each with the size it had when its index
   * was read, and with mmap its page-aligned place in the destination. `itemFiles` says
   * which holds each item.
   */
  files?: readonly { path: string; size?: number; mapAt?: number }[];
  itemFiles?: Uint32Array;
  /** -1 for host memory. */
  device: number;
  plaid: boolean;
  readers: number;
  chunkSize: number;
  verify: boolean;
  /** Size of the destination allocation. */
  total: number;
  /** Host destinations: ask for transparent huge pages (default true). */
  hugePages?: boolean;
  /**
   * Host only, no copy: map the file copy-on-write and map the tensors' pages in from the
   * page cache. Every item's destination must be its file offset (with `files`: plus its
   * file's mapAt), `total` the file size (with `files`: the region holding them all).
   */
  mmap?: boolean;
  /** The size the file had when its index was read. */
  fileSize?: number;
  /** (file offset, length, destination offset) triples. */
  items: Float64Array;
  expect?: readonly NativeExpect[];
  /** Whole-file SHA-256s instead of `verify` + `expect`. */
  groups?: readonly NativeHashGroup[];
  /** Encrypted items: decrypted as they arrive (before hashing). */
  crypt?: NativeCrypt;
}

export interface NativeStats {
  allocMs: number;
  firstTensorMs: number;
  transferMs: number;
  bytes: number;
  pinnedBytes: number;
  deviceBytes: number;
  hostBytes: number;
  /** mmap: bytes of the file mapped (page-cache pages, not new memory). */
  mappedBytes: number;
  pieces: number;
}

export interface NativeCopyJob {
  /** Index into NativeCopySpec.inputs. */
  file: number;
  /** (offset, length) pairs, read and concatenated in order. */
  ranges: Float64Array;
  /** Byte-swap groups of this many bytes (2, 4 or 8); absent or 1: as-is. */
  swap?: number;
  /** Where the data goes in the output file; absent: hash only. */
  dst?: number;
  /** Bytes hashed before the data (a tensor header with zeroed hash values). */
  prefix?: Buffer;
  crc32: boolean;
  sha256: boolean;
}

export interface NativeCopySpec {
  inputs: string[];
  output?: string;
  threads: number;
  /** Per-lane chunk, a multiple of 4 KiB (default 1 MiB: measured fastest on the 2-vCPU reference machine). */
  chunkSize?: number;
  jobs: NativeCopyJob[];
  /** Encrypted jobs (one entry per job; each such job a single range): decrypted before hashing and writing. */
  crypt?: NativeCrypt;
  /** Or jobs to encrypt after hashing (file outputs): their MACs come back in NativeCopyResult.macs. */
  seal?: NativeSeal;
}

export interface NativeCopyResult {
  crc32: Uint32Array;
  /** 32 bytes per job. */
  sha256: Buffer;
  bytes: Float64Array;
  /** With `seal`: per job, its chunks' MACs (16 bytes each; null for a job not sealed). */
  macs?: (Buffer | null)[];
}

/** Where the native fetcher sends its requests, and what it sends (see native/src/fetch.h). */
export interface NativeFetchTarget {
  host: string;
  port: number;
  tls: boolean;
  /** Trusted certificate authorities (PEM), for TLS. */
  ca?: string;
  /** Request line and headers, each ending in CRLF, without Range and the closing blank line. */
  head: string;
  /** When set, every answer must carry this ETag. */
  etag?: string;
  /** An HTTP proxy: connections go to it and open a tunnel with `proxyConnect` (a CONNECT request) first. */
  proxyHost?: string;
  proxyPort?: number;
  proxyConnect?: string;
}

/** One object the native fetcher reads: how to reach it, and what it must be. */
export interface NativeFetchObject extends NativeFetchTarget {
  /** The URL, for messages (every error about the object names it). */
  name: string;
  /** The object's size: every Content-Range total must equal it. */
  size: number;
}

/**
 * Several objects in one run (the shards of a checkpoint, on one host or several): their
 * requests are interleaved so every object is read at once, and each connection keeps to
 * one endpoint (host, port, TLS and CA, proxy) while it has requests there.
 */
export interface NativeFetchObjects {
  objects: NativeFetchObject[];
  /** Each item's object (index into `objects`); all 0 when absent. */
  itemFiles?: Uint32Array;
}

/** A native fetch: of one object (its target at the top level) or of several (`objects`). */
export type NativeFetchSpec = NativeFetchRun & (NativeFetchObject | NativeFetchObjects);

/** What a native fetch does with the items, whichever objects they come from. */
export interface NativeFetchRun {
  /** A new destination on this device (-1: host memory), or null to only hash (or write `output`). */
  device: number | null;
  total: number;
  /** With device null: an existing file the items' bytes are written into, at their destination offsets. */
  output?: string;
  /** Host destinations: ask for transparent huge pages (default true). */
  hugePages?: boolean;
  /** (offset in its object, length, destination offset) triples. */
  items: Float64Array;
  /** One per item: which hashes to compute over prefix + data. */
  hashes?: { crc32: boolean; sha256: boolean; prefix?: Buffer }[];
  /** Or hash groups, checked natively (NativeHashGroup); not with `hashes`. */
  groups?: readonly NativeHashGroup[];
  /** Encrypted items: decrypted as their pieces arrive (before hashing, copying or writing). */
  crypt?: NativeCrypt;
  chunkSize: number;
  maxGap: number;
  connections: number;
  retries: number;
  baseDelayMs: number;
  timeoutMs: number;
  /** The low-speed limit: an attempt under this many bytes/s over speedTimeMs is retried (0: off). */
  speedLimit: number;
  speedTimeMs: number;
}

export interface NativeFetchStats {
  /** Per item, when hashing: CRC32, and 32 bytes of SHA-256 per item. */
  crc32: Uint32Array;
  sha256: Buffer;
  allocMs: number;
  firstTensorMs: number;
  transferMs: number;
  bytes: number;
  /** Body bytes received, the gaps between tensors and retried bytes included. */
  wireBytes: number;
  requests: number;
  retries: number;
  connections: number;
  pinnedBytes: number;
  deviceBytes: number;
  hostBytes: number;
  /** The first retries, as messages. */
  retryLog: string[];
}

declare const handleBrand: unique symbol;
export type NativeHandle = { readonly [handleBrand]: true };

/** What the simulated device holds (TENSORIZE_SIM_GPU; all zero on a real device). */
export interface SimCounts {
  allocations: number;
  registrations: number;
  streams: number;
  events: number;
  deviceBytes: number;
  copies: number;
  pageableCopies: number;
  /** Device-to-host reads (read()). */
  reads: number;
  poisoned: boolean;
}

export interface NativeBinding {
  info(): NativeInfo;
  simCounts(): SimCounts;
  /** Every error code the native side knows (native/src/errors.h), in order. */
  errorCodes: string[];
  start(spec: NativeSpec): { handle: NativeHandle; done: Promise<NativeStats> };
  /** Rejects with a TensorizeError that has `item` (the job's index) when a job failed. */
  copy(spec: NativeCopySpec): { handle: NativeHandle; done: Promise<NativeCopyResult> };
  /** Pull tensor data over HTTP(S) on native threads; the handle then works with read() and free(). */
  fetch(spec: NativeFetchSpec): { handle: NativeHandle; done: Promise<NativeFetchStats> };
  progress(h: NativeHandle): number;
  cancel(h: NativeHandle): void;
  read(h: NativeHandle, offset: number, length: number): Buffer;
  /**
   * Host loads: a Buffer over the loaded bytes themselves (no copy). It keeps the memory
   * (or the file mapping) alive until it is garbage-collected, even after free().
   */
  view(h: NativeHandle, offset: number, length: number): Buffer;
  /** A destination of `total` bytes on `device` (-1: host) that JS fills with write(). */
  alloc(spec: { device: number; total: number; hugePages?: boolean }): NativeHandle;
  /** Copy bytes into an alloc() destination. */
  write(h: NativeHandle, offset: number, data: Uint8Array): void;
  /** The same on a libuv thread; `data` must stay untouched until the promise settles. */
  writeAsync(h: NativeHandle, offset: number, data: Uint8Array): Promise<void>;
  /** A streaming CRC32 + SHA-256 that starts with `prefix`. */
  hasher(prefix?: Uint8Array): NativeHandle;
  /** Hash more bytes on a libuv thread; chain the calls for one hasher. */
  hashUpdate(h: NativeHandle, data: Uint8Array): Promise<void>;
  hashDigest(h: NativeHandle): { crc32: number; sha256: Buffer };
  free(h: NativeHandle): void;
  probeH2D(device: number, bytes: number, iterations: number): number;
  /** fdatasync, then posix_fadvise(DONTNEED) over the whole file: drop it from the page cache. */
  evictFile(path: string): void;
  /** How many of the file's pages are in the page cache (mmap + mincore; nothing is read). */
  residency(path: string): NativeResidency;
  /** Read the whole file with `threads` threads in `block`-byte preads, dropping the bytes. */
  readProbe(path: string, threads: number, block: number): Promise<{ bytes: number; seconds: number }>;
  /** Argon2id v1.3 (libsodium crypto_pwhash) of a passphrase into a 32-byte key, on a libuv thread. */
  deriveKey(passphrase: Uint8Array, salt: Uint8Array, opslimit: number, memlimit: number): Promise<Buffer>;
  /** Encrypt in place whole chunks of an item from byte `off` (XSalsa20-Poly1305 per chunk); their MACs. */
  seal(key: Uint8Array, nonce: Uint8Array, chunk: number, itemLen: number, off: number, data: Uint8Array): Buffer;
  /** Decrypt in place whole chunks of an item from byte `off`; E_DECRYPT when a MAC does not match. */
  open(key: Uint8Array, nonce: Uint8Array, chunk: number, macs: Uint8Array, itemLen: number, off: number, data: Uint8Array): void;
  /** Bytes from the system's CSPRNG (at most 1 MiB). */
  randomBytes(n: number): Buffer;
  /** Zero memory (sodium_memzero). */
  wipe(b: Uint8Array): void;
  /** The vendored libsodium's version. */
  sodiumVersion: string;
}

export interface NativeResidency {
  fileBytes: number;
  pageSize: number;
  pages: number;
  resident: number;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const ADDON_PATH = `${ROOT}native/build/Release/tensorize_native.node`;

let cached: NativeBinding | undefined;

/** Load the addon (once). Throws E_NATIVE_UNAVAILABLE with the fixes when it cannot. */
export function native(): NativeBinding {
  if (cached) return cached;
  const path = config().nativePath ?? ADDON_PATH;
  const hints = [
    'build it: npm run build:native (needs cmake >= 3.18 and a C++17 compiler: apt-get install cmake g++)',
    'or point TENSORIZE_NATIVE at a tensorize_native.node built for this platform',
  ];
  if (!existsSync(path)) {
    throw new TensorizeError('E_NATIVE_UNAVAILABLE', `the native loader is not built (${path} does not exist)`, { hints });
  }
  try {
    const b = createRequire(import.meta.url)(path) as NativeBinding & { init(cls: unknown): void };
    b.init(TensorizeError);
    cached = tracked(b);
    return cached;
  } catch (e) {
    throw new TensorizeError('E_NATIVE_UNAVAILABLE', `the native loader at ${path} cannot be loaded: ${(e as Error).message}`, {
      hints: ['rebuild it for this machine: npm run build:native', ...hints.slice(1)],
      cause: e,
    });
  }
}

// Work in flight, so that a signal can stop native threads before the process exits.
const live = new Map<NativeHandle, Promise<unknown>>();

function tracked(b: NativeBinding): NativeBinding {
  const track = <T>(r: { handle: NativeHandle; done: Promise<T> }) => {
    const settled = r.done.then(
      () => undefined,
      () => undefined,
    );
    live.set(r.handle, settled);
    void settled.then(() => live.delete(r.handle));
    return r;
  };
  return Object.assign(Object.create(b) as NativeBinding, {
    start: (spec: NativeSpec) => track(b.start(spec)),
    copy: (spec: NativeCopySpec) => track(b.copy(spec)),
    fetch: (spec: NativeFetchSpec) => track(b.fetch(spec)),
  });
}

/**
 * Cancel every native load or copy in flight and wait (at most `timeoutMs`) for their
 * threads to stop: called on SIGINT/SIGTERM before the process exits.
 */
export async function cancelAllNative(timeoutMs = 2000): Promise<void> {
  if (!cached || live.size === 0) return;
  for (const h of live.keys()) cached.cancel(h);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(live.values()), new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
  clearTimeout(timer);
}

/** Whether the addon can load, without throwing. */
export function nativeAvailable(): boolean {
  try {
    native();
    return true;
  } catch {
    return false;
  }
}
