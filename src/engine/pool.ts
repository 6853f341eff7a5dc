/**
 * A small pool of worker threads that run StreamJobs in parallel: hashing is CPU-bound
 * (SHA-256 runs at about 1.5 GB/s per core), so tensors are spread over cores.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { TensorizeError, type ErrorCode } from '../errors.js';
import type { JobResult, StreamJob } from './job.js';

export const DEFAULT_CHUNK_SIZE = 1024 * 1024;

export function defaultThreads(): number {
  return Math.max(1, Math.min(availableParallelism(), 8));
}

function workerUrl(): URL {
  // Under the test runner the sources are TypeScript; built, they are JavaScript.
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  return new URL(`./worker${ext}`, import.meta.url);
}

interface Pending {
  job: StreamJob;
  resolve: (r: JobResult) => void;
  reject: (e: Error) => void;
}

export class StreamPool {
  private readonly idle: Worker[] = [];
  private readonly all: Worker[] = [];
  private readonly queue: Pending[] = [];
  private readonly running = new Map<Worker, Pending>();
  private failed?: Error;

  constructor(
    private readonly threads: number = defaultThreads(),
    private readonly onProgress: (bytes: number) => void = () => {},
    private readonly chunkSize: number = DEFAULT_CHUNK_SIZE,
  ) {}

  run(job: StreamJob): Promise<JobResult> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      this.pump();
    });
  }

  private spawn(): Worker {
    const w = new Worker(workerUrl(), { workerData: { chunkSize: this.chunkSize } });
    w.on('message', (m: { progress?: number; result?: JobResult; error?: { code: ErrorCode; message: string } }) => {
      if (m.progress) this.onProgress(m.progress);
      const p = this.running.get(w);
      if (!p || (!m.result && !m.error)) return;
      this.running.delete(w);
      if (m.result) p.resolve(m.result);
      else p.reject(new TensorizeError(m.error!.code, m.error!.message));
      this.idle.push(w);
      this.pump();
    });
    w.on('error', (e) => this.fail(e));
    w.on('exit', (code) => {
      if (code !== 0 || this.running.has(w)) this.fail(new Error(`worker thread exited with code ${code}`));
    });
    this.all.push(w);
    return w;
  }

  private fail(e: Error): void {
    this.failed ??= e;
    for (const p of this.running.values()) p.reject(e);
    this.running.clear();
    for (const p of this.queue.splice(0)) p.reject(e);
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const w = this.idle.pop() ?? (this.all.length < this.threads ? this.spawn() : undefined);
      if (!w) return;
      const p = this.queue.shift()!;
      this.running.set(w, p);
      w.postMessage({ job: p.job });
    }
  }

  /** Stop all workers; pending jobs are rejected. */
  async close(): Promise<void> {
    this.fail(new TensorizeError('E_INTERRUPTED', 'stream pool closed'));
    await Promise.all(this.all.map((w) => w.terminate()));
    this.all.length = 0;
    this.idle.length = 0;
  }
}
