/** Worker-thread entry: runs StreamJobs posted by the pool, reporting bytes as it goes. */
import { parentPort, workerData } from 'node:worker_threads';
import { FdCache, runJob, type StreamJob } from './job.js';
import { TensorizeError } from '../errors.js';

const port = parentPort!;
const fds = new FdCache();
const buf = Buffer.allocUnsafe((workerData as { chunkSize: number }).chunkSize);
const REPORT_EVERY = 32 * 1024 * 1024;

port.on('message', (msg: { job?: StreamJob; close?: boolean }) => {
  if (msg.close) {
    fds.closeAll();
    port.close();
    return;
  }
  const job = msg.job!;
  let pending = 0;
  try {
    const res = runJob(job, fds, buf, (n) => {
      pending += n;
      if (pending >= REPORT_EVERY) {
        port.postMessage({ progress: pending });
        pending = 0;
      }
    });
    if (pending) port.postMessage({ progress: pending });
    port.postMessage({ result: res });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    port.postMessage({
      error: {
        id: job.id,
        code: err instanceof TensorizeError ? err.code : 'E_IO',
        message: err instanceof TensorizeError ? err.message : `${err.path ?? job.src.path}: ${err.message}`,
      },
    });
  }
});
