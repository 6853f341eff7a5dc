/**
 * Whole-file SHA-256s ("hash groups", PackedJobs.groups) checked while the data streams:
 * two shard files, each hashed as its first bytes (the prefix) then its tensors in file
 * order, loaded into host memory by transfer() with several sources, from local files (the
 * native loader, --plaid and not) and over HTTP (the native fetcher); a good hash loads
 * every byte, a wrong one is E_HASH_MISMATCH naming the shard with both SHA-256s.
 */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { transfer, type PackedJobs } from '../src/engine/transfer.js';
import { TensorizeError } from '../src/errors.js';
import { native, nativeAvailable } from '../src/native/binding.js';
import { FileSource } from '../src/sources/file.js';
import { HttpSource } from '../src/sources/http.js';
import type { ByteSource } from '../src/sources/source.js';
import { bytes } from './helpers/util.js';
import { startHttpServer } from './helpers/servers.js';

const skip = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';
const SHARDS = [
  { name: 'a.safetensors', size: 300_001, prefix: 120 },
  { name: 'b.safetensors', size: 170_003, prefix: 77 },
] as const;

/** Each shard's tensors tile it after its prefix; the shards' jobs interleaved, each shard's in file order. */
function plan(data: Buffer[], names: string[], sha: Buffer[] = data.map((d) => createHash('sha256').update(d).digest())): { jobs: PackedJobs; total: number } {
  const perShard = SHARDS.map((s, f) => {
    const out: { file: number; offset: number; length: number }[] = [];
    for (let offset = s.prefix, k = 0; offset < s.size; k++) {
      const length = Math.min(s.size - offset, k % 5 === 2 ? 0 : 1 + ((k * 7919 + f * 104729) % 30_000));
      out.push({ file: f, offset, length });
      offset += length;
    }
    return out;
  });
  const order: { file: number; offset: number; length: number }[] = [];
  for (let k = 0; perShard.some((p) => p.length > 0); k++) order.push(perShard[k % 3 === 0 ? (perShard[1]!.length ? 1 : 0) : perShard[0]!.length ? 0 : 1]!.shift()!);
  const items = new Float64Array(order.length * 3);
  let dst = 0;
  const groupItems: number[][] = SHARDS.map(() => []);
  order.forEach((j, k) => {
    items.set([j.offset, j.length, dst], 3 * k);
    dst += j.length;
    groupItems[j.file]!.push(k);
  });
  const jobs: PackedJobs = {
    items,
    names: order.map((_, k) => `t${k}`),
    files: Uint32Array.from(order, (j) => j.file),
    groups: SHARDS.map((s, f) => ({ sha256: sha[f]!, prefix: data[f]!.subarray(0, s.prefix), items: Uint32Array.from(groupItems[f]!), name: names[f]! })),
  };
  return { jobs, total: dst };
}

function checkBytes(t: Test, handle: Parameters<ReturnType<typeof native>['read']>[0], jobs: PackedJobs, data: Buffer[]): void {
  const bin = native();
  let same = true;
  for (let k = 0; k < jobs.items.length / 3; k++) {
    const [src, len, dst] = [jobs.items[3 * k]!, jobs.items[3 * k + 1]!, jobs.items[3 * k + 2]!];
    if (len && !bin.read(handle, dst, len).equals(data[jobs.files![k]!]!.subarray(src, src + len))) same = false;
  }
  t.ok(same, 'every tensor holds its own bytes');
}

async function cases(t: Test, sources: ByteSource[], names: string[], data: Buffer[], settings: { plaid?: boolean }[]) {
  for (const s of settings) {
    const label = s.plaid === false ? ' (simple)' : '';
    const { jobs, total } = plan(data, names);
    const r = await transfer(jobs, { kind: 'memory', device: -1, total, ...s }, { sources, chunkSize: 4096 });
    checkBytes(t, r.handle!, jobs, data);
    native().free(r.handle!);
    // The second shard's expected hash is wrong.
    const bad = Buffer.from(jobs.groups![1]!.sha256);
    bad[7]! ^= 0x10;
    const wrong = plan(data, names, [jobs.groups![0]!.sha256, bad]);
    const real = jobs.groups![1]!.sha256.toString('hex');
    const err = await transfer(wrong.jobs, { kind: 'memory', device: -1, total, ...s }, { sources, chunkSize: 4096 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof TensorizeError && err.code === 'E_HASH_MISMATCH', `a wrong shard hash is E_HASH_MISMATCH${label}`);
    t.equal(
      (err as Error).message,
      `${names[1]}: SHA-256 mismatch: the file is not the one expected (expected ${bad.toString('hex')}, computed ${real})`,
      `it names the shard and both hashes${label}`,
    );
  }
}

t.test('local shards into host memory: whole-file SHA-256s checked on the way', { skip }, async (t) => {
  const dir = t.testdir();
  const data = SHARDS.map((s, i) => bytes(s.size, i + 11));
  const paths = SHARDS.map((s, i) => {
    const p = join(dir, s.name);
    writeFileSync(p, data[i]!);
    return p;
  });
  const sources = await Promise.all(paths.map((p) => FileSource.open(p)));
  t.teardown(() => Promise.all(sources.map((s) => s.close())));
  await cases(t, sources, paths, data, [{ plaid: true }, { plaid: false }]);
});

t.test('HTTP shards into host memory through the native fetcher: whole-file SHA-256s', { skip }, async (t) => {
  const dir = t.testdir();
  const data = SHARDS.map((s, i) => bytes(s.size, i + 11));
  SHARDS.forEach((s, i) => writeFileSync(join(dir, s.name), data[i]!));
  const server = await startHttpServer(dir);
  t.teardown(() => server.close());
  const urls = SHARDS.map((s) => `${server.url}/${s.name}`);
  const sources = await Promise.all(urls.map((u) => HttpSource.open(u, { retries: 3, baseDelayMs: 1 })));
  t.teardown(() => Promise.all(sources.map((s) => s.close())));
  await cases(t, sources, urls, data, [{}]);
});
