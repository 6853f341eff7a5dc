// Encrypted files between tensorize and the real tensorizer (2.12.1, 2.11.1, and 2.10.1 when
// installed; scripts/peers/setup.sh), both ways:
// - tensorizer -> tensorize: random state dicts written with EncryptionParams.random(),
//   EncryptionParams(key=...), from_string (MIN and INTERACTIVE limits) and with a meta
//   tensor (v4 + the encrypted flag): info with the key or passphrase authenticates them;
//   the encoder rebuilds every record byte for byte from their nonces, salt and plaintext;
//   no key is E_KEY, a wrong key or passphrase E_DECRYPT; verify, export (every tensor's
//   bytes against the manifest's SHA-256) and load --device cpu --verify with the key.
// - tensorize -> tensorizer: serialize --encrypt (key file raw and hex, a passphrase with
//   small --kdf-ops/--kdf-mem, aligned and --no-align, a zero-length tensor; a meta tensor
//   and a 64-bit dimension through the library) decrypted by tensorizer with
//   DecryptionParams.from_key / from_string and verify_hash, 1 and 3 readers, lazily;
//   one flipped ciphertext byte, or one flipped MAC byte, and tensorizer raises
//   CryptographyError.
// - serialize --encrypt -o s3:// (a loopback S3 server): the object, downloaded, decrypts in
//   tensorizer.
// Without the peers these are skipped with the reason (TENSORIZE_REQUIRE_PEERS=1: failed).
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { TensorType } from '../src/format/constants.js';
import { CRYPT_CHUNK_SIZE, MAC_BYTES, type CryptLayout } from '../src/format/crypt.js';
import { dtypeByName } from '../src/format/dtypes.js';
import { hashedParts, headerOf, headerOnlyHashes, plan, setHashes, setMacs } from '../src/format/encode.js';
import { decodeHeader } from '../src/format/header.js';
import { native, nativeAvailable } from '../src/native/binding.js';
import { writeTensorizer } from '../src/ops/serialize.js';
import { makeS3Client } from '../src/sources/s3.js';
import { openEncrypted } from './helpers/encrypted.js';
import { findPeer, runPeer, type Peer, type PeerVersion } from './helpers/peers.js';
import { startS3, S3_ENV } from './helpers/servers.js';
import { bytes, runCli as cli, sha256, writeSafetensors } from './helpers/util.js';

const found = findPeer();
const peer: Peer | undefined = typeof found === 'string' ? undefined : found;
const required = process.env.TENSORIZE_REQUIRE_PEERS === '1';
const why = typeof found === 'string' ? found : nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';
if (why && required) t.fail(`TENSORIZE_REQUIRE_PEERS=1, but ${why}`);
if (peer?.missing.length) t.comment(`tensorizer ${peer.missing.join(', ')} not installed beside ${peer.python}; checking ${peer.versions.map((v) => v.version).join(', ')} only`);

interface Manifest {
  tensors: { name: string; dtype: string; shape: number[]; sha256?: string; meta?: boolean; nbytes?: number }[];
  key_hex?: string;
  passphrase?: string;
}

/** A safetensors file's tensors: name -> bytes. */
function readSafetensors(path: string): Map<string, Buffer> {
  const b = readFileSync(path);
  const n = Number(b.readBigUInt64LE(0));
  const h = JSON.parse(b.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  return new Map(Object.entries(h).filter(([k]) => k !== '__metadata__').map(([k, v]) => [k, b.subarray(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1])]));
}

/** The key or passphrase options (and files) for a manifest. */
function secretArgs(dir: string, m: Manifest, label: string): string[] {
  if (m.key_hex) {
    writeFileSync(join(dir, `${label}.key`), m.key_hex);
    return ['--key-file', join(dir, `${label}.key`)];
  }
  writeFileSync(join(dir, `${label}.pass`), `${m.passphrase}\n`);
  return ['--passphrase-file', join(dir, `${label}.pass`)];
}

const ENV = { TENSORIZE_KEY: undefined, TENSORIZE_PASSPHRASE: undefined };

t.test('tensorizer -> tensorize: encrypted state dicts from every version', { skip: why }, async (t) => {
  const dir = t.testdir();
  const wrongKey = join(dir, 'wrong.key');
  writeFileSync(wrongKey, bytes(32, 77));
  for (const v of peer!.versions) {
    const out = join(dir, v.version);
    const made = runPeer(peer!, v, 'tensorizer_encrypted_models.py', [out, '--seed', '3']);
    t.equal(made.status, 0, `tensorizer ${v.version} writes the encrypted models\n${made.stderr}`);
    if (made.status !== 0) continue;
    const hello = JSON.parse(made.stdout) as { data_versions: Record<string, number> };
    t.match(hello.data_versions, { 'random.tensors': 3, 'key.tensors': 3, 'pass_min.tensors': 3, 'meta.tensors': 4 }, `${v.version}: data versions 3, and 4 with a meta tensor`);
    const manifests = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as Record<string, Manifest>;
    for (const [name, m] of Object.entries(manifests)) {
      const file = join(out, name);
      const what = `${v.version} ${name}`;
      const secret = secretArgs(dir, m, `${v.version}-${name}`);
      const info = await cli(['info', file, '--json', ...secret], ENV);
      t.equal(info.code, 0, `${what}: info with the ${m.key_hex ? 'key' : 'passphrase'}\n${info.stderr}`);
      t.match(JSON.parse(info.stdout), { encrypted: true, encryption: { keyFrom: m.key_hex ? 'key' : 'passphrase', keyChecked: true } });
      const noKey = await cli(['verify', file, '--json'], ENV);
      t.equal(noKey.code, 1);
      t.match(JSON.parse(noKey.stdout), { ok: false, error: { code: 'E_KEY' } }, `${what}: no key: E_KEY`);
      const wrong = await cli(['info', file, '--json', '--key-file', wrongKey], ENV);
      t.equal(wrong.code, 1);
      t.match(JSON.parse(wrong.stdout), { ok: false, error: { code: 'E_DECRYPT' } }, `${what}: a wrong key: E_DECRYPT`);
      if (!m.key_hex) {
        writeFileSync(join(dir, 'wrong.pass'), 'not the passphrase');
        const wp = await cli(['info', file, '--json', '--passphrase-file', join(dir, 'wrong.pass')], ENV);
        t.match(JSON.parse(wp.stdout), { ok: false, error: { code: 'E_DECRYPT' } }, `${what}: a wrong passphrase: E_DECRYPT`);
      }

      // The encoder, given tensorizer's nonces, salt and the plaintext, writes its records byte for byte.
      const o = await openEncrypted(file, m.key_hex ? { key: Buffer.from(m.key_hex, 'hex') } : { passphrase: m.passphrase! });
      t.ok(o.tensors.every((x) => x.shaOk), `${what}: every tensor decrypts to its stored SHA-256 (libsodium directly)`);
      t.same(o.tensors.map((x) => (m.tensors.find((e) => e.name === x.name)!.meta ? null : sha256(x.plaintext))), m.tensors.map((e) => (e.meta ? null : e.sha256)), `${what}: to the manifest's bytes`);
      const kdf = o.tensors.find((x) => x.crypt.kdf)?.crypt.kdf;
      const layout: CryptLayout = { chunkSize: CRYPT_CHUNK_SIZE, ...(kdf ? { kdf } : {}) };
      const key = m.key_hex ? Buffer.from(m.key_hex, 'hex') : await native().deriveKey(Buffer.from(m.passphrase!), kdf!.salt, kdf!.opslimit, kdf!.memlimit);
      const theirs = readFileSync(file);
      const p = plan(
        m.tensors.map((e, k) => ({
          path: [e.name],
          type: TensorType.STATE_DICT,
          dtype: dtypeByName(e.dtype)!,
          shape: e.shape,
          meta: !!e.meta,
          ...(e.meta ? {} : { data: { path: file, ranges: [{ offset: o.tensors[k]!.dataOffset, length: o.tensors[k]!.dataLength }] } }),
        })),
        1,
        layout,
      );
      t.equal(p.version, hello.data_versions[name], `${what}: the same data version`);
      const same = p.planned.every((pl, k) => {
        const x = o.tensors[k]!;
        const c = x.crypt.cipher;
        const h = headerOf(pl, c?.nonce);
        if (c) {
          const data = Buffer.from(x.plaintext);
          const s = createHash('sha256');
          for (const part of hashedParts(h)) s.update(part);
          setHashes(h, undefined, s.update(data).digest());
          setMacs(h, native().seal(key, c.nonce, CRYPT_CHUNK_SIZE, data.length, 0, data));
          return h.buf.equals(theirs.subarray(x.headerOffset, x.dataOffset)) && data.equals(theirs.subarray(x.dataOffset, x.dataOffset + x.dataLength));
        }
        const { crc, sha } = headerOnlyHashes(h);
        setHashes(h, crc, sha);
        return h.buf.equals(theirs.subarray(x.headerOffset, x.dataOffset));
      });
      t.ok(same, `${what}: every record (header, hashes, MACs, ciphertext) rebuilt byte for byte`);

      // With the decrypting engines: verify, export, load.
      const verify = await cli(['verify', file, '--json', ...secret], ENV);
      t.equal(verify.code, 0, `${what}: verify with the key\n${verify.stderr}`);
      const verifyWrong = await cli(['verify', file, '--json', '--key-file', wrongKey], ENV);
      if (m.key_hex) t.match(JSON.parse(verifyWrong.stdout || '{}'), { ok: false, error: { code: 'E_DECRYPT' } }, `${what}: verify with a wrong key: E_DECRYPT`);
      const st = join(dir, `${v.version}-${name}.safetensors`);
      const ex = await cli(['export', file, '-o', st, '--meta', 'zeros', '-q', ...secret], ENV);
      t.equal(ex.code, 0, `${what}: export with the key\n${ex.stderr}`);
      if (ex.code === 0) {
        const got = readSafetensors(st);
        const bad = m.tensors.filter((e) => {
          const b = got.get(e.name);
          return !b || (e.meta ? b.some((x) => x !== 0) || b.length !== e.nbytes : sha256(b) !== e.sha256);
        });
        t.same(bad.map((e) => e.name), [], `${what}: every exported tensor's bytes match the manifest`);
      }
      const load = await cli(['load', file, '--device', 'cpu', '--verify', '--json', ...secret], ENV);
      t.equal(load.code, 0, `${what}: load --device cpu --verify with the key\n${load.stderr}`);
      if (load.code === 0) t.match(JSON.parse(load.stdout), { ok: true }, `${what}: load reports ok`);
    }
  }
});

/** Random safetensors input: bf16 over three 2 MiB chunks, f16, ints, a scalar, a zero-length tensor; and its manifest. */
function randomInput(path: string, seed: number): Manifest {
  const tensors = [
    { name: 'model.big.weight', dtype: 'BF16', torch: 'bfloat16', shape: [1100, 2500], data: bytes(1100 * 2500 * 2, seed) },
    { name: 'model.exact', dtype: 'F32', torch: 'float32', shape: [524288], data: bytes(2 * 2 ** 20, seed + 1) },
    { name: 'model.half', dtype: 'F16', torch: 'float16', shape: [3, 7], data: bytes(42, seed + 2) },
    { name: 'model.ints', dtype: 'I64', torch: 'int64', shape: [5], data: bytes(40, seed + 3) },
    { name: 'model.scalar', dtype: 'I32', torch: 'int32', shape: [], data: bytes(4, seed + 4) },
    { name: 'model.empty', dtype: 'F32', torch: 'float32', shape: [0, 8], data: Buffer.alloc(0) },
    { name: 'model.u8', dtype: 'U8', torch: 'uint8', shape: [13], data: bytes(13, seed + 5) },
  ];
  writeSafetensors(path, tensors);
  return { tensors: tensors.map((x) => ({ name: x.name, dtype: x.torch, shape: x.shape, sha256: sha256(x.data) })) };
}

/** tensorizer_check.py with every version (verify_hash; `readers`; lazy): exit 0 and OK. */
function tensorizerReads(t: Test, files: string[], manifest: Manifest, dir: string, what: string, versions: PeerVersion[] = peer!.versions, readers = '1,3'): void {
  const mf = join(dir, `manifest-${what.replace(/\W+/g, '_')}.json`);
  writeFileSync(mf, JSON.stringify(manifest));
  for (const v of versions) {
    const r = runPeer(peer!, v, 'tensorizer_check.py', [...files, mf, '--num-readers', readers]);
    t.equal(r.status, 0, `tensorizer ${v.version} decrypts ${what} (${manifest.key_hex ? 'from_key' : 'from_string'}, verify_hash, readers ${readers}, lazy)\n${r.stdout}${r.stderr}`);
    t.match(r.stdout, /^OK \d+ tensors$/m);
  }
}

/** tensorizer_check.py must fail with a CryptographyError. */
function tensorizerRefuses(t: Test, file: string, manifest: Manifest, dir: string, what: string): void {
  const mf = join(dir, `manifest-bad-${what.replace(/\W+/g, '_')}.json`);
  writeFileSync(mf, JSON.stringify(manifest));
  for (const v of peer!.versions) {
    const r = runPeer(peer!, v, 'tensorizer_check.py', [file, mf, '--num-readers', '1', '--no-lazy']);
    t.equal(r.status, 1, `tensorizer ${v.version} refuses ${what}`);
    t.match(r.stdout, /CryptographyError/, `tensorizer ${v.version}: ${what}: CryptographyError\n${r.stdout}`);
  }
}

t.test('tensorize -> tensorizer: serialize --encrypt decrypts in every version; a flipped byte does not', { skip: why }, async (t) => {
  const dir = t.testdir();
  const st = join(dir, 'in.safetensors');
  const manifest = randomInput(st, 21);
  const key = bytes(32, 22);
  writeFileSync(join(dir, 'raw.key'), key);
  writeFileSync(join(dir, 'hex.key'), `${key.toString('hex')}\n`);
  const passphrase = 'tensorize -> tensorizer';
  writeFileSync(join(dir, 'pass.txt'), `${passphrase}\n`);
  const withKey = { ...manifest, key_hex: key.toString('hex') };
  const withPass = { ...manifest, passphrase };
  const runs: [string, string[], Manifest][] = [
    ['raw key (aligned)', ['--key-file', join(dir, 'raw.key')], withKey],
    ['hex key, --no-align', ['--key-file', join(dir, 'hex.key'), '--no-align'], withKey],
    ['passphrase (kdf 1 x 8 KiB), --align 4096', ['--passphrase-file', join(dir, 'pass.txt'), '--kdf-ops', '1', '--kdf-mem', '8KiB', '--align', '4096'], withPass],
    ['passphrase (kdf 2 x 64 MiB: INTERACTIVE), --no-align', ['--passphrase-file', join(dir, 'pass.txt'), '--kdf-ops', '2', '--kdf-mem', '64MiB', '--no-align'], withPass],
  ];
  const made: Record<string, string> = {};
  for (const [what, args, m] of runs) {
    const out = join(dir, `${what.replace(/\W+/g, '_')}.tensors`);
    const r = await cli(['serialize', st, '-o', out, '--encrypt', '-q', ...args], ENV);
    t.equal(r.code, 0, `serialize --encrypt ${what}\n${r.stderr}`);
    made[what] = out;
    tensorizerReads(t, [out], m, dir, what);
  }

  // The library: a meta tensor (v4 + the encrypted flag); a 64-bit dimension (v5 + flags 1|2: 2.12 only).
  const big = manifest.tensors[0]!;
  const raw = readFileSync(st);
  const bigAt = raw.indexOf(bytes(1100 * 2500 * 2, 21).subarray(0, 64));
  const bigData = { path: st, ranges: [{ offset: bigAt, length: 1100 * 2500 * 2 }] };
  const meta = join(dir, 'meta.tensors');
  const s = await writeTensorizer(
    meta,
    [
      { path: [big.name], type: TensorType.STATE_DICT, dtype: dtypeByName('bfloat16')!, shape: big.shape, data: bigData },
      { path: ['model.meta'], type: TensorType.STATE_DICT, dtype: dtypeByName('float32')!, shape: [4, 3], meta: true },
    ],
    { encryption: { key }, align: 64 },
  );
  t.equal(s.version, 4);
  tensorizerReads(t, [meta], { tensors: [big, { name: 'model.meta', dtype: 'float32', shape: [4, 3], meta: true }], key_hex: key.toString('hex') }, dir, 'a meta tensor (v4 + flag)');
  const long = join(dir, 'long.tensors');
  const l = await writeTensorizer(
    long,
    [
      { path: [big.name], type: TensorType.STATE_DICT, dtype: dtypeByName('bfloat16')!, shape: big.shape, data: bigData },
      { path: ['model.long'], type: TensorType.STATE_DICT, dtype: dtypeByName('float16')!, shape: [2 ** 32, 0], data: { path: st, ranges: [] } },
    ],
    { encryption: { passphrase, opslimit: 1, memlimit: 8192 } },
  );
  t.equal(l.version, 5);
  const v212 = peer!.versions.filter((v) => v.version.startsWith('2.12'));
  tensorizerReads(t, [long], { tensors: [big, { name: 'model.long', dtype: 'float16', shape: [2 ** 32, 0], sha256: sha256(Buffer.alloc(0)) }], passphrase }, dir, 'a 64-bit dimension (v5 + flags 1 and 2)', v212);

  // Tampering: one ciphertext byte (in chunk 1 of the big tensor), one MAC byte.
  const file = made['raw key (aligned)']!;
  const o = await openEncrypted(file, { key });
  const x = o.tensors[0]!;
  const flipped = (at: number) => {
    const b = readFileSync(file);
    b[at]! ^= 0x01;
    const p = join(dir, `flipped-${at}.tensors`);
    writeFileSync(p, b);
    return p;
  };
  tensorizerRefuses(t, flipped(x.dataOffset + CRYPT_CHUNK_SIZE + 12345), withKey, dir, 'one flipped ciphertext byte');
  const h = decodeHeader(readFileSync(file).subarray(x.headerOffset, x.dataOffset), true, String);
  const macAt = x.headerOffset + h.crypt!.end - 3 * MAC_BYTES + 5; // in MAC 0 of 3
  tensorizerRefuses(t, flipped(macAt), withKey, dir, 'one flipped MAC byte');
});

t.test('serialize --encrypt -o s3://: tensorizer decrypts the object', { skip: why }, async (t) => {
  const dir = t.testdir();
  const s3 = await startS3(join(dir, 'data'));
  t.teardown(() => s3.close());
  const { client } = makeS3Client({ endpoint: s3.endpoint });
  t.teardown(() => client.destroy());
  const st = join(dir, 'in.safetensors');
  const manifest = randomInput(st, 31);
  const key = bytes(32, 32);
  writeFileSync(join(dir, 'k.key'), key.toString('hex'));
  const r = await cli(['serialize', st, '-o', 's3://b/enc.tensors', '--endpoint', s3.endpoint, '--part-size', '5MiB', '--encrypt', '--key-file', join(dir, 'k.key'), '-q'], { ...ENV, ...S3_ENV });
  t.equal(r.code, 0, r.stderr);
  Object.assign(process.env, S3_ENV);
  t.teardown(() => {
    for (const k of Object.keys(S3_ENV)) delete process.env[k];
  });
  const got = await client.send(new GetObjectCommand({ Bucket: 'b', Key: 'enc.tensors' }));
  const file = join(dir, 'object.tensors');
  writeFileSync(file, Buffer.from(await got.Body!.transformToByteArray()));
  tensorizerReads(t, [file], { ...manifest, key_hex: key.toString('hex') }, dir, 'the S3 object');
});
