/**
 * Encrypted files as tensorizer 2.11.1 wrote them (../shared/vectors/encrypted_*_v3: a key,
 * and a passphrase with libsodium's MIN Argon2id limits; tensor "a" spans two 2 MiB chunks),
 * read by every command that reads tensor data: verify, load (host --plaid, simple, --mmap;
 * simulated cuda:0 --plaid and simple; with and without --verify; local and over HTTP) and
 * export, each tensor's bytes compared with the SHA-256 in the vector's manifest. Then
 * everything that must fail, and how: a flipped bit of data, a MAC or a nonce, a wrong key
 * or passphrase (E_DECRYPT naming the tensor, nothing handed out, no output file left, the
 * simulated device empty); no key for an encrypted file, a key for a plain one, a passphrase
 * for a key-encrypted file, a bad key file, an Argon2id cost over tensorize's bound (E_KEY);
 * both kinds of key given (usage, exit 2). Writing (serialize --encrypt) and files written
 * by tensorizer 2.11/2.12 at random: test/encryption-interop.test.ts.
 */
process.env.TENSORIZE_SIM_GPU = '2';

import t, { type Test } from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TensorizerFile } from '../src/format/reader.js';
import { decodeCrypt } from '../src/format/crypt.js';
import { load } from '../src/ops/load.js';
import { verifyFile } from '../src/ops/verify.js';
import { exportSafetensors } from '../src/ops/export.js';
import { native, nativeAvailable } from '../src/native/binding.js';
import { FileSource } from '../src/sources/file.js';
import { startHttpServer } from './helpers/servers.js';
import { runCli, sha256, VECTORS } from './helpers/util.js';

const why = nativeAvailable() ? false : 'the native addon is not built (npm run build:native): decryption is native';
const KEYV = join(VECTORS, 'encrypted_key_v3.tensors');
const PASSV = join(VECTORS, 'encrypted_pass_v3.tensors');
const PLAIN = join(VECTORS, 'dtypes_v1.tensors');
const manifest = (f: string) => JSON.parse(readFileSync(f.replace(/\.tensors$/, '.json'), 'utf8')) as { key_hex?: string; passphrase?: string; tensors: { name: string; sha256: string }[] };
const KEY_HEX = manifest(KEYV).key_hex!;
const PASS = manifest(PASSV).passphrase!;
const want = (f: string) => Object.fromEntries(manifest(f).tensors.map((x) => [x.name, x.sha256]));

function nothingHeld(t: Test, what: string): void {
  const c = native().simCounts();
  t.same({ allocations: c.allocations, registrations: c.registrations, streams: c.streams, deviceBytes: c.deviceBytes }, { allocations: 0, registrations: 0, streams: 0, deviceBytes: 0 }, `${what}: nothing left on the simulated device`);
}

/** Key and passphrase files, and the CLI options that name them. */
function secrets(dir: string) {
  const hex = join(dir, 'key.hex');
  const raw = join(dir, 'key.bin');
  const pass = join(dir, 'pass.txt');
  writeFileSync(hex, `${KEY_HEX}\n`);
  writeFileSync(raw, Buffer.from(KEY_HEX, 'hex'));
  writeFileSync(pass, `${PASS}\n`);
  return { hex, raw, pass, key: ['--key-file', hex], passphrase: ['--passphrase-file', pass] };
}

/** A copy of `f` with one byte XORed: at `at`, or (a function) where it says in the parsed file. */
async function tampered(dir: string, f: string, name: string, where: (tf: TensorizerFile) => Promise<number>): Promise<string> {
  const src = await FileSource.open(f);
  const at = await where(await TensorizerFile.open(src)).finally(() => src.close());
  const b = readFileSync(f);
  b[at]! ^= 0x20;
  const out = join(dir, name);
  writeFileSync(out, b);
  return out;
}

/** Tensor "a"'s header: its file offset, raw bytes and crypt info. */
async function headerOfA(tf: TensorizerFile) {
  const h = (await tf.readHeaders()).find((x) => x.entry.name === 'a')!;
  return { at: h.entry.headerOffset, raw: h.raw, crypt: decodeCrypt(h.header.crypt!.chunks, h.header.dataLength, 'a'), entry: h.entry };
}

t.test('verify decrypts and checks every hash: a key (hex, raw, TENSORIZE_KEY) and a passphrase (file, TENSORIZE_PASSPHRASE)', { skip: why }, async (t) => {
  const s = secrets(t.testdir());
  const runs: [string, string[], Record<string, string>][] = [
    ['hex key file', [KEYV, '--key-file', s.hex], {}],
    ['raw key file', [KEYV, '--key-file', s.raw], {}],
    ['TENSORIZE_KEY', [KEYV], { TENSORIZE_KEY: KEY_HEX }],
    ['passphrase file', [PASSV, '--passphrase-file', s.pass], {}],
    ['TENSORIZE_PASSPHRASE', [PASSV], { TENSORIZE_PASSPHRASE: PASS }],
  ];
  for (const [what, args, env] of runs) {
    const r = await runCli(['verify', ...args, '--json'], env);
    t.equal(r.code, 0, `${what}: ${r.stderr}`);
    if (r.code === 0) t.match(JSON.parse(r.stdout), { ok: true, encrypted: 3, tensors: 3, failures: [] }, what);
  }
  const human = await runCli(['verify', KEYV, '--key-file', s.hex]);
  t.match(human.stderr + human.stdout, /3 tensors \(3 encrypted, decrypted and authenticated\)/);
});

t.test('load decrypts in every mode, on the host and the simulated GPU, with and without --verify', { skip: why }, async (t) => {
  const modes = [
    { device: 'cpu', plaid: true },
    { device: 'cpu', plaid: false },
    { device: 'cpu', mmap: true },
    { device: 'cuda:0', plaid: true },
    { device: 'cuda:0', plaid: false },
  ];
  for (const [f, decryption] of [
    [KEYV, { key: KEY_HEX }],
    [PASSV, { passphrase: PASS }],
  ] as const) {
    for (const m of modes) {
      for (const verify of [false, true]) {
        for (const readers of [1, 3]) {
          const what = `${f.split('/').pop()} ${JSON.stringify(m)} verify ${verify} readers ${readers}`;
          const model = await load(f, { ...m, verify, readers, chunkSize: 1 << 20, decryption });
          for (const x of model.tensors) t.equal(sha256(model.read(x.name)), want(f)[x.name], `${what}: ${x.name}`);
          t.match(model.stats.encryption, { tensors: 3, keyFrom: 'key' in decryption ? 'key' : 'passphrase' }, what);
          model.close();
          nothingHeld(t, what);
        }
      }
    }
  }
});

t.test('over HTTP: the native fetcher decrypts into host memory, the simulated GPU and for verify', { skip: why }, async (t) => {
  const http = await startHttpServer(VECTORS);
  t.teardown(() => http.close());
  const url = `${http.url}/encrypted_key_v3.tensors`;
  for (const device of ['cpu', 'cuda:0']) {
    for (const opts of [
      { verify: true, concurrency: 3, chunkSize: 4096 },
      { verify: false, concurrency: 1, chunkSize: 1 << 20 },
    ]) {
      const model = await load(url, { device, ...opts, decryption: { key: KEY_HEX } });
      for (const x of model.tensors) t.equal(sha256(model.read(x.name)), want(KEYV)[x.name], `${device} ${JSON.stringify(opts)}: ${x.name}`);
      model.close();
      nothingHeld(t, `http ${device}`);
    }
  }
  const s = secrets(t.testdir());
  const r = await runCli(['verify', url, '--key-file', s.hex, '--json']);
  t.equal(r.code, 0, r.stderr);
  const bad = await runCli(['load', url, '--device', 'cpu', '--passphrase-file', s.pass]);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /was encrypted with a key, not a passphrase/);
});

t.test('export decrypts every tensor into a safetensors file', { skip: why }, async (t) => {
  const dir = t.testdir();
  for (const [f, decryption] of [
    [KEYV, { key: Buffer.from(KEY_HEX, 'hex') }],
    [PASSV, { passphrase: Buffer.from(PASS) }],
  ] as const) {
    const out = join(dir, `${f.split('/').pop()}.safetensors`);
    const src = await FileSource.open(f);
    await exportSafetensors(src, out, { decryption }).finally(() => src.close());
    const b = readFileSync(out);
    const n = Number(b.readBigUInt64LE(0));
    const header = JSON.parse(b.subarray(8, 8 + n).toString()) as Record<string, { data_offsets: [number, number] }>;
    for (const [name, sha] of Object.entries(want(f))) {
      const [s0, s1] = header[name]!.data_offsets;
      t.equal(sha256(b.subarray(8 + n + s0, 8 + n + s1)), sha, `${f.split('/').pop()}: ${name}`);
    }
  }
});

t.test('a changed byte of data, MAC or nonce, or a wrong key: E_DECRYPT naming the tensor in every command, nothing handed out', { skip: why }, async (t) => {
  const dir = t.testdir();
  const s = secrets(dir);
  const wrong = join(dir, 'wrong.hex');
  writeFileSync(wrong, 'ab'.repeat(32));
  const wrongPass = join(dir, 'wrong.txt');
  writeFileSync(wrongPass, 'incorrect horse');
  const cases: [string, string, string[]][] = [
    // The second chunk of "a": only a full read finds it (info checks the first chunk).
    ['data of chunk 1', await tampered(dir, KEYV, 'data.tensors', async (tf) => (await headerOfA(tf)).entry.dataOffset + (2 << 20) + 12345), s.key],
    ['data of chunk 0', await tampered(dir, KEYV, 'data0.tensors', async (tf) => (await headerOfA(tf)).entry.dataOffset + 7), s.key],
    [
      'a MAC',
      await tampered(dir, KEYV, 'mac.tensors', async (tf) => {
        const h = await headerOfA(tf);
        const c = h.crypt.cipher!;
        if (c.kind !== 'parallel') throw new Error('expected a parallel cipher');
        return h.at + h.raw.indexOf(c.macs[1]!) + 3;
      }),
      s.key,
    ],
    [
      'the nonce',
      await tampered(dir, KEYV, 'nonce.tensors', async (tf) => {
        const h = await headerOfA(tf);
        return h.at + h.raw.indexOf(h.crypt.cipher!.nonce) + 23;
      }),
      s.key,
    ],
    ['a wrong key', KEYV, ['--key-file', wrong]],
    ['a wrong passphrase', PASSV, ['--passphrase-file', wrongPass]],
  ];
  for (const [what, file, key] of cases) {
    for (const cmd of [['verify'], ['load', '--device', 'cpu', '--plaid'], ['load', '--device', 'cpu', '--mmap', '--verify'], ['load', '--device', 'cuda:0', '--plaid'], ['export', '-o', join(dir, 'out.safetensors')]]) {
      const r = await runCli([cmd[0]!, file, ...cmd.slice(1), ...key]);
      t.equal(r.code, 1, `${what}, ${cmd.join(' ')}: exit 1`);
      // A wrong key fails whichever tensor is decrypted first (the readers run in parallel).
      t.match(r.stderr, what.startsWith('a wrong') ? /tensor "[abc]"/ : /tensor "a"/, `${what}, ${cmd.join(' ')}: names the tensor`);
      t.match(r.stderr, /decryption failed at chunk [01] .*the key or passphrase is wrong, or the data or its MAC was changed/, `${what}, ${cmd.join(' ')}: says why`);
      t.notOk(existsSync(join(dir, 'out.safetensors')), `${what}, ${cmd.join(' ')}: no output file`);
    }
    // In-process: the load rejects with E_DECRYPT and leaves nothing allocated.
    for (const device of ['cpu', 'cuda:0']) {
      const decryption = key[0] === '--key-file' ? { key: readFileSync(key[1]!, 'utf8').trim() } : { passphrase: readFileSync(key[1]!, 'utf8') };
      await t.rejects(load(file, { device, decryption }), { code: 'E_DECRYPT', message: what.startsWith('a wrong') ? /"[abc]"/ : /"a"/ }, `${what}: load to ${device}`);
      nothingHeld(t, `${what} on ${device}`);
    }
  }
});

t.test('keys: none for an encrypted file, one for a plain file, the wrong kind, a bad key file, both kinds', { skip: why }, async (t) => {
  const dir = t.testdir();
  const s = secrets(dir);
  const short = join(dir, 'short.key');
  writeFileSync(short, Buffer.alloc(31, 1));
  const commands = (f: string) => [['verify', f], ['load', f, '--device', 'cpu'], ['export', f, '-o', join(dir, 'x.safetensors')], ['info', f]];
  for (const args of commands(KEYV).filter((c) => c[0] !== 'info')) {
    const r = await runCli(args);
    t.equal(r.code, 1, `${args[0]} without a key`);
    t.match(r.stderr, /tensor "a" \(#0\) is encrypted; give its key \(--key-file PATH or TENSORIZE_KEY\)/, `${args[0]} without a key`);
  }
  for (const args of commands(PLAIN)) {
    for (const key of [s.key, s.passphrase]) {
      const r = await runCli([...args, ...key]);
      t.equal(r.code, 1, `${args[0]} of a plain file with ${key[0]}`);
      t.match(r.stderr, /is not encrypted, but a (key|passphrase) was given/, `${args[0]} of a plain file with ${key[0]}`);
    }
    const env = await runCli(args, { TENSORIZE_KEY: KEY_HEX });
    t.equal(env.code, 1, `${args[0]} of a plain file with TENSORIZE_KEY`);
  }
  for (const args of commands(KEYV)) {
    const r = await runCli([...args, ...s.passphrase]);
    t.equal(r.code, 1, `${args[0]}: a passphrase for a key-encrypted file`);
    t.match(r.stderr, /was encrypted with a key, not a passphrase/);
    const bad = await runCli([...args, '--key-file', short]);
    t.equal(bad.code, 1, `${args[0]}: a 31-byte key file`);
    t.match(bad.stderr, /a key is 32 bytes, or 64 hexadecimal characters/);
    const both = await runCli([...args, ...s.key, ...s.passphrase]);
    t.equal(both.code, 2, `${args[0]}: --key-file and --passphrase-file`);
    const missing = await runCli([...args, '--key-file', join(dir, 'nope.key')]);
    t.equal(missing.code, 1, `${args[0]}: a key file that does not exist`);
    t.match(missing.stderr, /nope\.key/);
  }
  t.notOk(existsSync(join(dir, 'x.safetensors')), 'no export output was left');
  // The library: the same rules.
  const src = await FileSource.open(PLAIN);
  t.teardown(() => src.close());
  await t.rejects(verifyFile(src, { decryption: { key: KEY_HEX } }), { code: 'E_KEY' });
  await t.rejects(load(KEYV, { device: 'cpu' }), { code: 'E_KEY' });
  await t.rejects(load(KEYV, { device: 'cpu', decryption: { key: 'f7' } }), { code: 'E_KEY', message: /32 bytes/ });
});

t.test('an Argon2id cost over tensorize\'s bound is refused before any key is derived', { skip: why }, async (t) => {
  const dir = t.testdir();
  const s = secrets(dir);
  // opslimit 2^20 (the most the format check accepts) with the file's 8 KiB: within bounds;
  // with 256 MiB (set below) 2^48 bytes of work, over the 64 GiB bound.
  const b = readFileSync(PASSV);
  const src = await FileSource.open(PASSV);
  const tf = await TensorizerFile.open(src);
  for (const { entry, header, raw } of await tf.readHeaders()) {
    const kdf = raw.indexOf(decodeCrypt(header.crypt!.chunks, header.dataLength, entry.name).kdf!.salt);
    // Payload: u16 method, u64 opslimit, u64 memlimit, i32 alg, u16 salt length, salt.
    const ops = entry.headerOffset + kdf - 2 - 4 - 8 - 8;
    b.writeBigUInt64LE(2n ** 20n, ops);
    b.writeBigUInt64LE(2n ** 28n, ops + 8);
  }
  await src.close();
  const f = join(dir, 'costly.tensors');
  writeFileSync(f, b);
  // (The derivation itself would take hours: the test finishing at all shows it did not run.)
  const r = await runCli(['verify', f, ...s.passphrase]);
  t.equal(r.code, 1);
  t.match(r.stderr, /asks for opslimit 1048576 x memlimit 268435456 bytes, over tensorize's limit/);
});
