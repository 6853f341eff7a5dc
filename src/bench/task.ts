/**
 * One bench task in a fresh Node process (./child.ts): its own peak RSS, no heap or CUDA
 * state shared with the runs before it. One runs at a time; `stopTask()` kills it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { TensorizeError } from '../errors.js';
import type { SourceOptions } from '../sources/open.js';
import type { Sample, Task } from './types.js';

/** The child entry point: dist/bench/child.js (also when this module runs from src/ under a TypeScript loader). */
function childScript(): string {
  for (const rel of ['./child.js', '../../dist/bench/child.js']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new TensorizeError('E_IO', 'the benchmark child script (dist/bench/child.js) is missing', { hints: ['build the CLI: npm run build'] });
}

let running: ChildProcess | undefined;
let exitHooked = false;

/** Kill the task in flight, if any (its runTask() then fails with E_INTERRUPTED). */
export function stopTask(): void {
  running?.kill('SIGKILL');
}

/** What a child process printed, and how it ended. */
export interface ChildResult {
  /** The exit code, or the signal that ended it. */
  status: number | string;
  out: string;
  err: string;
  /** Killed by stopTask(). */
  killed: boolean;
}

/**
 * Run `command` in a fresh process, one at a time (stopTask() kills it, and so does this
 * process's exit), with `input` on its stdin; resolves when it has ended.
 */
export async function runChild(command: string, args: readonly string[], input: string, env?: NodeJS.ProcessEnv): Promise<ChildResult> {
  if (!exitHooked) {
    // Whatever ends this process (an error, a closed pipe, a signal) ends the run in flight too.
    exitHooked = true;
    process.on('exit', () => running?.kill('SIGKILL'));
  }
  const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], ...(env ? { env } : {}) });
  running = child;
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  child.stdin.on('error', () => {}); // a child that exits without reading its input
  child.stdin.end(input);
  const status = await new Promise<number | string>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve(code ?? signal ?? -1));
  }).finally(() => {
    if (running === child) running = undefined;
  });
  return { status, out, err, killed: child.killed };
}

/** Run one task in a fresh Node process and return its sample. */
export async function runTask(task: Task): Promise<Sample> {
  const { status, out, err, killed } = await runChild(process.execPath, [childScript()], JSON.stringify(task));
  const last = out.trim().split('\n').pop() ?? '';
  let doc: { ok: boolean; sample?: Sample; error?: { code: string; message: string; hints?: string[] } } | undefined;
  try {
    doc = JSON.parse(last) as typeof doc;
  } catch {
    doc = undefined;
  }
  if (doc?.ok && doc.sample) return doc.sample;
  if (killed) throw new TensorizeError('E_INTERRUPTED', 'interrupted');
  if (doc?.error) throw new TensorizeError(doc.error.code as TensorizeError['code'], doc.error.message, { hints: doc.error.hints });
  throw new TensorizeError('E_IO', `the benchmark process for ${task.id} ended with ${typeof status === 'number' ? `exit code ${status}` : status}${err.trim() ? `: ${err.trim().split('\n').slice(-5).join(' / ')}` : ''}`);
}

/** SourceOptions without the callbacks, with the CA as text: what a child process can be handed. */
export function plainSourceOptions(s: SourceOptions | undefined): SourceOptions | undefined {
  if (!s) return undefined;
  const { onRetry: _r, onWarning: _w, ...http } = s.http ?? {};
  const { onRetry: _s, ...s3 } = s.s3 ?? {};
  return { http: { ...http, ...(http.ca !== undefined ? { ca: http.ca.toString() } : {}) }, s3 };
}
