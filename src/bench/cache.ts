/** The page cache, for benchmarks and for anyone who wants cold-cache figures of their own. */
import { native } from '../native/binding.js';

/**
 * Drop a file from the page cache (fdatasync, then posix_fadvise DONTNEED; no root
 * needed) and return the fraction of its pages still cached afterwards: near 0 when it
 * worked, 1 on tmpfs, whose pages cannot be dropped.
 */
export function evictFromPageCache(path: string): number {
  native().evictFile(path);
  return pageCacheResidency(path);
}

/** The fraction of a file's pages in the page cache (mmap + mincore; nothing is read). 0 for an empty file. */
export function pageCacheResidency(paths: string | readonly string[]): number {
  let pages = 0;
  let resident = 0;
  for (const p of typeof paths === 'string' ? [paths] : paths) {
    const r = native().residency(p);
    pages += r.pages;
    resident += r.resident;
  }
  return pages ? resident / pages : 0;
}
