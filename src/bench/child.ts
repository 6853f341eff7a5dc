/**
 * The child process of `tensorize bench`: reads one Task as JSON on stdin, runs it once and
 * prints one JSON line on stdout: {ok: true, sample} or {ok: false, error: {code, message, hints}}.
 * The CUDA context (when loading to a GPU) is created before the clock starts.
 */
import { TensorizeError } from '../errors.js';
import { measure, warmUp } from './measure.js';
import type { Task } from './types.js';

const chunks: Buffer[] = [];
for await (const c of process.stdin) chunks.push(c as Buffer);
try {
  const task = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Task;
  if (task.id !== 'read-parallel' && task.id !== 'read-sequential' && task.id !== 'download') warmUp(task.device);
  const base = process.memoryUsage().rss;
  const sample = await measure(task);
  sample.baseRssBytes = base;
  sample.peakRssBytes = process.resourceUsage().maxRSS * 1024;
  process.stdout.write(`${JSON.stringify({ ok: true, sample })}\n`);
} catch (e) {
  const err = e instanceof TensorizeError ? e : new TensorizeError('E_IO', (e as Error)?.message ?? String(e));
  process.stdout.write(`${JSON.stringify({ ok: false, error: { code: err.code, message: err.message, hints: err.hints } })}\n`);
  process.exitCode = 1;
}
