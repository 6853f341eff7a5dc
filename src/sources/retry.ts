/**
 * Retries with exponential backoff for network byte sources. Only failures wrapped in
 * Retryable (connection resets, timeouts, 5xx, 429, 503 SlowDown, short bodies) are
 * retried; a TensorizeError (404, 403, an object that changed) ends the read at once.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { TensorizeError } from '../errors.js';

export interface RetryOptions {
  /** Attempts after the first (default 5). */
  retries?: number;
  /** First backoff in milliseconds, doubled each attempt, with jitter (default 200). */
  baseDelayMs?: number;
  /** Told about each retry (for --verbose logs and tests). */
  onRetry?: (message: string) => void;
}

export class Retryable extends Error {}

export async function retrying<T>(what: string, opts: RetryOptions, attempt: () => Promise<T>): Promise<T> {
  const retries = opts.retries ?? 5;
  for (let n = 0; ; n++) {
    try {
      return await attempt();
    } catch (e) {
      if (!(e instanceof Retryable)) throw e;
      if (n >= retries) throw new TensorizeError('E_IO', `${what}: giving up after ${n + 1} attempts: ${e.message}`, { hints: ['check the network and the server, then run again'] });
      const delay = (opts.baseDelayMs ?? 200) * 2 ** n * (0.5 + Math.random());
      opts.onRetry?.(`${what}: ${e.message}; retry ${n + 1} of ${retries} in ${Math.round(delay)} ms`);
      await sleep(delay);
    }
  }
}

/**
 * Copy a response body into `buf` from `at.got` on, advancing `at.got` as bytes arrive, so
 * that after a mid-body failure (a Retryable) the next attempt asks only for the rest. A
 * body longer than `buf` is an error; a shorter one is retried.
 */
export async function receiveBody(body: AsyncIterable<Uint8Array>, buf: Buffer, at: { got: number }, name: string, destroy?: () => void): Promise<void> {
  try {
    for await (const chunk of body) {
      if (at.got + chunk.length > buf.length) throw new TensorizeError('E_IO', `${name}: the server sent more bytes than the range it announced`);
      buf.set(chunk, at.got);
      at.got += chunk.length;
    }
  } catch (e) {
    destroy?.();
    if (e instanceof TensorizeError) throw e;
    throw new Retryable(`connection lost after ${at.got} of ${buf.length} bytes: ${(e as Error).message}`);
  }
  if (at.got < buf.length) throw new Retryable(`short body: ${at.got} of ${buf.length} bytes`);
}

/**
 * The frame of a ranged read from a network source: bounds check, then `attempt(from, to)`
 * under retrying(), where each attempt fills `buf` from `at.got` (see receiveBody) and a
 * retry asks only for the bytes still missing.
 */
export async function rangedRead(
  src: { name: string; size: number },
  offset: number,
  length: number,
  into: Buffer | undefined,
  opts: RetryOptions,
  attempt: (from: number, to: number, buf: Buffer, at: { got: number }) => Promise<void>,
): Promise<Buffer> {
  const buf = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
  if (length === 0) return buf;
  if (offset < 0 || offset + length > src.size) {
    throw new TensorizeError('E_IO', `${src.name}: read of bytes ${offset}..${offset + length} past the end of the object (${src.size} bytes)`);
  }
  const at = { got: 0 };
  await retrying(`${src.name}: bytes ${offset}..${offset + length}`, opts, () => attempt(offset + at.got, offset + length - 1, buf, at));
  return buf;
}
