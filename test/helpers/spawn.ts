/**
 * The CLI as a live process, for tests of how it ends: signals, a reader that goes away
 * (stdout or stderr closed before the CLI writes: EPIPE), its child processes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { BIN } from './util.js';

export interface Live {
  child: ChildProcess;
  pid: number;
  stdout: () => string;
  stderr: () => string;
  /** Exit code and signal, once it has ended. */
  ended: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Start `node bin/tensorize.js ...args`. `closeStdout` / `closeStderr`: the reading end of
 * that pipe is closed at once, before the CLI has started, so its first write there fails
 * with EPIPE (what `tensorize ... | head -c 0` does).
 */
export function startCli(args: string[], opts: { env?: Record<string, string | undefined>; closeStdout?: boolean; closeStderr?: boolean } = {}): Live {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  if (opts.closeStdout) child.stdout!.destroy();
  else child.stdout!.on('data', (d) => (out += d));
  if (opts.closeStderr) child.stderr!.destroy();
  else child.stderr!.on('data', (d) => (err += d));
  const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
  return { child, pid: child.pid!, stdout: () => out, stderr: () => err, ended };
}

/** Poll `cond` every 5 ms until it holds (true) or `timeoutMs` passes (false). Not a timing assertion: a bound on waiting. */
export async function until(cond: () => boolean, timeoutMs = 120_000): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 5));
  }
  return cond();
}

/** Live (not zombie) processes whose parent is `pid`, from /proc. */
export function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so split after the last ')'.
      const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(ppid) === pid && state !== 'Z') out.push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

/** Whether process `pid` still runs (a zombie does not count). */
export function running(pid: number): boolean {
  if (!existsSync(`/proc/${pid}`)) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
