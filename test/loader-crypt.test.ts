/**
 * Encrypted tensors through transfer() into memory (the native loader decrypting each piece
 * in place, native/src/loader_run.h): a file whose tensors are sealed with native().seal at
 * several chunk sizes (larger than the load's chunk size, smaller, not dividing it), beside
 * plain and empty ones, loaded into host memory (--plaid, simple, --mmap) and onto a
 * simulated GPU (--plaid, simple), with and without hashes over the plaintext, and read back
 * byte for byte; a flipped MAC or a wrong key is E_DECRYPT naming the tensor, with nothing
 * left on the simulated device. This process has one simulated device (the backend is chosen
 * once per process, on the addon's first use).
 */
process.env.TENSORIZE_SIM_GPU = '1';

import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { transfer, type PackedJobs, type Sink } from '../src/engine/transfer.js';
import { TensorizeError } from '../src/errors.js';
import { native, nativeAvailable, type NativeCrypt } from '../src/native/binding.js';
import { FileSource } from '../src/sources/file.js';
import { bytes } from './helpers/util.js';

const skip = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';

/** Tensor lengths and crypt chunk sizes (0: not encrypted). */
const TENSORS = [
  { len: 100_000, chunk: 64 * 1024 },
  { len: 70_001, chunk: 0 },
  { len: 0, chunk: 1024 },
  { len: 33_333, chunk: 3008 },
  { len: 5, chunk: 1024 },
  { len: 0, chunk: 0 },
  { len: 250_000, chunk: 20_032 },
  { len: 4096, chunk: 4096 },
] as const;

interface Built {
  path: string;
  file: Buffer;
  plain: Buffer[];
  offsets: number[];
  crypt: NativeCrypt;
}

function build(dir: string): Built {
  const bin = native();
  const keys = [bin.randomBytes(32), bin.randomBytes(32)];
  const parts: Buffer[] = [];
  const plain: Buffer[] = [];
  const offsets: number[] = [];
  const items: NativeCrypt['items'][number][] = [];
  let at = 0;
  TENSORS.forEach((x, k) => {
    const gap = bytes(17 + k * 31, 100 + k);
    parts.push(gap);
    at += gap.length;
    const p = bytes(x.len, k + 1);
    plain.push(p);
    offsets.push(at);
    const data = Buffer.from(p);
    if (x.chunk) {
      const key = k % 2;
      const nonce = bin.randomBytes(24);
      const macs = bin.seal(keys[key]!, nonce, x.chunk, x.len, 0, data);
      items.push({ key, chunk: x.chunk, nonce, macs });
    } else {
      items.push(null);
    }
    parts.push(data);
    at += data.length;
  });
  parts.push(bytes(999, 7));
  const file = Buffer.concat(parts);
  const path = join(dir, 'enc.bin');
  writeFileSync(path, file);
  return { path, file, plain, offsets, crypt: { keys, items } };
}

function jobsOf(b: Built, mmap: boolean, verify: boolean): { jobs: PackedJobs; total: number } {
  const items = new Float64Array(TENSORS.length * 3);
  let dst = 0;
  TENSORS.forEach((x, k) => {
    items.set([b.offsets[k]!, x.len, mmap ? b.offsets[k]! : dst], 3 * k);
    dst += Math.ceil(x.len / 256) * 256;
  });
  const prefix = Buffer.from('header bytes');
  const checks = verify ? b.plain.map((p) => ({ prefix, sha256: createHash('sha256').update(prefix).update(p).digest() })) : undefined;
  return { jobs: { items, names: TENSORS.map((_, k) => `layer.${k}.weight`), checks }, total: mmap ? b.file.length : dst };
}

function nothingHeld(t: Test, what: string): void {
  const c = native().simCounts();
  t.same([c.allocations, c.registrations, c.streams, c.events, c.deviceBytes], [0, 0, 0, 0, 0], `${what}: nothing left on the simulated device`);
}

const MODES: { name: string; sink: Partial<Extract<Sink, { kind: 'memory' }>> }[] = [
  { name: 'host plaid', sink: { device: -1, plaid: true, readers: 3 } },
  { name: 'host simple', sink: { device: -1, plaid: false } },
  { name: 'mmap', sink: { device: -1, mmap: true, readers: 2 } },
  { name: 'sim GPU plaid', sink: { device: 0, plaid: true, readers: 2 } },
  { name: 'sim GPU simple', sink: { device: 0, plaid: false } },
];

t.test('encrypted tensors decrypted by the loader in every mode', { skip }, async (t) => {
  t.equal(native().info().backend, 'simulated');
  const b = build(t.testdir());
  const source = await FileSource.open(b.path);
  t.teardown(() => source.close());
  for (const m of MODES) {
    for (const verify of [false, true]) {
      const what = `${m.name}${verify ? ' verify' : ''}`;
      const mmap = m.sink.mmap ?? false;
      const { jobs, total } = jobsOf(b, mmap, verify);
      const sink = { kind: 'memory', total, ...m.sink, ...(mmap ? { files: [{ size: b.file.length, mapAt: 0 }] } : {}) } as Extract<Sink, { kind: 'memory' }>;
      const r = await transfer(jobs, sink, { source, chunkSize: 4096, crypt: b.crypt });
      let same = true;
      TENSORS.forEach((x, k) => {
        if (x.len && !native().read(r.handle!, jobs.items[3 * k + 2]!, x.len).equals(b.plain[k]!)) same = false;
      });
      t.ok(same, `${what}: every tensor holds its plaintext`);
      t.equal(r.stats.bytes, b.plain.reduce((n, p) => n + p.length, 0), `${what}: bytes`);
      if (mmap) t.equal(r.stats.mappedBytes + r.stats.hostBytes, b.file.length, `${what}: the decrypted pages count as host memory, the rest as mapped`);
      native().free(r.handle!);
      nothingHeld(t, what);
    }
  }
});

t.test('a flipped MAC or a wrong key is E_DECRYPT naming the tensor', { skip }, async (t) => {
  const b = build(t.testdir());
  const source = await FileSource.open(b.path);
  t.teardown(() => source.close());
  const victim = 6;
  const item = b.crypt.items[victim]!;
  const badMac = Buffer.from(item.macs);
  badMac[16 * 7 + 3]! ^= 0x01;
  const cases: [string, NativeCrypt][] = [
    ['a flipped MAC', { keys: b.crypt.keys, items: b.crypt.items.map((x, k) => (k === victim ? { ...item, macs: badMac } : x)) }],
    ['a wrong key', { keys: b.crypt.keys, items: b.crypt.items.map((x, k) => (k === victim ? { ...item, key: 1 - item.key } : x)) }],
  ];
  for (const [why, crypt] of cases) {
    for (const m of MODES) {
      const mmap = m.sink.mmap ?? false;
      const { jobs, total } = jobsOf(b, mmap, true);
      const sink = { kind: 'memory', total, ...m.sink, ...(mmap ? { files: [{ size: b.file.length, mapAt: 0 }] } : {}) } as Extract<Sink, { kind: 'memory' }>;
      const err = await transfer(jobs, sink, { source, chunkSize: 4096, crypt }).then(
        (r) => {
          native().free(r.handle!);
          return undefined;
        },
        (e: unknown) => e,
      );
      t.ok(err instanceof TensorizeError && err.code === 'E_DECRYPT', `${m.name}, ${why}: E_DECRYPT`);
      t.match((err as Error).message, /^decryption failed at chunk \d+ \(data bytes \d+ to \d+\): the key or passphrase is wrong, or the data or its MAC was changed \(tensor "layer\.6\.weight"\)$/, `${m.name}, ${why}: the message names the tensor`);
      t.equal(((err as Error).cause as { item?: number } | undefined)?.item, victim, `${m.name}, ${why}: the native error's item`);
      nothingHeld(t, `${m.name}, ${why}`);
    }
  }
});
