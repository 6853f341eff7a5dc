/** Local files as a ByteSource, read with positioned reads (pread). */
import { open, type FileHandle } from 'node:fs/promises';
import { TensorizeError } from '../errors.js';
import type { ByteSource } from './source.js';

export class FileSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly fh: FileHandle,
  ) {}

  static async open(path: string): Promise<FileSource> {
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (e) {
      throw fsError(e, path);
    }
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      throw new TensorizeError('E_INPUT', `${path} is not a regular file`);
    }
    return new FileSource(path, st.size, fh);
  }

  get localPath(): string {
    return this.name;
  }

  get fd(): number {
    return this.fh.fd;
  }

  async read(offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const buf = into ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, offset + done);
      if (bytesRead === 0) {
        throw new TensorizeError(
          'E_IO',
          `${this.name}: short read at byte ${offset + done} (wanted ${length} bytes from ${offset}); the file was truncated or changed while reading`,
        );
      }
      done += bytesRead;
    }
    return buf;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

export function fsError(e: unknown, path: string): TensorizeError {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new TensorizeError('E_NOT_FOUND', `${path}: no such file or directory`, { cause: e });
  if (code === 'EACCES' || code === 'EPERM') return new TensorizeError('E_IO', `${path}: permission denied`, { cause: e });
  if (code === 'EISDIR') return new TensorizeError('E_INPUT', `${path} is a directory`, { cause: e });
  return new TensorizeError('E_IO', `${path}: ${(e as Error).message}`, { cause: e });
}
