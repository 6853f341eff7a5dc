/**
 * Retries with exponential backoff for network byte sources. Only failures wrapped in
 * Retryable (connection resets, timeouts, 5xx, 429, 503 SlowDown, short bodies, transfers
 * under the low-speed limit) are retried; a TensorizeError (404, 403, an object that
 * changed) ends the read at once.
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
  /**
   * The low-speed limit, as curl's --speed-limit/--speed-time: a request that receives
   * fewer than this many bytes/s on average over `speedTimeMs` (the wait for the answer
   * included) is abandoned and retried (default 1024; 0: no limit).
   */
  speedLimit?: number;
  /** The low-speed window in milliseconds (default 30000). */
  speedTimeMs?: number;
}

/**
 * 1 KiB/s over 30 s: each request must bring 30 KiB every 30 s. The default 8 connections
 * stay above that on any link faster than 64 kbit/s, and 32 connections on a 512 kbit/s
 * link still have twice the margin, while a server trickling bytes is caught within a
 * minute. The window equals the idle timeout, so a silent server fails after the same time.
 */
export const DEFAULT_SPEED_LIMIT = 1024;
export const DEFAULT_SPEED_TIME_MS = 30_000;

export class Retryable extends Error {}

/** A request abandoned under the low-speed limit (retried like other faults). */
export class TooSlow extends Retryable {}

export const TOO_SLOW_HINT = 'the server or the link is slower than the low-speed limit: lower --speed-limit or raise --speed-time (--speed-limit 0 turns it off)';

/**
 * The low-speed limit for one attempt: `signal` aborts (with `tripped`, a TooSlow, as its
 * reason) once a window of speedTimeMs brought fewer than speedLimit bytes/s by
 * `progress()`. Windows are consecutive, from the attempt's start. A timer that ran late
 * (this event loop was busy, so arrived bytes may not have been counted yet) starts a new
 * window instead of judging the old one. Call stop() when the attempt ends.
 */
export class SpeedWatch {
  private readonly ctrl = new AbortController();
  readonly signal: AbortSignal = this.ctrl.signal;
  tripped?: TooSlow;
  private timer?: NodeJS.Timeout;

  constructor(opts: RetryOptions, progress: () => number, where: () => string) {
    const limit = opts.speedLimit ?? DEFAULT_SPEED_LIMIT;
    const windowMs = opts.speedTimeMs ?? DEFAULT_SPEED_TIME_MS;
    if (!(limit > 0) || !(windowMs > 0)) return;
    const tick = Math.min(1000, Math.max(25, windowMs / 4));
    let last = performance.now();
    let start = last;
    let from = progress();
    this.timer = setInterval(() => {
      const now = performance.now();
      const late = now - last > 2 * tick + 250;
      last = now;
      const ms = now - start;
      const n = progress() - from;
      if (late || (ms >= windowMs && n >= (limit * ms) / 1000)) {
        start = now;
        from += n;
        return;
      }
      if (ms < windowMs) return;
      this.tripped = new TooSlow(`too slow: under ${limit} bytes/s for ${windowMs / 1000} s (${n} bytes in ${(ms / 1000).toFixed(1)} s)${where()}`);
      this.stop();
      this.ctrl.abort(this.tripped);
    }, tick);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Run `attempt` under the limit: a failure after the limit tripped is the TooSlow. */
  static async run<T>(opts: RetryOptions, progress: () => number, where: () => string, attempt: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const watch = new SpeedWatch(opts, progress, where);
    try {
      return await attempt(watch.signal);
    } catch (e) {
      throw watch.tripped ?? e;
    } finally {
      watch.stop();
    }
  }
}

export async function retrying<T>(what: string, opts: RetryOptions, attempt: () => Promise<T>): Promise<T> {
  const retries = opts.retries ?? 5;
  for (let n = 0; ; n++) {
    try {
      return await attempt();
    } catch (e) {
      if (!(e instanceof Retryable)) throw e;
      if (n >= retries) throw new TensorizeError('E_IO', `${what}: giving up after ${n + 1} attempts: ${e.message}`, { hints: [e instanceof TooSlow ? TOO_SLOW_HINT : 'check the network and the server, then run again'] });
      const delay = (opts.baseDelayMs ?? 200) * 2 ** n * (0.5 + Math.random());
      opts.onRetry?.(`${what}: ${e.message}; retry ${n + 1} of ${retries} in ${Math.round(delay)} ms`);
      await sleep(delay);
    }
  }
}

/**
 * Copy a response body into `buf` from `at.got` on, advancing `at.got` as bytes arrive, so
 * that after a mid-body failure (a Retryable) the next attempt asks only for the rest. A
 * body longer than `buf` is an error; a shorter one is retried. `signal` (the attempt's
 * SpeedWatch) destroys the body when it aborts.
 */
export async function receiveBody(body: AsyncIterable<Uint8Array>, buf: Buffer, at: { got: number }, name: string, destroy?: () => void, signal?: AbortSignal): Promise<void> {
  const onAbort = () => destroy?.();
  if (signal?.aborted) onAbort();
  signal?.addEventListener('abort', onAbort);
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
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  if (at.got < buf.length) throw new Retryable(`short body: ${at.got} of ${buf.length} bytes`);
}

/**
 * The frame of a ranged read from a network source: bounds check, then `attempt(from, to)`
 * under retrying(), where each attempt fills `buf` from `at.got` (see receiveBody) and a
 * retry asks only for the bytes still missing. Each attempt runs under the low-speed limit
 * (SpeedWatch): it must abandon its request when `signal` aborts.
 */
export async function rangedRead(
  src: { name: string; size: number },
  offset: number,
  length: number,
  into: Buffer | undefined,
  opts: RetryOptions,
  attempt: (from: number, to: number, buf: Buffer, at: { got: number }, signal: AbortSignal) => Promise<void>,
): Promise<Buffer> {
  const buf = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
  if (length === 0) return buf;
  if (offset < 0 || offset + length > src.size) {
    throw new TensorizeError('E_IO', `${src.name}: read of bytes ${offset}..${offset + length} past the end of the object (${src.size} bytes)`);
  }
  const at = { got: 0 };
  await retrying(`${src.name}: bytes ${offset}..${offset + length}`, opts, () =>
    SpeedWatch.run(opts, () => at.got, () => `, after ${at.got} of ${length} bytes`, (signal) => attempt(offset + at.got, offset + length - 1, buf, at, signal)),
  );
  return buf;
}
