/**
 * Encrypted jobs through transfer() from local files (the native copy engine for file and
 * hash sinks, ordered reads on the JS thread for stream sinks): TransferOptions.crypt
 * decrypts on the way (every byte written is the plaintext, the hashes are the plaintext's)
 * and TransferOptions.seal encrypts on the way (the output and the MACs in the results are
 * exactly the addon's seal over each whole tensor, and open gives the plaintext back). Crypt
 * chunks of 2 MiB (bigger than the engine's chunk), 192 bytes (dividing no power of two) and
 * others, with plain, empty and strided (worker pool) jobs among them so that the native
 * batch's indexes are not the jobs' (decrypting and sealing). Failures: a flipped bit or a wrong key is E_DECRYPT
 * naming the tensor; TENSORIZE_ENGINE=js, a strided or a two-range encrypted job are
 * E_UNSUPPORTED.
 */
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { transfer, type Sink, type TransferJob, type TransferOptions } from '../src/engine/transfer.js';
import { TensorizeError } from '../src/errors.js';
import { native, nativeAvailable, type NativeCrypt, type NativeSeal } from '../src/native/binding.js';
import { bytes, setEnv } from './helpers/util.js';

const why = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';

interface Item {
  name: string;
  plain: Buffer;
  /** Crypt chunk size; 0: a plain tensor. */
  chunk: number;
  key: number;
  nonce: Buffer;
  cipher: Buffer;
  macs: Buffer;
}

const KEYS = [bytes(32, 901), bytes(32, 902)];

function makeItems(): Item[] {
  const spec: [string, number, number][] = [
    ['big', 2.5 * 2 ** 20 + 77, 2 << 20],
    ['odd', 300_001, 192],
    ['mid', 200_000, 64 * 1000],
    ['plain', 150_000, 0],
    ['empty', 0, 1024],
    ['tiny', 100, 1024],
    ['exact', 3 * 4096, 4096],
  ];
  return spec.map(([name, n, chunk], i) => {
    const plain = bytes(n, 40 + i);
    const nonce = bytes(24, 60 + i);
    const key = i % 2;
    const cipher = Buffer.from(plain);
    const macs = chunk ? native().seal(KEYS[key]!, nonce, chunk, n, 0, cipher) : Buffer.alloc(0);
    return { name, plain, chunk, key, nonce, cipher, macs };
  });
}

/** The items laid out in a file with gaps: each one's offset. */
function layout(dir: string, file: string, parts: Buffer[]): { path: string; offs: number[] } {
  const offs: number[] = [];
  const chunks: Buffer[] = [];
  let at = 0;
  parts.forEach((p, i) => {
    const gap = Buffer.alloc(13 * i + 5, 0xab);
    chunks.push(gap, p);
    offs.push(at + gap.length);
    at += gap.length + p.length;
  });
  const path = join(dir, file);
  writeFileSync(path, Buffer.concat(chunks));
  return { path, offs };
}

const prefixOf = (i: number) => bytes(17 * i, 80 + i);
const sha = (i: number, data: Buffer) => createHash('sha256').update(prefixOf(i)).update(data).digest('hex');
const crc = (i: number, data: Buffer) => crc32(data, crc32(prefixOf(i)));

function jobsOf(items: Item[], path: string, offs: number[], hashes: boolean): TransferJob[] {
  let dst = 0;
  return items.map((it, i) => {
    const j: TransferJob = { src: { path, ranges: [{ offset: offs[i]!, length: it.plain.length }] }, dst, name: it.name };
    dst += it.plain.length + 3;
    if (hashes) Object.assign(j, { prefix: [prefixOf(i)], crc32: true, sha256: true });
    return j;
  });
}

const cryptOf = (items: Item[]): NativeCrypt => ({ keys: KEYS, items: items.map((it) => (it.chunk ? { key: it.key, chunk: it.chunk, nonce: it.nonce, macs: it.macs } : null)) });
const sealOf = (items: Item[]): NativeSeal => ({ keys: KEYS, items: items.map((it) => (it.chunk ? { key: it.key, chunk: it.chunk, nonce: it.nonce } : null)) });

/** Runs the jobs into a file, hash or stream sink; what each job wrote (stream: the stream cut at the jobs' lengths). */
async function run(dir: string, items: Item[], jobs: TransferJob[], kind: Sink['kind'], opts: TransferOptions) {
  const out = join(dir, 'out.bin');
  const size = jobs.reduce((n, j) => Math.max(n, (j.dst ?? 0) + items[jobs.indexOf(j)]!.plain.length), 0);
  writeFileSync(out, Buffer.alloc(size));
  const pieces: Buffer[] = [];
  const sink: Sink = kind === 'file' ? { kind, path: out } : kind === 'stream' ? { kind, write: async (b) => void pieces.push(Buffer.from(b)) } : { kind: 'hash' };
  const r = await transfer(jobs, sink as Exclude<Sink, { kind: 'memory' }>, opts);
  const written = Buffer.concat(pieces);
  const file = readFileSync(out);
  let at = 0;
  const got = items.map((it, i) => {
    if (kind === 'file') return file.subarray(jobs[i]!.dst!, jobs[i]!.dst! + it.plain.length);
    const b = written.subarray(at, at + it.plain.length);
    at += it.plain.length;
    return b;
  });
  return { r, got, streamed: written.length };
}

function checkHashes(t: Test, items: Item[], r: Awaited<ReturnType<typeof transfer>>, what: string) {
  t.same(
    r.results.map((x) => [x.bytes, x.crc32, Buffer.from(x.sha256 ?? []).toString('hex')]),
    items.map((it, i) => [it.plain.length, crc(i, it.plain), sha(i, it.plain)]),
    `${what}: bytes and hashes are the plaintext's`,
  );
}

async function failsWith(p: Promise<unknown>): Promise<TensorizeError | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => (e instanceof TensorizeError ? e : undefined),
  );
}

t.test('decrypting on the way: file, hash and stream sinks', { skip: why }, async (t) => {
  const dir = t.testdir();
  const items = makeItems();
  const { path, offs } = layout(dir, 'enc.bin', items.map((it) => it.cipher));
  for (const chunkSize of [64 << 10, undefined]) {
    const what = `chunk ${chunkSize ?? 'default'}`;
    const opts = { threads: 2, chunkSize, crypt: cryptOf(items) };
    const f = await run(dir, items, jobsOf(items, path, offs, true), 'file', opts);
    t.equal(f.r.stats.engine, 'copy', 'the native copy engine');
    t.ok(
      items.every((it, i) => f.got[i]!.equals(it.plain)),
      `${what}: the output file holds the plaintext`,
    );
    checkHashes(t, items, f.r, `${what}, file`);
    t.ok(f.r.results.every((x) => x.macs === undefined), 'no MACs without sealing');
    const h = await run(dir, items, jobsOf(items, path, offs, true), 'hash', opts);
    checkHashes(t, items, h.r, `${what}, hash`);
  }
  const s = await run(dir, items, jobsOf(items, path, offs, false), 'stream', { chunkSize: 5000, crypt: cryptOf(items) });
  t.equal(s.streamed, items.reduce((n, it) => n + it.plain.length, 0), 'stream: every byte once');
  t.ok(
    items.every((it, i) => s.got[i]!.equals(it.plain)),
    'stream: the plaintext, in order',
  );
  t.same(
    s.r.results.map((x) => x.bytes),
    items.map((it) => it.plain.length),
    'stream: bytes per job',
  );
});

t.test('sealing on the way: file, hash and stream sinks', { skip: why }, async (t) => {
  const dir = t.testdir();
  const items = makeItems();
  const { path, offs } = layout(dir, 'plain.bin', items.map((it) => it.plain));
  const checkSeal = (t: Test, got: Buffer[] | undefined, r: Awaited<ReturnType<typeof transfer>>, what: string) => {
    t.same(
      r.results.map((x) => x.macs?.toString('hex')),
      items.map((it) => (it.chunk ? it.macs.toString('hex') : undefined)),
      `${what}: the MACs are seal's over the whole tensor`,
    );
    if (!got) return;
    t.ok(
      items.every((it, i) => got[i]!.equals(it.cipher)),
      `${what}: the output is seal's ciphertext`,
    );
    const back = items.map((it, i) => {
      const b = Buffer.from(got[i]!);
      if (it.chunk) native().open(KEYS[it.key]!, it.nonce, it.chunk, r.results[i]!.macs!, b.length, 0, b);
      return b;
    });
    t.ok(
      items.every((it, i) => back[i]!.equals(it.plain)),
      `${what}: open gives the plaintext back`,
    );
  };
  for (const chunkSize of [64 << 10, undefined]) {
    const what = `chunk ${chunkSize ?? 'default'}`;
    const opts = { threads: 2, chunkSize, seal: sealOf(items) };
    const f = await run(dir, items, jobsOf(items, path, offs, true), 'file', opts);
    checkSeal(t, f.got, f.r, `${what}, file`);
    checkHashes(t, items, f.r, `${what}, file`);
    const h = await run(dir, items, jobsOf(items, path, offs, true), 'hash', opts);
    checkSeal(t, undefined, h.r, `${what}, hash`);
    checkHashes(t, items, h.r, `${what}, hash`);
  }
  for (const chunkSize of [5000, 8 << 20]) {
    const s = await run(dir, items, jobsOf(items, path, offs, false), 'stream', { chunkSize, seal: sealOf(items) });
    checkSeal(t, s.got, s.r, `stream, chunk ${chunkSize}`);
  }
});

t.test('a strided job beside encrypted ones: each job keeps its own entry', { skip: why }, async (t) => {
  const dir = t.testdir();
  const items = makeItems();
  const { path, offs } = layout(dir, 'enc.bin', items.map((it) => it.cipher));
  // Job 0 is a strided view of the plain tensor (the worker pool), not encrypted: the native
  // batch holds jobs 1.. at indexes 0..
  const plainAt = items.findIndex((it) => it.chunk === 0);
  const order = [plainAt, ...items.keys()].filter((k, i) => i === 0 || k !== plainAt);
  const sorted = order.map((k) => items[k]!);
  const jobs = jobsOf(sorted, path, order.map((k) => offs[k]!), true);
  const rows = sorted[0]!.plain.length / 4;
  jobs[0]!.src = { path, ranges: [], view: { offset: offs[plainAt]!, itemsize: 2, shape: [rows, 2], strides: [2, 1] } };
  const f = await run(dir, sorted, jobs, 'file', { threads: 2, chunkSize: 64 << 10, crypt: cryptOf(sorted) });
  t.equal(f.r.stats.engine, 'workers', 'the strided job ran on the worker pool');
  t.ok(
    sorted.every((it, i) => f.got[i]!.equals(it.plain)),
    'every job wrote its plaintext',
  );
  checkHashes(t, sorted, f.r, 'mixed batch');
  // Sealing beside it: each job's MACs come back in its own result.
  const plainPath = layout(dir, 'plain.bin', sorted.map((it) => it.plain));
  const sealJobs = jobsOf(sorted, plainPath.path, plainPath.offs, true);
  sealJobs[0]!.src = { ...(jobs[0]!.src as object), path: plainPath.path, view: { offset: plainPath.offs[0]!, itemsize: 2, shape: [rows, 2], strides: [2, 1] } } as TransferJob['src'];
  const s = await run(dir, sorted, sealJobs, 'file', { threads: 2, chunkSize: 64 << 10, seal: sealOf(sorted) });
  t.same(
    s.r.results.map((x) => x.macs?.toString('hex')),
    sorted.map((it) => (it.chunk ? it.macs.toString('hex') : undefined)),
    'sealing: each job has its own MACs',
  );
  t.ok(
    sorted.every((it, i) => s.got[i]!.equals(it.cipher)),
    'sealing: each job wrote its ciphertext',
  );
});

t.test('failures', { skip: why }, async (t) => {
  const dir = t.testdir();
  const items = makeItems();
  const { path, offs } = layout(dir, 'enc.bin', items.map((it) => it.cipher));
  const odd = items.findIndex((it) => it.name === 'odd');
  const bad = readFileSync(path);
  bad[offs[odd]! + 1000]! ^= 4;
  writeFileSync(join(dir, 'bad.bin'), bad);
  for (const kind of ['file', 'hash', 'stream'] as const) {
    const e = await failsWith(run(dir, items, jobsOf(items, join(dir, 'bad.bin'), offs, kind !== 'stream'), kind, { threads: 2, chunkSize: 64 << 10, crypt: cryptOf(items) }));
    t.equal(e?.code, 'E_DECRYPT', `${kind}: a flipped bit is E_DECRYPT`);
    t.match(e?.message ?? '', /tensor "odd"/, `${kind}: naming the tensor`);
  }
  const wrongKey = cryptOf(items);
  const e = await failsWith(run(dir, items, jobsOf(items, path, offs, true), 'file', { threads: 2, crypt: { ...wrongKey, keys: [KEYS[1]!, KEYS[0]!] } }));
  t.equal(e?.code, 'E_DECRYPT', 'the wrong keys: E_DECRYPT');
  t.match(e?.message ?? '', /tensor "/, 'naming a tensor');

  const before = process.env.TENSORIZE_ENGINE;
  setEnv('TENSORIZE_ENGINE', 'js');
  try {
    const js = await failsWith(run(dir, items, jobsOf(items, path, offs, true), 'file', { crypt: cryptOf(items) }));
    t.equal(js?.code, 'E_UNSUPPORTED', 'TENSORIZE_ENGINE=js: E_UNSUPPORTED');
    t.ok(js?.hints.some((h) => /TENSORIZE_ENGINE/.test(h)), 'with a hint');
    const sealJs = await failsWith(run(dir, items, jobsOf(items, path, offs, true), 'hash', { seal: sealOf(items) }));
    t.equal(sealJs?.code, 'E_UNSUPPORTED', 'sealing with TENSORIZE_ENGINE=js: E_UNSUPPORTED');
    const plainJs = await run(dir, items, jobsOf(items, path, offs, true), 'hash', { crypt: { keys: KEYS, items: items.map(() => null) } });
    t.equal(plainJs.r.results.length, items.length, 'a plan with no encrypted job runs on the pool');
  } finally {
    setEnv('TENSORIZE_ENGINE', before);
  }
  const jobs = jobsOf(items, path, offs, true);
  const r = (jobs[odd]!.src as { ranges: { offset: number; length: number }[] }).ranges[0]!;
  (jobs[odd]!.src as { ranges: unknown[] }).ranges = [
    { offset: r.offset, length: 1000 },
    { offset: r.offset + 1000, length: r.length - 1000 },
  ];
  const two = await failsWith(run(dir, items, jobs, 'file', { crypt: cryptOf(items) }));
  t.equal(two?.code, 'E_UNSUPPORTED', 'an encrypted job of two ranges: E_UNSUPPORTED');
  t.match(two?.message ?? '', /tensor "odd"/, 'naming the tensor');
  const strided = jobsOf(items, path, offs, true);
  strided[odd]!.src = { path, ranges: [], view: { offset: offs[odd]!, itemsize: 1, shape: [items[odd]!.plain.length], strides: [1] } };
  t.equal((await failsWith(run(dir, items, strided, 'file', { seal: sealOf(items) })))?.code, 'E_UNSUPPORTED', 'a strided job to seal: E_UNSUPPORTED');
  t.equal((await failsWith(run(dir, items, jobsOf(items, path, offs, true), 'file', { crypt: { keys: KEYS, items: [] } })))?.code, 'E_NATIVE', 'a plan without one entry per job');
});
