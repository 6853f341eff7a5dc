/**
 * An encrypted .tensors file read in the test process, independently of the engines: every
 * tensor's crypt info decoded, its data authenticated and decrypted chunk by chunk with the
 * addon's open() (libsodium), and its SHA-256 recomputed over the header without the
 * crypt-info segment then the plaintext. An oracle for files serialize --encrypt writes.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { decodeCrypt, nonceValue, type TensorCrypt } from '../../src/format/crypt.js';
import { hashedHeaderParts } from '../../src/format/header.js';
import { TensorizerFile } from '../../src/format/reader.js';
import { native } from '../../src/native/binding.js';
import { FileSource } from '../../src/sources/file.js';

export interface OpenedTensor {
  name: string;
  dataLength: number;
  crypt: TensorCrypt;
  /** The stored hashes, as hex. */
  hashes: { crc32?: string; sha256?: string };
  /** The decrypted data (the data itself when not encrypted). */
  plaintext: Buffer;
  /** The SHA-256 over the hashed header bytes and the plaintext equals the stored one. */
  shaOk: boolean;
  headerOffset: number;
  dataOffset: number;
}

export interface OpenedFile {
  version: number;
  flags: bigint;
  hasCryptInfo: boolean;
  tensors: OpenedTensor[];
  /** Every encrypted tensor's chunk nonces are disjoint from every other's. */
  noncesDisjoint: boolean;
}

/** `key`: 32 bytes, or derive it from `passphrase` with each tensor's parameters. Throws E_DECRYPT on a MAC failure. */
export async function openEncrypted(path: string, secret: { key: Buffer } | { passphrase: string }): Promise<OpenedFile> {
  const bytes = readFileSync(path);
  const src = await FileSource.open(path);
  try {
    const tf = await TensorizerFile.open(src);
    const headers = await tf.readHeaders();
    const tensors: OpenedTensor[] = [];
    const ranges: [bigint, bigint][] = [];
    const keys = new Map<string, Buffer>();
    for (const { entry, header, raw } of headers) {
      const crypt = decodeCrypt(header.crypt?.chunks ?? [], header.dataLength, entry.name);
      const data = Buffer.from(bytes.subarray(entry.dataOffset, entry.dataOffset + header.dataLength));
      if (crypt.cipher?.kind === 'parallel') {
        let key: Buffer;
        if ('key' in secret) key = secret.key;
        else {
          const kdf = crypt.kdf!;
          const id = `${kdf.opslimit}:${kdf.memlimit}:${kdf.salt.toString('hex')}`;
          key = keys.get(id) ?? (await native().deriveKey(Buffer.from(secret.passphrase), kdf.salt, kdf.opslimit, kdf.memlimit));
          keys.set(id, key);
        }
        const c = crypt.cipher;
        native().open(key, c.nonce, c.chunkSize, Buffer.concat(c.macs), data.length, 0, data);
        const lo = nonceValue(c.nonce);
        ranges.push([lo, lo + BigInt(c.macs.length)]);
      }
      const sha = createHash('sha256');
      for (const p of hashedHeaderParts(raw, header)) sha.update(p);
      sha.update(data);
      const stored = Object.fromEntries(header.hashes.map((h) => [h.type === 0 ? 'crc32' : 'sha256', h.value.toString('hex')]));
      tensors.push({
        name: entry.name,
        dataLength: header.dataLength,
        crypt,
        hashes: stored,
        plaintext: data,
        shaOk: stored.sha256 === sha.digest('hex'),
        headerOffset: entry.headerOffset,
        dataOffset: entry.dataOffset,
      });
    }
    ranges.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const noncesDisjoint = ranges.every((r, i) => i === 0 || ranges[i - 1]![1] <= r[0]);
    return { version: tf.info.version, flags: tf.info.flags, hasCryptInfo: tf.info.hasCryptInfo, tensors, noncesDisjoint };
  } finally {
    await src.close();
  }
}
