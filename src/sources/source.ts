/**
 * A byte source that can be read at any offset. Every reader (the .tensors reader, the
 * safetensors input, later HTTP and S3) reads through this interface, by range.
 */
import { TensorizeError } from '../errors.js';
import type { NativeFetchTarget } from '../native/binding.js';
import type { RetryOptions } from './retry.js';

/** How the native fetcher can reach a network source (see engine/fetch.ts). */
export interface NetworkTarget {
  target: NativeFetchTarget;
  retry: RetryOptions & { timeoutMs?: number };
}

export interface ByteSource {
  /** What to call the source in messages (a path or URL). */
  readonly name: string;
  readonly size: number;
  /** The path, when the bytes are a local file (native engines then read it directly). */
  readonly localPath?: string;
  /** Read exactly `length` bytes at `offset` into `into` (or a new buffer); short reads throw E_IO. */
  read(offset: number, length: number, into?: Buffer): Promise<Buffer>;
  close(): Promise<void>;
  /** The SHA-256 (hex) its server states for the whole object, when it states one (HTTP: X-Linked-Etag). */
  readonly sha256?: string;
  /** HTTP(S) and S3 sources: the requests the native fetcher must send to read this object by range. */
  networkTarget?(): Promise<NetworkTarget>;
}

export function checkRange(src: { name: string; size: number }, offset: number, length: number, what: string): void {
  if (offset < 0 || length < 0 || offset + length > src.size) {
    throw new TensorizeError(
      'E_FORMAT',
      `${src.name}: ${what} at bytes ${offset}..${offset + length} runs past the end of the file (${src.size} bytes); the file is truncated or corrupt`,
    );
  }
}

/** `src` with its first bytes (`head`, already read) served from memory. */
export function withHead(src: ByteSource, head: Buffer): ByteSource {
  return {
    name: src.name,
    size: src.size,
    localPath: src.localPath,
    read: (offset, length, into) => {
      if (offset < 0 || offset + length > head.length) return src.read(offset, length, into);
      const buf = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
      head.copy(buf, 0, offset, offset + length);
      return Promise.resolve(buf);
    },
    close: () => src.close(),
  };
}
