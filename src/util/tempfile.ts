/**
 * Output files are written under a temporary name beside the target and renamed into
 * place only on success. Temporary files still registered when the process exits (an
 * error, Ctrl-C, a closed pipe) are removed, so no partial output is ever left behind.
 * Temporary directories (the synthetic model of `demo` and `bench`) are removed the same
 * way: synchronously in the 'exit' hook, whatever ends the process (process.exit() after a
 * signal or EPIPE, an uncaught exception, the end of the event loop). Only SIGKILL escapes.
 */
import { randomBytes } from 'node:crypto';
import { rmSync, unlinkSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';

const live = new Set<string>();
const liveDirs = new Set<string>();
let hooked = false;

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const p of live) {
      try {
        unlinkSync(p);
      } catch {
        /* already gone */
      }
    }
    for (const d of liveDirs) {
      try {
        // maxRetries: a write still in flight on a libuv thread may add a file as we go.
        rmSync(d, { recursive: true, force: true, maxRetries: 3, retryDelay: 10 });
      } catch {
        /* nothing more can be done while exiting */
      }
    }
  });
}

/** A new directory under the system's temporary directory ($TMPDIR), removed with everything in it by `remove()` or at exit. */
export class TempDir {
  private constructor(readonly path: string) {}

  /** A new directory `prefix`XXXXXX in `parent` (default: the system's temporary directory). */
  static async create(prefix: string, parent = tmpdir()): Promise<TempDir> {
    hook();
    const path = await mkdtemp(join(parent, prefix));
    liveDirs.add(path);
    return new TempDir(path);
  }

  async remove(): Promise<void> {
    await rm(this.path, { recursive: true, force: true, maxRetries: 3 });
    liveDirs.delete(this.path);
  }
}

export class TempOutput {
  private constructor(
    readonly target: string,
    readonly path: string,
  ) {}

  static async create(target: string): Promise<TempOutput> {
    await mkdir(dirname(target), { recursive: true });
    const path = join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
    hook();
    live.add(path);
    return new TempOutput(target, path);
  }

  async commit(): Promise<void> {
    await rename(this.path, this.target);
    live.delete(this.path);
  }

  async discard(): Promise<void> {
    live.delete(this.path);
    await unlink(this.path).catch(() => {});
  }
}
