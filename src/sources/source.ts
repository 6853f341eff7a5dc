/**
 * A byte source that can be read at any offset. Every reader (the .tensors reader, the
 * safetensors input, later HTTP and S3) reads through this interface, by range.
 */
import { TensorizeError } from '../errors.js';

export interface ByteSource {
  /** What to call the source in messages (a path or URL). */
  readonly name: string;
  readonly size: number;
  /** The path, when the bytes are a local file (native engines then read it directly). */
  readonly localPath?: string;
  /** Read exactly `length` bytes at `offset` into `into` (or a new buffer); short reads throw E_IO. */
  read(offset: number, length: number, into?: Buffer): Promise<Buffer>;
  close(): Promise<void>;
}

export function checkRange(src: { name: string; size: number }, offset: number, length: number, what: string): void {
  if (offset < 0 || length < 0 || offset + length > src.size) {
    throw new TensorizeError(
      'E_FORMAT',
      `${src.name}: ${what} at bytes ${offset}..${offset + length} runs past the end of the file (${src.size} bytes); the file is truncated or corrupt`,
    );
  }
}
