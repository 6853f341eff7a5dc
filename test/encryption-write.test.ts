// serialize --encrypt, without the peers (test/encryption-interop.test.ts has tensorizer judge):
// - the layout: data versions and flags (3; 4 + bit 0 with a meta tensor; 5 + bits 0 and 1
//   with a 64-bit dimension), SHA-256 alone for encrypted tensors, an empty crypt-info block
//   and CRC32 + SHA-256 for tensors without data, crypt-info sizes known before encryption,
//   alignment padding after the crypt-info block, hashes over the header without it;
// - nonces: one per encrypted tensor, no chunk nonce used twice in a file (a clash is drawn
//   again);
// - tensorizer's own encrypted vectors rebuilt record for record by the encoder from their
//   nonces, salt and plaintext: the same bytes (headers, MACs, ciphertext);
// - the sealing writer of -o s3:// (pass 2 must give pass 1's MACs);
// - the CLI: --encrypt and its key options (usage errors, exit 2), the report;
// - serialize --encrypt end to end, local and -o s3://: every tensor authenticates and
//   decrypts to its input bytes under libsodium directly, its SHA-256 matches, nonces are
//   disjoint.
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { HashType, TensorType } from '../src/format/constants.js';
import { assignNonces, CRYPT_CHUNK_SIZE, cryptInfoSize, decodeCrypt, nonceValue, type CryptLayout } from '../src/format/crypt.js';
import { dtypeByName } from '../src/format/dtypes.js';
import { encodePrologue, hashedParts, headerOf, headerOnlyHashes, plan, setHashes, setMacs, type WriteTensor } from '../src/format/encode.js';
import { decodeHeader, hashedHeaderParts } from '../src/format/header.js';
import { native, nativeAvailable } from '../src/native/binding.js';
import { SealingWriter } from '../src/ops/encrypt.js';
import { writeTensorizer } from '../src/ops/serialize.js';
import { makeS3Client } from '../src/sources/s3.js';
import { openEncrypted } from './helpers/encrypted.js';
import { startHttpServer, startS3, S3_ENV } from './helpers/servers.js';
import { bytes, ROOT, runCli as cli, VECTORS, writeSafetensors } from './helpers/util.js';

const noNative = nativeAvailable() ? false : 'the native addon is not built (npm run build:native)';
const f32 = dtypeByName('float32')!;
const bf16 = dtypeByName('bfloat16')!;
const KEY_LAYOUT: CryptLayout = { chunkSize: CRYPT_CHUNK_SIZE };
const PASS_LAYOUT: CryptLayout = { chunkSize: CRYPT_CHUNK_SIZE, kdf: { opslimit: 1, memlimit: 8192, salt: Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex') } };

/** A tensor of `n` bytes of a fake file (plan() only checks the byte count). */
const T = (name: string, shape: number[], dtype = f32, extra: Partial<WriteTensor> = {}): WriteTensor => {
  const n = shape.reduce((a, b) => a * b, 1) * dtype.itemsize;
  return { path: [name], type: TensorType.STATE_DICT, dtype, shape, data: { path: '/nonexistent', ranges: [{ offset: 0, length: n }] }, ...extra };
};

t.test('plan: data versions, flags, hashes and crypt-info blocks of encrypted files', async (t) => {
  const flagsOf = (p: ReturnType<typeof plan>) => encodePrologue(p.planned, p.version, p.metadataLength).readBigUInt64LE(9);
  const v = (tensors: WriteTensor[], enc?: CryptLayout) => {
    const p = plan(tensors, 1, enc);
    return [p.version, flagsOf(p)];
  };
  t.same(v([T('a', [4])]), [1, 0n], 'plain: v1, no flags');
  t.same(v([T('a', [4])], KEY_LAYOUT), [3, 0n], 'encrypted: v3, no flags (tensorizer writes that)');
  t.same(v([T('a', [4], bf16)], KEY_LAYOUT), [3, 0n], 'an opaque dtype: still v3');
  t.same(v([T('a', [4]), T('m', [3], f32, { meta: true, data: undefined })], KEY_LAYOUT), [4, 1n], 'a meta tensor: v4 with flag bit 0');
  t.same(v([T('a', [4]), T('m', [3], f32, { meta: true, data: undefined })]), [4, 0n], 'the same, plain: v4 without the flag');
  t.same(v([T('a', [4]), T('long', [2 ** 32, 0])], KEY_LAYOUT), [5, 3n], 'a 64-bit dimension: v5 with flag bits 0 (encrypted) and 1 (tagged entries), as tensorizer 2.12 writes it');
  t.throws(() => plan([T('z', [0, 4]), T('m', [3], f32, { meta: true, data: undefined })], 1, KEY_LAYOUT), { code: 'E_INPUT', message: /nothing to encrypt/ });
  t.throws(() => plan([T('a', [4])], 1, { chunkSize: 1000 }), { code: 'E_USAGE' });

  // The reference's decoded example (§6.4): 5 MiB of float32 from a passphrase: crypt body
  // 150 bytes, chunks of 42 and 90 bytes (3 MACs).
  const big = T('a', [5 * 262144]);
  const { planned } = plan([big, T('z', [0, 4]), T('m', [2, 2], f32, { meta: true, data: undefined }), T('s', [])], 1, PASS_LAYOUT);
  const nonce = Buffer.alloc(24, 0xab);
  const h = headerOf(planned[0]!, nonce);
  const dec = decodeHeader(h.buf, true, (o) => `+${o}`);
  t.same(dec.hashes.map((x) => x.type), [HashType.SHA256], 'an encrypted tensor: SHA-256 alone');
  t.equal(dec.crypt!.end - dec.crypt!.start, 8 + 150, 'crypt-info body of 150 bytes (reference §6.4)');
  t.same(dec.crypt!.chunks.map((c) => c.payload.length + 2), [42, 90], 'a key-derivation chunk of length 42 and a cipher chunk of length 90');
  t.equal(cryptInfoSize(PASS_LAYOUT, 3), 158);
  const c = decodeCrypt(dec.crypt!.chunks, dec.dataLength, 'a');
  t.same({ ops: c.kdf!.opslimit, mem: c.kdf!.memlimit, salt: c.kdf!.salt.toString('hex') }, { ops: 1, mem: 8192, salt: '000102030405060708090a0b0c0d0e0f' });
  t.match(c.cipher, { kind: 'parallel', chunkSize: CRYPT_CHUNK_SIZE, nonce });
  t.equal(c.cipher?.kind === 'parallel' && c.cipher.macs.length, 3);
  t.equal(h.buf.length, planned[0]!.headerSize, 'the planned header size is the encoded one');
  t.same(Buffer.concat(hashedParts(h)), Buffer.concat(hashedHeaderParts(h.buf, dec)), 'hashedParts: the header without its crypt-info segment, as the reader cuts it');
  setMacs(h, Buffer.alloc(48, 0xcd));
  const filled = decodeCrypt(decodeHeader(h.buf, true, String).crypt!.chunks, dec.dataLength, 'a').cipher as { macs: Buffer[] };
  t.same(Buffer.concat(filled.macs), Buffer.alloc(48, 0xcd), 'setMacs fills the MACs in');
  t.throws(() => headerOf(planned[0]!), /needs nonce/);
  t.throws(() => headerOf(planned[1]!, nonce), /takes no nonce/);
  for (const [k, what] of [[1, 'a zero-length tensor'], [2, 'a meta tensor']] as const) {
    const e = headerOf(planned[k]!);
    const d = decodeHeader(e.buf, true, String);
    t.same(d.hashes.map((x) => x.type), [HashType.CRC32, HashType.SHA256], `${what}: CRC32 and SHA-256`);
    t.same(d.crypt!.chunks, [], `${what}: an empty crypt-info block`);
    t.equal(d.crypt!.end - d.crypt!.start, 10);
    const { crc, sha } = headerOnlyHashes(e);
    const parts = Buffer.concat(hashedHeaderParts(e.buf, d));
    t.equal(sha.toString(), createHash('sha256').update(parts).digest().toString(), `${what}: hashed without the crypt-info segment`);
    setHashes(e, crc, sha);
  }
  // The scalar: encrypted (4 bytes, one chunk).
  t.equal(planned[3]!.crypt!.macs, 1);

  // Alignment: the padding goes after the crypt-info block; data starts aligned; readers take data_length from the end.
  const aligned = plan([T('a', [7]), T('b', [5 * 262144 + 3]), T('c', [])], 4096, PASS_LAYOUT).planned;
  for (const p of aligned) {
    t.equal(p.dataOffset % 4096, 0, `${p.t.path[0]}: data at a multiple of 4096`);
    const e = headerOf(p, nonce);
    const d = decodeHeader(e.buf, true, String);
    t.equal(d.dataLength, p.dataLength);
    t.equal(e.crypt!.end + p.padding + 8, e.buf.length, 'padding between the crypt-info block and data_length');
  }
});

t.test('assignNonces: one per tensor, chunk nonces never shared, a clash drawn again', async (t) => {
  // A rigged generator: the nonces it returns, in order.
  const rig = (values: bigint[]) => {
    let i = 0;
    return (n: number) => {
      const v = values[i++];
      if (v === undefined) throw new Error('rig exhausted');
      const b = Buffer.alloc(n);
      let x = v;
      for (let k = 0; k < n; k++, x >>= 8n) b[k] = Number(x & 0xffn);
      return b;
    };
  };
  const vals = (ns: Buffer[]) => ns.map(nonceValue);
  t.same(vals(assignNonces([3, 1, 2], rig([100n, 103n, 104n]))), [100n, 103n, 104n], 'adjacent ranges are fine');
  t.same(vals(assignNonces([3, 1], rig([100n, 102n, 50n]))), [100n, 50n], 'a nonce inside an earlier range is drawn again');
  t.same(vals(assignNonces([3, 5], rig([100n, 96n, 200n]))), [100n, 200n], 'a range running into an earlier one is drawn again');
  t.same(vals(assignNonces([2, 2, 2], rig([10n, 20n, 11n, 19n, 12n]))), [10n, 20n, 12n], 'both neighbours checked');
  t.same(vals(assignNonces([4], rig([2n ** 192n - 2n, 7n]))), [7n], 'a range that would wrap past 2^192 is drawn again');
  t.same(vals(assignNonces([0], rig([2n ** 192n - 1n]))), [2n ** 192n - 1n], 'the last nonce, for one chunk');
  t.throws(() => assignNonces([1, 1], rig(Array(80).fill(5n))), { code: 'E_NATIVE', message: /nonces already in use/ });
  // The ordinary case, from the system's generator.
  if (!noNative) {
    const ns = assignNonces(Array(2000).fill(3), (n) => native().randomBytes(n));
    t.equal(new Set(ns.map((n) => n.toString('hex'))).size, 2000);
  }
  // The first nonce's byte 0 is the low byte, as libsodium increments it.
  t.equal(nonceValue(Buffer.from([1, 2])), 0x0201n);
});

t.test("tensorizer's encrypted vectors, rebuilt by the encoder from their nonces, salt and plaintext: the same records byte for byte", { skip: noNative || (existsSync(join(VECTORS, 'encrypted_key_v3.tensors')) ? false : 'no vectors') }, async (t) => {
  const dir = t.testdir();
  for (const name of ['encrypted_key_v3', 'encrypted_pass_v3']) {
    const m = JSON.parse(readFileSync(join(VECTORS, `${name}.json`), 'utf8')) as { key_hex?: string; passphrase?: string; tensors: { name: string; dtype: string; shape: number[] }[] };
    const theirs = readFileSync(join(VECTORS, `${name}.tensors`));
    const opened = await openEncrypted(join(VECTORS, `${name}.tensors`), m.key_hex ? { key: Buffer.from(m.key_hex, 'hex') } : { passphrase: m.passphrase! });
    t.ok(opened.tensors.every((x) => x.shaOk), `${name}: every tensor decrypts to its SHA-256`);
    const kdf = opened.tensors[0]!.crypt.kdf;
    const layout: CryptLayout = { chunkSize: CRYPT_CHUNK_SIZE, ...(kdf ? { kdf } : {}) };
    const key = m.key_hex ? Buffer.from(m.key_hex, 'hex') : await native().deriveKey(Buffer.from(m.passphrase!), kdf!.salt, kdf!.opslimit, kdf!.memlimit);
    const tensors = m.tensors.map((x, k) => {
      const path = join(dir, `${name}-${k}.bin`);
      writeFileSync(path, opened.tensors[k]!.plaintext);
      return { path: [x.name], type: TensorType.STATE_DICT, dtype: dtypeByName(x.dtype)!, shape: x.shape, data: { path, ranges: [{ offset: 0, length: opened.tensors[k]!.dataLength }] } };
    });
    const { planned } = plan(tensors, 1, layout);
    planned.forEach((p, k) => {
      const o = opened.tensors[k]!;
      const c = o.crypt.cipher!;
      const h = headerOf(p, c.nonce);
      const data = Buffer.from(o.plaintext);
      const sha = createHash('sha256');
      for (const part of hashedParts(h)) sha.update(part);
      setHashes(h, undefined, sha.update(data).digest());
      setMacs(h, native().seal(key, c.nonce, CRYPT_CHUNK_SIZE, data.length, 0, data));
      t.same(h.buf.toString('hex'), theirs.subarray(o.headerOffset, o.dataOffset).toString('hex'), `${name}: tensor ${p.t.path[0]}: the header, hashes and MACs included`);
      t.ok(data.equals(theirs.subarray(o.dataOffset, o.dataOffset + o.dataLength)), `${name}: tensor ${p.t.path[0]}: the ciphertext`);
    });
  }
});

t.test('SealingWriter (-o s3:// pass 2): whole chunks sealed in order, MACs checked against pass 1', { skip: noNative }, async (t) => {
  const key = bytes(32, 60);
  const nonce = bytes(24, 61);
  const chunk = 4096;
  const plain = bytes(5 * chunk + 123, 62);
  const sealed = Buffer.from(plain);
  const macs = native().seal(key, nonce, chunk, plain.length, 0, sealed);
  // Pieces of odd sizes in, the whole ciphertext out, in order.
  const run = async (expect: Buffer, pieces: number[]) => {
    const out: Buffer[] = [];
    const w = new SealingWriter(key, nonce, chunk, plain.length, expect, async (b) => void out.push(Buffer.from(b)), 'w');
    let at = 0;
    for (const n of pieces) {
      await w.write(plain.subarray(at, at + n));
      at += n;
    }
    await w.end();
    return Buffer.concat(out);
  };
  t.ok((await run(macs, [1, 4095, 7000, 3, plain.length - 11099])).equals(sealed), 'the ciphertext of one seal over the whole tensor');
  t.ok((await run(macs, [plain.length])).equals(sealed));
  const other = Buffer.from(macs);
  other[16 * 4 + 3]! ^= 1;
  await t.rejects(run(other, [plain.length]), { code: 'E_FILE_CHANGED', message: /differ from those hashed in the first pass/ }, 'a MAC unlike pass 1\'s: the input changed');
  await t.rejects(run(macs, [plain.length - 1]), { code: 'E_FILE_CHANGED', message: /bytes read for/ }, 'a tensor cut short');
});

t.test('CLI: --encrypt and its key options', async (t) => {
  const dir = t.testdir();
  const st = join(dir, 'in.safetensors');
  writeSafetensors(st, [{ name: 'w', dtype: 'F32', shape: [4], data: bytes(16, 1) }]);
  const key = join(dir, 'k.key');
  writeFileSync(key, bytes(32, 2));
  const pass = join(dir, 'p.txt');
  writeFileSync(pass, 'secret\n');
  const empty = join(dir, 'empty.txt');
  writeFileSync(empty, '\n');
  const out = join(dir, 'out.tensors');
  const env = { TENSORIZE_KEY: undefined, TENSORIZE_PASSPHRASE: undefined };
  const usage: [string[], RegExp][] = [
    [['--encrypt'], /--encrypt needs a key or a passphrase[\s\S]*head -c 32 \/dev\/urandom > model\.key[\s\S]*openssl rand -hex 32/],
    [['--key-file', key], /--key-file is for encrypted output: add --encrypt/],
    [['--passphrase-file', pass], /--passphrase-file is for encrypted output/],
    [['--kdf-ops', '2'], /--kdf-ops is for encrypted output/],
    [['--encrypt', '--key-file', key, '--passphrase-file', pass], /not both/],
    [['--encrypt', '--key-file', key, '--kdf-mem', '1MiB'], /--kdf-mem sets how a key is derived from a passphrase/],
    [['--encrypt', '--passphrase-file', pass, '--kdf-mem', '4KiB'], /--kdf-mem must be from 8192 bytes/],
    [['--encrypt', '--passphrase-file', pass, '--kdf-ops', '0'], /--kdf-ops must be a positive integer/],
    [['--encrypt', '--passphrase-file', pass, '--kdf-ops', String(2 ** 21)], /--kdf-ops must be an integer from 1 to 1048576/],
    [['--encrypt', '--passphrase-file', pass, '--kdf-ops', '100', '--kdf-mem', '1GiB'], /over tensorize's limit/],
    [['--encrypt', '--passphrase-file', empty], /the passphrase is empty/],
  ];
  for (const [args, msg] of usage) {
    const r = await cli(['serialize', st, '-o', out, ...args], env);
    t.equal(r.code, 2, `${args.join(' ')}: exit 2\n${r.stderr}`);
    t.match(r.stderr, msg, args.join(' '));
  }
  writeFileSync(join(dir, 'bad.key'), 'not a key');
  const bad = await cli(['serialize', st, '-o', out, '--encrypt', '--key-file', join(dir, 'bad.key')], env);
  t.equal(bad.code, 1, bad.stderr);
  t.match(bad.stderr, /a key is 32 bytes, or 64 hexadecimal characters/);
  t.notOk(existsSync(out), 'no output after a usage or key error');
  // TENSORIZE_KEY alone does not make serialize encrypt.
  const plain = await cli(['serialize', st, '-o', out, '--json'], { TENSORIZE_KEY: 'ab'.repeat(32) });
  t.equal(plain.code, 0, plain.stderr);
  t.notOk((JSON.parse(plain.stdout) as { encryption?: unknown }).encryption, 'TENSORIZE_KEY without --encrypt: not encrypted');
  const help = await cli(['serialize', '--help']);
  t.match(help.stdout, /--encrypt[\s\S]*--key-file[\s\S]*--passphrase-file[\s\S]*--kdf-ops[\s\S]*--kdf-mem[\s\S]*XSalsa20-Poly1305/);
});

/** Random safetensors input for end-to-end runs: several dtypes, a tensor over several 2 MiB chunks, a scalar, an empty tensor. */
function randomInput(path: string, seed: number) {
  const tensors = [
    { name: 'big.weight', dtype: 'BF16', shape: [1100, 2500], data: bytes(1100 * 2500 * 2, seed) }, // 5.5 MB: 3 chunks
    { name: 'exact', dtype: 'F32', shape: [524288], data: bytes(2 * 2 ** 20, seed + 1) }, // exactly one chunk
    { name: 'half', dtype: 'F16', shape: [3, 7], data: bytes(42, seed + 2) },
    { name: 'ints', dtype: 'I64', shape: [5], data: bytes(40, seed + 3) },
    { name: 'scalar', dtype: 'I32', shape: [], data: bytes(4, seed + 4) },
    { name: 'empty', dtype: 'F32', shape: [0, 8], data: Buffer.alloc(0) },
    { name: 'bytes', dtype: 'U8', shape: [13], data: bytes(13, seed + 5) },
  ];
  writeSafetensors(path, tensors);
  return tensors;
}

/** Every tensor of an encrypted output decrypts to its input bytes; hashes, nonces and layout as tensorizer writes them. */
async function checkOutput(t: Test, file: string, secret: { key: Buffer } | { passphrase: string }, input: ReturnType<typeof randomInput>, what: string) {
  const o = await openEncrypted(file, secret);
  t.equal(o.version, 3, `${what}: data version 3`);
  t.equal(o.flags, 0n);
  t.same(o.tensors.map((x) => x.name), input.map((x) => x.name), `${what}: every tensor, in order`);
  for (const [k, x] of o.tensors.entries()) {
    t.ok(x.plaintext.equals(input[k]!.data), `${what}: ${x.name} decrypts to its input bytes`);
    t.ok(x.shaOk, `${what}: ${x.name}: its SHA-256 covers the header without crypt info, then the plaintext`);
    if (x.dataLength > 0) {
      t.notOk('crc32' in x.hashes, `${what}: ${x.name}: no CRC32`);
      t.equal(x.crypt.cipher?.kind === 'parallel' && x.crypt.cipher.macs.length, Math.ceil(x.dataLength / CRYPT_CHUNK_SIZE));
      t.equal(!!x.crypt.kdf, 'passphrase' in secret, `${what}: ${x.name}: a key-derivation chunk exactly when from a passphrase`);
    } else {
      t.same(x.crypt, {}, `${what}: ${x.name}: an empty crypt-info block`);
      t.ok('crc32' in x.hashes && 'sha256' in x.hashes);
    }
  }
  t.ok(o.noncesDisjoint, `${what}: no chunk nonce used twice`);
  return o;
}

t.test('serialize --encrypt: every tensor decrypts to its input (key raw and hex, passphrase, aligned and not)', { skip: noNative }, async (t) => {
  const dir = t.testdir();
  const st = join(dir, 'in.safetensors');
  const input = randomInput(st, 7);
  const key = bytes(32, 99);
  writeFileSync(join(dir, 'raw.key'), key);
  writeFileSync(join(dir, 'hex.key'), `${key.toString('hex')}\n`);
  writeFileSync(join(dir, 'pass.txt'), 'correct horse\n');
  const env = { TENSORIZE_KEY: undefined, TENSORIZE_PASSPHRASE: undefined };
  const runs: [string, string[], { key: Buffer } | { passphrase: string }, Record<string, string | undefined>][] = [
    ['raw key', ['--key-file', join(dir, 'raw.key')], { key }, env],
    ['hex key, --no-align', ['--key-file', join(dir, 'hex.key'), '--no-align'], { key }, env],
    ['TENSORIZE_KEY', [], { key }, { ...env, TENSORIZE_KEY: key.toString('hex') }],
    ['passphrase', ['--passphrase-file', join(dir, 'pass.txt'), '--kdf-ops', '1', '--kdf-mem', '8KiB'], { passphrase: 'correct horse' }, env],
    ['TENSORIZE_PASSPHRASE, --align 4096', ['--kdf-ops', '2', '--kdf-mem', '1MiB', '--align', '4096'], { passphrase: 'pw' }, { ...env, TENSORIZE_PASSPHRASE: 'pw' }],
  ];
  for (const [what, args, secret, e] of runs) {
    const out = join(dir, `${what.replace(/\W+/g, '_')}.tensors`);
    const r = await cli(['serialize', st, '-o', out, '--encrypt', '--json', ...args], e);
    t.equal(r.code, 0, `${what}: ${r.stderr}`);
    const doc = JSON.parse(r.stdout) as { encryption: { keyFrom: string; kdf?: { opslimit: number; memlimit: number }; encryptedTensors: number }; dataVersion: number };
    t.match(doc, { dataVersion: 3, encryption: { cipher: 'XSalsa20-Poly1305', keyFrom: 'key' in secret ? 'key' : 'passphrase', chunkSize: CRYPT_CHUNK_SIZE, encryptedTensors: 6 } }, `${what}: the report`);
    const o = await checkOutput(t, out, secret, input, what);
    if (what.includes('4096')) t.ok(o.tensors.every((x) => x.dataLength === 0 || x.dataOffset % 4096 === 0), `${what}: aligned`);
    if ('passphrase' in secret) t.same(doc.encryption.kdf && [doc.encryption.kdf.opslimit, doc.encryption.kdf.memlimit], what.includes('4096') ? [2, 1 << 20] : [1, 8192], `${what}: the KDF parameters asked for`);
    const text = await cli(['serialize', st, '-o', out, '--encrypt', ...args], e);
    t.match(text.stderr + text.stdout, 'key' in secret ? /encrypted \(XSalsa20-Poly1305, 2 MiB chunks, 6 tensor\(s\)\) with the key: read it with --key-file/ : /a key derived from the passphrase \(Argon2id/, `${what}: the summary says so`);
  }
  // Two runs of the same input: new nonces (and, from a passphrase, a new salt) each time.
  const a = await openEncrypted(join(dir, 'raw_key.tensors'), { key });
  const b = await openEncrypted(join(dir, 'TENSORIZE_KEY.tensors'), { key });
  t.notSame(a.tensors[0]!.crypt.cipher, b.tensors[0]!.crypt.cipher, 'fresh nonces per file');
  // A wrong key does not open it.
  await t.rejects(openEncrypted(join(dir, 'raw_key.tensors'), { key: bytes(32, 98) }), { code: 'E_DECRYPT' });
  // The library API, with a meta tensor (not expressible in safetensors): v4 + flag bit 0.
  const meta = join(dir, 'meta.tensors');
  const s = await writeTensorizer(
    meta,
    [
      { path: ['w'], type: TensorType.STATE_DICT, dtype: f32, shape: [input[1]!.data.length / 4], data: { path: st, ranges: [{ offset: readFileSync(st).indexOf(input[1]!.data), length: input[1]!.data.length }] } },
      { path: ['m'], type: TensorType.STATE_DICT, dtype: f32, shape: [3, 3], meta: true },
    ],
    { encryption: { key: key.toString('hex') } },
  );
  t.match(s, { version: 4, encryption: { keyFrom: 'key', encryptedTensors: 1 } });
  const mo = await openEncrypted(meta, { key });
  t.equal(mo.flags, 1n, 'a meta tensor: flag bit 0');
  t.ok(mo.tensors[0]!.plaintext.equals(input[1]!.data) && mo.tensors.every((x) => x.shaOk));
  t.same(mo.tensors[1]!.crypt, {}, 'the meta tensor: an empty crypt-info block');
});

/** Each tensor's data bytes in a plain .tensors file. */
async function plainData(file: string): Promise<Map<string, Buffer>> {
  const o = await openEncrypted(file, { key: Buffer.alloc(32) });
  return new Map(o.tensors.map((x) => [x.name, x.plaintext]));
}

const PT = join(ROOT, 'fixtures', 'pytorch');

t.test('serialize --encrypt of PyTorch strided views and big-endian tensors (gathered first): the bytes a plain serialize writes', { skip: noNative }, async (t) => {
  const dir = t.testdir();
  const key = bytes(32, 40);
  writeFileSync(join(dir, 'k.key'), key);
  for (const f of ['zip.pt', 'big_endian.pt']) {
    const plain = join(dir, `${f}.plain.tensors`);
    const enc = join(dir, `${f}.enc.tensors`);
    const a = await cli(['serialize', join(PT, f), '-o', plain, '-q']);
    t.equal(a.code, 0, a.stderr);
    const b = await cli(['serialize', join(PT, f), '-o', enc, '-q', '--encrypt', '--key-file', join(dir, 'k.key')], { TENSORIZE_KEY: undefined });
    t.equal(b.code, 0, `${f}: ${b.stderr}`);
    if (b.code !== 0) continue;
    const want = await plainData(plain);
    const o = await openEncrypted(enc, { key });
    t.same(o.tensors.map((x) => x.name), [...want.keys()]);
    t.same(o.tensors.filter((x) => !x.shaOk || !x.plaintext.equals(want.get(x.name)!)).map((x) => x.name), [], `${f}: every tensor decrypts to the bytes of a plain serialize`);
    t.ok(o.noncesDisjoint);
  }
});

t.test('serialize --encrypt -o s3://: the object decrypts to the input; gathered PyTorch views too', { skip: noNative }, async (t) => {
  const dir = t.testdir();
  const s3 = await startS3(join(dir, 'data'));
  t.teardown(() => s3.close());
  Object.assign(process.env, S3_ENV);
  t.teardown(() => {
    for (const k of Object.keys(S3_ENV)) delete process.env[k];
  });
  const { client } = makeS3Client({ endpoint: s3.endpoint });
  t.teardown(() => client.destroy());
  const st = join(dir, 'in.safetensors');
  const input = randomInput(st, 3);
  const key = bytes(32, 5);
  writeFileSync(join(dir, 'k.key'), key);
  const r = await cli(['serialize', st, '-o', 's3://b/enc/model.tensors', '--endpoint', s3.endpoint, '--part-size', '5MiB', '--encrypt', '--key-file', join(dir, 'k.key'), '--json']);
  t.equal(r.code, 0, r.stderr);
  const got = await client.send(new GetObjectCommand({ Bucket: 'b', Key: 'enc/model.tensors' }));
  const file = join(dir, 'object.tensors');
  writeFileSync(file, Buffer.from(await got.Body!.transformToByteArray()));
  await checkOutput(t, file, { key }, input, 's3');
  // PyTorch views, gathered before pass 1.
  const plain = join(dir, 'zip.plain.tensors');
  t.equal((await cli(['serialize', join(PT, 'zip.pt'), '-o', plain, '-q'])).code, 0);
  const v = await cli(['serialize', join(PT, 'zip.pt'), '-o', 's3://b/enc/zip.tensors', '--endpoint', s3.endpoint, '--encrypt', '--key-file', join(dir, 'k.key'), '-q']);
  t.equal(v.code, 0, v.stderr);
  const zip = await client.send(new GetObjectCommand({ Bucket: 'b', Key: 'enc/zip.tensors' }));
  writeFileSync(join(dir, 'zip.tensors'), Buffer.from(await zip.Body!.transformToByteArray()));
  const want = await plainData(plain);
  const o = await openEncrypted(join(dir, 'zip.tensors'), { key });
  t.same(o.tensors.filter((x) => !x.shaOk || !x.plaintext.equals(want.get(x.name)!)).map((x) => x.name), [], 'zip.pt via S3: every tensor decrypts to the bytes of a plain serialize');
});

t.test('serialize --encrypt of an http:// input: downloaded first (with a warning), then encrypted', { skip: noNative }, async (t) => {
  const dir = t.testdir();
  const input = randomInput(join(dir, 'in.safetensors'), 50);
  const http = await startHttpServer(dir);
  t.teardown(() => http.close());
  const key = bytes(32, 51);
  writeFileSync(join(dir, 'k.key'), key);
  const out = join(dir, 'net.tensors');
  const r = await cli(['serialize', `${http.url}/in.safetensors`, '-o', out, '--encrypt', '--key-file', join(dir, 'k.key')], { TENSORIZE_KEY: undefined });
  t.equal(r.code, 0, r.stderr);
  t.match(r.stderr, /in\.safetensors is to be encrypted, which the network reader does not do; downloading it \(\d+ bytes\) to a temporary file first/);
  await checkOutput(t, out, { key }, input, 'http input');
});
