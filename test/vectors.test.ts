// Every file written by tensorizer 2.11.1 in ../shared/vectors: the index and headers parse,
// every hash verifies, each tensor's name, type, dtype, shape and bytes match its manifest,
// and export to safetensors reproduces every tensor's bytes exactly.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { TENSOR_TYPE_NAMES } from '../src/format/constants.js';
import { TensorizerFile } from '../src/format/reader.js';
import { verifyFile } from '../src/ops/verify.js';
import { exportSafetensors } from '../src/ops/export.js';
import { openSafetensorsFile } from '../src/inputs/safetensors.js';
import { FileSource } from '../src/sources/file.js';
import { TensorizeError } from '../src/errors.js';
import { runCli, sha256, VECTORS } from './helpers/util.js';

interface ManifestTensor {
  name: string | (string | number)[];
  type: string;
  dtype: string;
  shape: number[];
  nbytes?: number;
  sha256?: string;
  meta?: boolean;
}
const files = readdirSync(VECTORS).filter((f) => f.endsWith('.tensors')).sort();
t.ok(files.length >= 7, 'the reference vectors are present');

for (const f of files) {
  const manifest = JSON.parse(readFileSync(join(VECTORS, f.replace(/\.tensors$/, '.json')), 'utf8')) as { data_version: number; tensors: ManifestTensor[] };
  const encrypted = f.startsWith('encrypted');

  t.test(`${f}: index and tensor data match the manifest`, async (t) => {
    const src = await FileSource.open(join(VECTORS, f));
    t.teardown(() => src.close());
    const tf = await TensorizerFile.open(src);
    t.equal(tf.info.version, manifest.data_version);
    t.equal(tf.entries.length, manifest.tensors.length);
    for (const [i, m] of manifest.tensors.entries()) {
      const e = tf.entries[i]!;
      t.same(e.path, typeof m.name === 'string' ? [m.name] : m.name, `name of #${i}`);
      t.equal(TENSOR_TYPE_NAMES[e.type], m.type, `type of ${e.name}`);
      t.equal(e.dtype.name, m.dtype, `dtype of ${e.name}`);
      t.same(e.shape, m.shape, `shape of ${e.name}`);
      const { header } = await tf.readHeader(e);
      if (m.meta) {
        t.ok(TensorizerFile.isMeta(e, header), `${e.name} is a meta tensor`);
        continue;
      }
      t.equal(e.byteSize, m.nbytes, `size of ${e.name}`);
      if (!encrypted) t.equal(sha256(await src.read(e.dataOffset, header.dataLength)), m.sha256, `bytes of ${e.name}`);
    }
  });

  if (encrypted) {
    t.test(`${f}: verify without a key says which one it needs`, async (t) => {
      const src = await FileSource.open(join(VECTORS, f));
      t.teardown(() => src.close());
      await t.rejects(verifyFile(src), new TensorizeError('E_KEY', ''), 'a TensorizeError');
      await t.rejects(verifyFile(src), { code: 'E_KEY', message: f.includes('pass') ? /is encrypted; give its passphrase/ : /is encrypted; give its key/ });
    });
    t.test(`${f}: info says how it is encrypted, without a key`, async (t) => {
      const r = await runCli(['info', '--json', join(VECTORS, f)]);
      t.equal(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout);
      const pass = f.includes('pass');
      // The passphrase vector was written with libsodium's MIN limits (the vectors' README).
      t.match(doc, { encrypted: true, encryption: { cipher: 'XSalsa20-Poly1305', keyFrom: pass ? 'passphrase' : 'key', chunkSize: 2 ** 21, encryptedTensors: manifest.tensors.length } });
      if (pass) t.match(doc.encryption.kdf, { algorithm: 'Argon2id v1.3', opslimit: 1, memlimit: 8192, salt: /^[0-9a-f]{32}$/ });
      else t.equal(doc.encryption.kdf, undefined, 'a key file has no key derivation');
      const human = await runCli(['info', join(VECTORS, f)]);
      t.match(human.stdout, pass ? /encryption: +XSalsa20-Poly1305 in 2 MiB chunks, 3 tensors; the key comes from a passphrase \(Argon2id v1\.3, opslimit 1, memlimit 8192 B, salt [0-9a-f]{32}\)/ : /the key comes from a 32-byte key/);
    });
    continue;
  }

  t.test(`${f}: every hash verifies`, async (t) => {
    const src = await FileSource.open(join(VECTORS, f));
    t.teardown(() => src.close());
    const r = await verifyFile(src);
    t.ok(r.ok, 'no failures');
    t.same(r.failures, []);
    t.equal(r.hashesChecked, 2 * manifest.tensors.length, 'CRC32 and SHA-256 of every tensor');
  });

  t.test(`${f}: export reproduces every tensor's bytes`, async (t) => {
    const dir = t.testdir();
    const src = await FileSource.open(join(VECTORS, f));
    t.teardown(() => src.close());
    const out = join(dir, 'out.safetensors');
    const s = await exportSafetensors(src, out, { joinPaths: true });
    const back = await openSafetensorsFile(out);
    const data = readFileSync(out);
    const want = manifest.tensors.filter((m) => !m.meta);
    t.equal(s.skipped.length, manifest.tensors.length - want.length, 'meta tensors are left out');
    t.equal(back.tensors.length, want.length);
    const byName = new Map(back.tensors.map((b) => [b.path[0], b]));
    for (const m of want) {
      const b = byName.get(typeof m.name === 'string' ? m.name : m.name.join('.'));
      if (!t.ok(b, `${m.name} is exported`)) continue;
      t.equal(b!.dtype.name, m.dtype);
      t.same(b!.shape, m.shape);
      const r = b!.data.ranges[0]!;
      t.equal(sha256(data.subarray(r.offset, r.offset + r.length)), m.sha256, `bytes of ${m.name}`);
    }
    // Largest element size first, as the safetensors writer orders them: every tensor starts
    // at a multiple of its element size, so the file maps cleanly.
    const misaligned = back.tensors.filter((b) => b.data.ranges[0] && b.data.ranges[0].offset % b.dtype.itemsize !== 0).map((b) => b.path[0]);
    t.same(misaligned, [], 'every exported tensor is aligned to its element size');
    const sizes = back.tensors.map((b) => b.dtype.itemsize);
    t.same(sizes, [...sizes].sort((a, b) => b - a), 'ordered by element size, largest first');
  });
}
