/**
 * An in-process StreamPool (same interface, same runJob) for tests that run many small
 * jobs: a real worker thread costs about 2 s to start under the TypeScript loader. The
 * real worker pool is exercised by the CLI tests and the "real worker pool" subtests.
 * Use with t.mockImport(module, POOL_MOCK).
 */
import { FdCache, runJob, type JobResult, type StreamJob } from '../../src/engine/job.js';

export class InProcessPool {
  private readonly fds = new FdCache();
  private readonly buf = Buffer.alloc(1 << 20);
  constructor(
    _threads?: number,
    private readonly onProgress: (n: number) => void = () => {},
  ) {}
  async run(job: StreamJob): Promise<JobResult> {
    return runJob(job, this.fds, this.buf, this.onProgress);
  }
  async close(): Promise<void> {
    this.fds.closeAll();
  }
}

export const POOL_MOCK = { '../src/engine/pool.js': { StreamPool: InProcessPool } };
