/**
 * Encrypted tensors over HTTP through transfer() and the native fetcher: files on a real
 * loopback server (helpers/servers.ts) whose ranges are sealed with native().seal
 * (XSalsa20-Poly1305 per chunk; chunk sizes below, around and above the request size),
 * mixed with plain and empty ranges; each job decrypted on the way (TransferOptions.crypt)
 * into host memory, a file and hash only, from one source and from two at once, with a
 * body cut mid-piece (resumed). Every byte and every SHA-256 is the plaintext's. A changed
 * MAC or byte is E_DECRYPT naming the tensor (its `item` in the cause); the JavaScript
 * network path (TENSORIZE_NET=js) refuses encrypted jobs with E_UNSUPPORTED.
 */
import t from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { transfer, type PackedJobs, type TransferJob } from '../src/engine/transfer.js';
import { TensorizeError } from '../src/errors.js';
import { native, nativeAvailable, type NativeCrypt, type NativeItemCrypt } from '../src/native/binding.js';
import { HttpSource } from '../src/sources/http.js';
import { bytes, setEnv } from './helpers/util.js';
import { startHttpServer } from './helpers/servers.js';

const skip = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';
const FAST = { retries: 5, baseDelayMs: 1 };
const SIZES = [300_001, 170_003];
// Crypt chunk sizes (multiples of 64): within, around and above 4 KiB requests, dividing them or not.
const CHUNKS = [64, 192, 1344, 4096, 4160, 8192, 20_032];

interface Job {
  file: number;
  offset: number;
  length: number;
  dst: number;
}

/**
 * Each file tiled by jobs (some empty, some gaps), the files' jobs interleaved; every second
 * non-empty job sealed in `served` under one of two keys. Returns the jobs, their crypt
 * entries and the destination size.
 */
function plan(plain: Buffer[], served: Buffer[], keys: Buffer[]): { jobs: Job[]; crypt: NativeCrypt; total: number } {
  const bin = native();
  const perFile = plain.map((d, f) => {
    const out: { file: number; offset: number; length: number }[] = [];
    for (let offset = 17 * (f + 1), k = 0; offset < d.length; k++) {
      const length = Math.min(d.length - offset, k % 7 === 3 ? 0 : 1 + ((k * 7919 + f * 104_729) % 40_000));
      out.push({ file: f, offset, length });
      offset += length + (k % 4 === 1 ? 100 + k : 0);
    }
    return out;
  });
  const order: { file: number; offset: number; length: number }[] = [];
  for (let k = 0; perFile.some((p) => p.length > 0); k++) order.push(perFile[k % 3 === 0 && perFile[1]!.length ? 1 : perFile[0]!.length ? 0 : 1]!.shift()!);
  let dst = 0;
  const items: (NativeItemCrypt | null)[] = [];
  const jobs = order.map((j, k) => {
    const job = { ...j, dst };
    dst += Math.ceil(j.length / 256) * 256;
    if (j.length > 0 && k % 2 === 0) {
      const chunk = CHUNKS[(k / 2) % CHUNKS.length]!;
      const key = (k / 2) % 2;
      const nonce = bin.randomBytes(24);
      const macs = bin.seal(keys[key]!, nonce, chunk, j.length, 0, served[j.file]!.subarray(j.offset, j.offset + j.length));
      items.push({ key, chunk, nonce, macs });
    } else items.push(null);
    return job;
  });
  return { jobs, crypt: { keys, items }, total: dst };
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest();

t.test('encrypted ranges over HTTP: decrypted by the native fetcher into memory, a file and hash only', { skip }, async (t) => {
  const bin = native();
  const dir = t.testdir();
  const plain = SIZES.map((n, i) => bytes(n, i + 5));
  const served = plain.map((d) => Buffer.from(d));
  const keys = [bin.randomBytes(32), bin.randomBytes(32)];
  const { jobs, crypt, total } = plan(plain, served, keys);
  t.ok(crypt.items.filter((c) => c).length >= 10, 'many encrypted jobs');
  served.forEach((d, f) => writeFileSync(join(dir, `${f}.bin`), d));
  const server = await startHttpServer(dir);
  t.teardown(() => server.close());
  const srcs = await Promise.all(SIZES.map((_, f) => HttpSource.open(`${server.url}/${f}.bin`, FAST)));
  t.teardown(() => Promise.all(srcs.map((s) => s.close())));
  const want = (j: Job) => plain[j.file]!.subarray(j.offset, j.offset + j.length);

  // One source: file 0's jobs, each with its crypt entry (one per job).
  const mine = jobs.map((j, k) => ({ j, k })).filter((x) => x.j.file === 0);
  const one: NativeCrypt = { keys, items: mine.map((x) => crypt.items[x.k]!) };
  const tjobs: TransferJob[] = mine.map(({ j, k }) => ({ src: { offset: j.offset, length: j.length }, dst: j.dst, name: `t${k}`, sha256: true, expect: { sha256: sha(want(j)) } }));

  for (const cut of [undefined, 1000, 2500]) {
    const label = cut === undefined ? '' : ` (a body cut after ${cut} bytes, resumed)`;
    server.faults.resetAfterBytes = cut;
    const r = await transfer(tjobs, { kind: 'memory', device: -1, total }, { source: srcs[0], crypt: one, chunkSize: 4096, concurrency: 3 });
    t.equal(r.stats.engine, 'fetcher', 'the native fetcher ran');
    if (cut !== undefined) t.ok(r.stats.network!.retries >= 1, `retried${label}`);
    t.ok(
      mine.every(({ j }) => j.length === 0 || bin.read(r.handle!, j.dst, j.length).equals(want(j))),
      `host memory: every byte is the plaintext${label}`,
    );
    t.same(r.failures, [], `host memory: every SHA-256 is the plaintext's${label}`);
    bin.free(r.handle!);
  }
  server.faults.resetAfterBytes = undefined;

  const h = await transfer(tjobs, { kind: 'hash' }, { source: srcs[0], crypt: one, chunkSize: 4096, concurrency: 4 });
  t.same(r2hex(h.results.map((x) => x.sha256!)), r2hex(mine.map(({ j }) => sha(want(j)))), 'hash only: the SHA-256s of the plaintext');
  t.same(h.failures, [], 'hash only: no failures');

  const out = join(dir, 'out.bin');
  writeFileSync(out, Buffer.alloc(total));
  await transfer(tjobs, { kind: 'file', path: out }, { source: srcs[0], crypt: one, chunkSize: 8192, concurrency: 2 });
  const file = readFileSync(out);
  t.ok(
    mine.every(({ j }) => file.subarray(j.dst, j.dst + j.length).equals(want(j))),
    'a file: every byte is the plaintext',
  );

  // Both sources at once (the shards of one checkpoint): packed jobs, one crypt entry each.
  const items = new Float64Array(jobs.length * 3);
  jobs.forEach((j, k) => items.set([j.offset, j.length, j.dst], 3 * k));
  const packed: PackedJobs = { items, names: jobs.map((_, k) => `t${k}`), files: Uint32Array.from(jobs, (j) => j.file) };
  const m = await transfer(packed, { kind: 'memory', device: -1, total }, { sources: srcs, crypt, chunkSize: 4096, concurrency: 4 });
  t.ok(
    jobs.every((j) => j.length === 0 || bin.read(m.handle!, j.dst, j.length).equals(want(j))),
    'two sources: every byte is the plaintext',
  );
  bin.free(m.handle!);

  // A changed MAC: E_DECRYPT naming the tensor (its index in the cause's item).
  const bad = mine.find(({ k }) => crypt.items[k] && jobs[k]!.length > 30_000)!;
  const at = mine.indexOf(bad);
  const flipped: NativeCrypt = { keys, items: one.items.map((c, i) => (i === at && c ? { ...c, macs: flip(c.macs, 0) } : c)) };
  for (const sink of [{ kind: 'memory', device: -1, total } as const, { kind: 'hash' } as const]) {
    const err = await transfer(tjobs, sink, { source: srcs[0], crypt: flipped, chunkSize: 4096, concurrency: 3 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    t.ok(err instanceof TensorizeError && err.code === 'E_DECRYPT', `${sink.kind}: a changed MAC is E_DECRYPT`);
    t.match((err as Error).message, new RegExp(`decryption failed at chunk 0 .*\\(tensor "t${bad.k}"\\)$`), `${sink.kind}: it names the tensor`);
    t.equal(((err as Error).cause as { item?: number } | undefined)?.item, at, `${sink.kind}: the error's item is the job`);
  }
  // A changed ciphertext byte (the last) in the second shard, read with the first: E_DECRYPT naming it.
  const bad2 = jobs.findIndex((j, k) => j.file === 1 && crypt.items[k] && j.length > 10_000);
  const j2 = jobs[bad2]!;
  writeFileSync(join(dir, '1x.bin'), flip(served[1]!, j2.offset + j2.length - 1));
  const tampered = await HttpSource.open(`${server.url}/1x.bin`, FAST);
  t.teardown(() => tampered.close());
  const err = await transfer(packed, { kind: 'memory', device: -1, total }, { sources: [srcs[0]!, tampered], crypt, chunkSize: 4096, concurrency: 4 }).then(
    () => undefined,
    (e: unknown) => e,
  );
  t.ok(err instanceof TensorizeError && err.code === 'E_DECRYPT', 'two sources: a changed byte is E_DECRYPT');
  t.match((err as Error).message, new RegExp(`\\(tensor "t${bad2}"\\)$`), 'it names the tensor');
  t.equal(((err as Error).cause as { item?: number } | undefined)?.item, bad2, "the error's item is the job");

  // The JavaScript network path does not decrypt: E_UNSUPPORTED with a hint; plain jobs still go.
  setEnv('TENSORIZE_NET', 'js');
  t.teardown(() => setEnv('TENSORIZE_NET', undefined));
  for (const [what, run] of [
    ['one source', () => transfer(tjobs, { kind: 'memory', device: -1, total }, { source: srcs[0], crypt: one })],
    ['hash only', () => transfer(tjobs, { kind: 'hash' }, { source: srcs[0], crypt: one })],
    ['two sources', () => transfer(packed, { kind: 'memory', device: -1, total }, { sources: srcs, crypt })],
  ] as const) {
    const e = await run().then(
      () => undefined,
      (x: unknown) => x,
    );
    t.ok(e instanceof TensorizeError && e.code === 'E_UNSUPPORTED' && /need the native fetcher/.test(e.message) && e.hints.length > 0, `TENSORIZE_NET=js, ${what}: E_UNSUPPORTED`);
  }
  const plainOnly = await transfer(tjobs, { kind: 'hash' }, { source: srcs[0], crypt: { keys, items: one.items.map(() => null) } });
  t.equal(plainOnly.stats.engine, 'js', 'TENSORIZE_NET=js: jobs without encryption still go');
});

/** A copy of `b` with one bit of byte `at` flipped. */
function flip(b: Buffer, at: number): Buffer {
  const c = Buffer.from(b);
  c[at]! ^= 1;
  return c;
}

function r2hex(xs: Uint8Array[]): string[] {
  return xs.map((x) => Buffer.from(x).toString('hex'));
}
