/**
 * Output files are written under a temporary name beside the target and renamed into
 * place only on success. Temporary files still registered when the process exits (an
 * error, Ctrl-C) are removed, so no partial output is ever left behind.
 */
import { randomBytes } from 'node:crypto';
import { unlinkSync } from 'node:fs';
import { mkdir, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const live = new Set<string>();
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
  });
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
