/**
 * The native fetcher on several objects in one run (fetchNativeMany: the shards of a
 * checkpoint), against real HTTP servers on loopback: three files, two of them on one
 * server and one on another, their jobs interleaved, fetched into one host destination;
 * every byte and every hash is checked, and an object that changes is named in the error.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fetchedHashes, fetchNativeMany, type FetchJob, type FetchSource } from '../src/engine/fetch.js';
import { native, nativeAvailable } from '../src/native/binding.js';
import { HttpSource, type HttpOptions } from '../src/sources/http.js';
import { bytes } from './helpers/util.js';
import { startHttpServer } from './helpers/servers.js';

const skip = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';
const FAST: HttpOptions = { retries: 3, baseDelayMs: 1 };
const FILES = [
  ['a.bin', 300_001],
  ['b.bin', 170_003],
  ['c.bin', 50_021],
] as const;

/** Jobs over every file, in random-looking order: ranges of each with gaps, some empty. */
function jobsOver(sizes: readonly number[]): (FetchJob & { file: number })[] {
  const jobs: (FetchJob & { file: number })[] = [];
  let dst = 0;
  sizes.forEach((size, file) => {
    for (let offset = 17 * (file + 1), k = 0; ; k++) {
      const length = k % 7 === 3 ? 0 : 1000 + ((k * 7919 + file * 104729) % 20_000);
      if (offset + length > size) break;
      jobs.push({ file, offset, length, dst, crc32: false, sha256: k % 2 === 0, prefix: k % 4 === 0 ? [Buffer.from(`p${k}`)] : undefined });
      dst += Math.ceil(length / 256) * 256;
      offset += length + (k % 3) * 500;
    }
  });
  // Interleave the files' jobs (a fixed shuffle).
  return jobs.map((j, i) => ({ j, key: (i * 2654435761) % 1000003 })).sort((x, y) => x.key - y.key).map((x) => x.j);
}

t.test('several objects on two servers into one host destination: every byte from its own object, every hash', { skip }, async (t) => {
  const dir = t.testdir();
  const data = FILES.map(([name, size], i) => {
    const b = bytes(size, i + 1);
    writeFileSync(join(dir, name), b);
    return b;
  });
  const one = await startHttpServer(dir);
  const two = await startHttpServer(dir);
  t.teardown(() => Promise.all([one.close(), two.close()]));
  // a and b on the first server, c on the second (another endpoint).
  const urls = [`${one.url}/a.bin`, `${one.url}/b.bin`, `${two.url}/c.bin`];
  const objects: FetchSource[] = [];
  for (const url of urls) {
    const src = await HttpSource.open(url, FAST);
    objects.push({ src, net: await src.networkTarget!() });
    await src.close();
  }
  const jobs = jobsOver(FILES.map(([, size]) => size));
  t.ok(new Set(jobs.slice(0, 6).map((j) => j.file)).size > 1, 'the jobs of the objects are interleaved');
  const total = jobs.reduce((n, j) => Math.max(n, j.dst + j.length), 0);
  const bin = native();
  for (const [chunkSize, concurrency] of [
    [4096, 4],
    [65536, 2],
    [1 << 20, 1],
  ] as const) {
    const before = [one.requests.length, two.requests.length];
    const { handle, stats } = await fetchNativeMany(objects, jobs, { device: -1, total, chunkSize, concurrency });
    try {
      const wrong = jobs.filter((j) => !bin.read(handle, j.dst, j.length).equals(data[j.file]!.subarray(j.offset, j.offset + j.length)));
      t.same(wrong, [], `chunk ${chunkSize}, ${concurrency} connections: every job's bytes from its own object`);
      const badHash = jobs.filter((j, k) => {
        if (!j.sha256) return false;
        const h = createHash('sha256');
        for (const p of j.prefix ?? []) h.update(p);
        h.update(data[j.file]!.subarray(j.offset, j.offset + j.length));
        return !Buffer.from(fetchedHashes(stats, k).sha256).equals(h.digest());
      });
      t.same(badHash, [], 'every SHA-256 (prefix, then the data of its own object)');
      t.equal(stats.bytes, jobs.reduce((n, j) => n + j.length, 0));
      t.ok(one.requests.length > before[0]! && two.requests.length > before[1]!, 'both servers were asked');
    } finally {
      bin.free(handle);
    }
  }

  // Hash only (no destination): the same hashes.
  const { stats } = await fetchNativeMany(objects, jobs, { chunkSize: 8192, concurrency: 3 });
  const k = jobs.findIndex((j) => j.sha256 && j.file === 2);
  const j = jobs[k]!;
  const want = createHash('sha256');
  for (const p of j.prefix ?? []) want.update(p);
  want.update(data[2]!.subarray(j.offset, j.offset + j.length));
  t.same(Buffer.from(fetchedHashes(stats, k).sha256), want.digest(), 'hash only: a job of the second server\'s object');

  // b.bin changes on the server after it was opened: its If-Match fails (412), and the
  // error names b.bin, not the others.
  appendFileSync(join(dir, 'b.bin'), 'more');
  await t.rejects(fetchNativeMany(objects, jobs, { device: -1, total, chunkSize: 16384, concurrency: 3 }), {
    code: 'E_FILE_CHANGED',
    message: new RegExp(`^${urls[1]!.replace(/[.]/g, '\\.')}: the object changed while it was being read`),
  });

  // A job that names no object is refused before anything is sent.
  const before = one.requests.length + two.requests.length;
  await t.rejects(fetchNativeMany(objects, [{ ...jobs[0]!, file: 3 }], { device: -1, total }), { code: 'E_USAGE', message: /not in the list/ });
  t.equal(one.requests.length + two.requests.length, before, 'nothing was sent');
});
