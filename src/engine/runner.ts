/**
 * Runs StreamJobs (copy + CRC32 + SHA-256) on the fastest engine available. Jobs handed to
 * `run()` in the same tick form one batch. Plain range jobs go to the native copy engine
 * (two jobs per thread hashed with interleaved SHA-NI, PCLMUL CRC32, L2-sized chunks);
 * strided views, and everything when the addon is missing or TENSORIZE_ENGINE=js, go to the
 * pool of JavaScript worker threads. Results and failures are per job either way.
 *
 * Encrypted jobs (StreamJob.crypt, .seal) run on the native engine only: the pool refuses
 * them with E_UNSUPPORTED (it would need the addon in every worker thread).
 */
import { config } from '../config.js';
import { TensorizeError } from '../errors.js';
import { native, nativeAvailable, type NativeCopyJob, type NativeCopySpec, type NativeHandle } from '../native/binding.js';
import type { JobResult, StreamJob } from './job.js';
import { jsEncrypted } from './encrypted.js';
import { defaultThreads, StreamPool } from './pool.js';
import { pollProgress } from './progress.js';

export type Engine = 'native' | 'js';

/** The engine plain jobs run on here: TENSORIZE_ENGINE=js|native, else native when the addon loads. */
export function chooseEngine(): Engine {
  const want = config().engine;
  if (want === 'js') return 'js';
  if (want === 'native') {
    native(); // throws E_NATIVE_UNAVAILABLE with the fixes
    return 'native';
  }
  return nativeAvailable() ? 'native' : 'js';
}

interface Pending {
  job: StreamJob;
  resolve: (r: JobResult) => void;
  reject: (e: unknown) => void;
}

export class JobRunner {
  readonly engine: Engine;
  private pool?: StreamPool;
  private batch: Pending[] = [];
  private readonly inFlight = new Set<{ handle: NativeHandle; done: Promise<unknown> }>();
  private closed = false;

  constructor(
    private readonly threads: number = defaultThreads(),
    private readonly onProgress: (bytes: number) => void = () => {},
    private readonly chunkSize?: number,
  ) {
    this.engine = chooseEngine();
  }

  run(job: StreamJob): Promise<JobResult> {
    if (this.closed) return Promise.reject(new TensorizeError('E_INTERRUPTED', 'job runner closed'));
    if (this.engine === 'js' || job.src.view) {
      if (job.crypt || job.seal) return Promise.reject(jsEncrypted(job.src.view !== undefined));
      this.pool ??= new StreamPool(this.threads, this.onProgress, this.chunkSize);
      return this.pool.run(job);
    }
    return new Promise((resolve, reject) => {
      if (this.batch.length === 0) queueMicrotask(() => this.flush());
      this.batch.push({ job, resolve, reject });
    });
  }

  private flush(): void {
    const batch = this.batch;
    this.batch = [];
    if (batch.length === 0) return;
    if (this.closed) {
      for (const p of batch) p.reject(new TensorizeError('E_INTERRUPTED', 'job runner closed'));
      return;
    }
    try {
      this.launch(batch);
    } catch (e) {
      for (const p of batch) p.reject(e);
    }
  }

  private launch(batch: Pending[]): void {
    const inputs: string[] = [];
    const fileIndex = new Map<string, number>();
    const outputs = new Set(batch.flatMap((p) => (p.job.dst ? [p.job.dst.path] : [])));
    if (outputs.size > 1) throw new TensorizeError('E_NATIVE', 'one batch writes one output file');
    const jobs: NativeCopyJob[] = batch.map(({ job }) => {
      let file = fileIndex.get(job.src.path);
      if (file === undefined) {
        file = inputs.push(job.src.path) - 1;
        fileIndex.set(job.src.path, file);
      }
      const ranges = new Float64Array(job.src.ranges.length * 2);
      job.src.ranges.forEach((r, i) => {
        ranges[2 * i] = r.offset;
        ranges[2 * i + 1] = r.length;
      });
      const prefix = job.prefix?.length ? Buffer.concat(job.prefix) : undefined;
      return { file, ranges, swap: job.src.swap ?? 1, dst: job.dst?.offset, prefix, crc32: job.crc32, sha256: job.sha256 };
    });
    const bin = native();
    const run = bin.copy({ inputs, output: [...outputs][0], threads: this.threads, chunkSize: this.chunkSize, jobs, ...cryptOf(batch.map((p) => p.job)) });
    this.inFlight.add(run);
    const stop = pollProgress(() => bin.progress(run.handle), this.onProgress);
    run.done.then(
      (r) => {
        stop();
        this.inFlight.delete(run);
        batch.forEach((p, i) => {
          const res: JobResult = { id: p.job.id, bytes: r.bytes[i]! };
          if (p.job.crc32) res.crc32 = r.crc32[i]!;
          if (p.job.sha256) res.sha256 = new Uint8Array(r.sha256.subarray(32 * i, 32 * i + 32));
          const macs = r.macs?.[i];
          if (macs) res.macs = macs;
          p.resolve(res);
        });
      },
      (e: unknown) => {
        stop();
        this.inFlight.delete(run);
        // The job that failed first, so that Promise.all reports it with its tensor name.
        const at = (e as { item?: number }).item;
        if (at !== undefined && batch[at]) batch[at].reject(e);
        for (const p of batch) p.reject(e);
      },
    );
  }

  /** Stop everything; pending jobs are rejected. */
  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.batch.splice(0)) p.reject(new TensorizeError('E_INTERRUPTED', 'job runner closed'));
    const runs = [...this.inFlight];
    if (runs.length) {
      const bin = native();
      for (const r of runs) bin.cancel(r.handle);
      await Promise.all(runs.map((r) => r.done.catch(() => {})));
    }
    await this.pool?.close();
  }
}

/** A batch's crypt and seal plans for the native engine: one entry per job (in batch order), each key given once. */
function cryptOf(jobs: readonly StreamJob[]): Pick<NativeCopySpec, 'crypt' | 'seal'> {
  const plan = <T extends { key: Buffer }>(items: readonly (T | undefined)[]) => {
    const keys = new Map<Buffer, number>();
    const at = (k: Buffer) => keys.get(k) ?? keys.set(k, keys.size).size - 1;
    const out = items.map((x) => (x ? { ...x, key: at(x.key) } : null));
    return { keys: [...keys.keys()], items: out };
  };
  return {
    ...(jobs.some((j) => j.crypt) ? { crypt: plan(jobs.map((j) => j.crypt)) } : {}),
    ...(jobs.some((j) => j.seal) ? { seal: plan(jobs.map((j) => j.seal)) } : {}),
  };
}
