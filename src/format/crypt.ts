/**
 * A tensor's crypt info (reference §6.4, §9), decoded and checked: how its data is encrypted
 * (XSalsa20-Poly1305 per chunk, "parallel"; or one secretbox, "sequential") and, when the
 * key comes from a passphrase, the key derivation (Argon2id through libsodium's pwhash).
 * Pure: bytes in, a description or an E_FORMAT error out. Decryption itself is elsewhere.
 */
import { TensorizeError } from '../errors.js';
import type { CryptChunk } from './header.js';

/** Chunk types (§6.4). */
export const CryptChunkType = { KDF: 1, XSALSA20_PARALLEL: 2, XSALSA20_SEQUENTIAL: 3 } as const;

/** libsodium's crypto_pwhash_ALG_ARGON2ID13: the only algorithm tensorizer accepts. */
export const ARGON2ID13 = 2;
export const NONCE_BYTES = 24;
export const MAC_BYTES = 16;
export const SALT_BYTES = 16;

/** Argon2id parameters as libsodium takes them (t = opslimit, m = memlimit / 1 KiB, p = 1). */
export interface KeyDerivation {
  opslimit: number;
  memlimit: number;
  salt: Buffer;
}

export type Cipher =
  | { kind: 'parallel'; chunkSize: number; nonce: Buffer; macs: Buffer[] }
  | { kind: 'sequential'; nonce: Buffer; mac: Buffer };

export interface TensorCrypt {
  /** Present when the key is derived from a passphrase. */
  kdf?: KeyDerivation;
  /** Absent in an empty crypt-info block (a meta or zero-length tensor: not encrypted). */
  cipher?: Cipher;
}

/** Bytes of a payload, read in order; every field must fit, and nothing may be left over. */
class Fields {
  private o = 0;
  constructor(
    private readonly b: Buffer,
    private readonly what: string,
  ) {}
  private need(n: number, field: string): void {
    if (this.o + n > this.b.length) throw new TensorizeError('E_FORMAT', `${this.what}: ${field} runs past the end of its chunk (${this.b.length} bytes)`);
  }
  u16(field: string): number {
    this.need(2, field);
    return this.b.readUInt16LE((this.o += 2) - 2);
  }
  i32(field: string): number {
    this.need(4, field);
    return this.b.readInt32LE((this.o += 4) - 4);
  }
  u64(field: string): bigint {
    this.need(8, field);
    return this.b.readBigUInt64LE((this.o += 8) - 8);
  }
  bytes(n: number, field: string): Buffer {
    this.need(n, field);
    return this.b.subarray(this.o, (this.o += n));
  }
  end(): void {
    if (this.o !== this.b.length) throw new TensorizeError('E_FORMAT', `${this.what}: ${this.b.length - this.o} unexpected bytes after its fields`);
  }
}

/** The largest opslimit and memlimit accepted (libsodium's own maxima are far larger; these keep a hostile file from asking for hours or terabytes). */
export const MAX_OPSLIMIT = 2 ** 20;
export const MAX_MEMLIMIT = 2 ** 42;

/**
 * Decode a tensor's crypt chunks. `dataLength`: its data's length (the number of MACs must
 * fit it). `where` names the tensor in errors.
 */
export function decodeCrypt(chunks: readonly CryptChunk[], dataLength: number, where: string): TensorCrypt {
  const out: TensorCrypt = {};
  for (const c of chunks) {
    const what = `${where}: crypt chunk of type ${c.type}`;
    const f = new Fields(c.payload, what);
    if (c.type === CryptChunkType.KDF) {
      if (out.kdf) throw new TensorizeError('E_FORMAT', `${where}: two key-derivation chunks`);
      const method = f.u16('method');
      if (method !== 1) throw new TensorizeError('E_FORMAT', `${what}: key-derivation method ${method} is unknown (1: libsodium pwhash)`);
      const ops = f.u64('opslimit');
      const mem = f.u64('memlimit');
      const alg = f.i32('algorithm');
      const saltLen = f.u16('salt length');
      const salt = f.bytes(saltLen, 'salt');
      f.end();
      if (alg !== ARGON2ID13) throw new TensorizeError('E_FORMAT', `${what}: pwhash algorithm ${alg} is not Argon2id v1.3 (2)`);
      if (saltLen !== SALT_BYTES) throw new TensorizeError('E_FORMAT', `${what}: a salt of ${saltLen} bytes (Argon2id's is ${SALT_BYTES})`);
      if (ops < 1n || ops > BigInt(MAX_OPSLIMIT)) throw new TensorizeError('E_FORMAT', `${what}: opslimit ${ops} is out of range (1..${MAX_OPSLIMIT})`);
      if (mem < 8192n || mem > BigInt(MAX_MEMLIMIT)) throw new TensorizeError('E_FORMAT', `${what}: memlimit ${mem} is out of range (8 KiB..4 TiB)`);
      out.kdf = { opslimit: Number(ops), memlimit: Number(mem), salt: Buffer.from(salt) };
    } else if (c.type === CryptChunkType.XSALSA20_PARALLEL || c.type === CryptChunkType.XSALSA20_SEQUENTIAL) {
      if (out.cipher) throw new TensorizeError('E_FORMAT', `${where}: two encryption chunks`);
      if (c.type === CryptChunkType.XSALSA20_SEQUENTIAL) {
        out.cipher = { kind: 'sequential', nonce: Buffer.from(f.bytes(NONCE_BYTES, 'nonce')), mac: Buffer.from(f.bytes(MAC_BYTES, 'MAC')) };
        f.end();
        continue;
      }
      const size = f.u64('chunk size');
      const nonce = Buffer.from(f.bytes(NONCE_BYTES, 'nonce'));
      const n = f.u64('MAC count');
      if (size < 1024n || size % 64n !== 0n || size > 2n ** 40n) throw new TensorizeError('E_FORMAT', `${what}: chunk size ${size} is not a multiple of 64 of at least 1024`);
      const want = dataLength === 0 ? 0 : Math.ceil(dataLength / Number(size));
      if (n !== BigInt(want)) throw new TensorizeError('E_FORMAT', `${what}: ${n} MACs for ${dataLength} bytes in chunks of ${size} (expected ${want})`);
      const macs: Buffer[] = [];
      for (let i = 0; i < want; i++) macs.push(Buffer.from(f.bytes(MAC_BYTES, `MAC ${i}`)));
      f.end();
      out.cipher = { kind: 'parallel', chunkSize: Number(size), nonce, macs };
    } else {
      throw new TensorizeError('E_FORMAT', `${where}: crypt chunk type ${c.type} is unknown (1: key derivation, 2 and 3: XSalsa20-Poly1305)`);
    }
  }
  if (out.kdf && !out.cipher) throw new TensorizeError('E_FORMAT', `${where}: a key-derivation chunk without an encryption chunk`);
  return out;
}

/** How a file is encrypted, in words and as JSON (what `info` says without a key). */
export interface EncryptionSummary {
  cipher: 'XSalsa20-Poly1305';
  /** `key`: a 32-byte key is needed; `passphrase`: the key is derived from one (Argon2id). */
  keyFrom: 'key' | 'passphrase';
  kdf?: { algorithm: 'Argon2id v1.3'; opslimit: number; memlimit: number; salt: string };
  chunkSize?: number;
  encryptedTensors: number;
}

export function describeEncryption(c: TensorCrypt, encryptedTensors: number): EncryptionSummary {
  return {
    cipher: 'XSalsa20-Poly1305',
    keyFrom: c.kdf ? 'passphrase' : 'key',
    ...(c.kdf ? { kdf: { algorithm: 'Argon2id v1.3' as const, opslimit: c.kdf.opslimit, memlimit: c.kdf.memlimit, salt: c.kdf.salt.toString('hex') } } : {}),
    ...(c.cipher?.kind === 'parallel' ? { chunkSize: c.cipher.chunkSize } : {}),
    encryptedTensors,
  };
}

/**
 * The encrypted tensors of a file (those with a cipher), after the one rule across tensors:
 * either every tensor with data is encrypted or none is (tensorizer writes no other kind,
 * and reads no other: E_FORMAT naming the first tensor that breaks it). Tensors without
 * data carry an empty crypt-info block either way.
 */
export function encryptedTensors<T extends { name: string; index: number; dataLength: number; crypt: TensorCrypt }>(file: string, tensors: readonly T[]): T[] {
  const withData = tensors.filter((t) => t.dataLength > 0);
  const enc = withData.filter((t) => t.crypt.cipher);
  if (enc.length > 0 && enc.length < withData.length) {
    const plain = withData.find((t) => !t.crypt.cipher)!;
    throw new TensorizeError(
      'E_FORMAT',
      `${file}: tensor ${JSON.stringify(plain.name)} (#${plain.index}) is not encrypted but ${enc.length} other tensor(s) are, e.g. ${JSON.stringify(enc[0]!.name)}; tensorizer writes and reads only files whose tensors are all encrypted or all not`,
    );
  }
  return enc;
}

// ---------------------------------------------------------------------------------------
// The writer's side (serialize --encrypt): crypt-info blocks as tensorizer writes them.

/** The chunk size tensorizer encrypts in (and the only one it writes): 2 MiB. */
export const CRYPT_CHUNK_SIZE = 2 * 1024 * 1024;
/** A key-derivation chunk's bytes: u64 length, u16 type, u16 method, u64 ops, u64 mem, i32 alg, u16 salt length, salt. */
const KDF_CHUNK_BYTES = 8 + 2 + 2 + 8 + 8 + 4 + 2 + SALT_BYTES;
/** An XSalsa20 "parallel" chunk's bytes before its MACs: u64 length, u16 type, u64 chunk size, nonce, u64 MAC count. */
const CIPHER_CHUNK_BYTES = 8 + 2 + 8 + NONCE_BYTES + 8;

/** How a file is encrypted, as far as the sizes of its headers go (the nonces come later). */
export interface CryptLayout {
  chunkSize: number;
  /** Present when the key comes from a passphrase: written into every encrypted tensor's header. */
  kdf?: KeyDerivation;
}

/** Chunks (and MACs) of `dataLength` bytes of data. */
export const chunkCount = (dataLength: number, chunkSize: number): number => Math.ceil(dataLength / chunkSize);

/**
 * The size of a crypt-info segment (u64 body length + body): an empty block (a tensor without
 * data in an encrypted file: 10 bytes), or one for a tensor of `macs` chunks.
 */
export function cryptInfoSize(layout: CryptLayout, macs: number | undefined): number {
  if (macs === undefined) return 8 + 2;
  return 8 + 2 + (layout.kdf ? KDF_CHUNK_BYTES : 0) + CIPHER_CHUNK_BYTES + MAC_BYTES * macs;
}

/**
 * A crypt-info segment (reference §6.4) with its MACs zeroed: the key-derivation chunk (when
 * the key comes from a passphrase) then the cipher chunk, or (`cipher` absent) an empty
 * block. `macsOffset`: where the MACs start inside the segment (fill them in with setMacs).
 */
export function encodeCryptInfo(layout: CryptLayout, cipher: { nonce: Buffer; macs: number } | undefined): { buf: Buffer; macsOffset: number } {
  const b = Buffer.alloc(cryptInfoSize(layout, cipher?.macs));
  let o = 0;
  b.writeBigUInt64LE(BigInt(b.length - 8), o); o += 8;
  if (!cipher) {
    b.writeUInt16LE(0, o);
    return { buf: b, macsOffset: b.length };
  }
  if (cipher.nonce.length !== NONCE_BYTES) throw new Error(`internal: a nonce of ${cipher.nonce.length} bytes`);
  const kdf = layout.kdf;
  b.writeUInt16LE(kdf ? 2 : 1, o); o += 2;
  if (kdf) {
    if (kdf.salt.length !== SALT_BYTES) throw new Error(`internal: a salt of ${kdf.salt.length} bytes`);
    b.writeBigUInt64LE(BigInt(KDF_CHUNK_BYTES - 8), o); o += 8;
    b.writeUInt16LE(CryptChunkType.KDF, o); o += 2;
    b.writeUInt16LE(1, o); o += 2; // method 1: libsodium pwhash
    b.writeBigUInt64LE(BigInt(kdf.opslimit), o); o += 8;
    b.writeBigUInt64LE(BigInt(kdf.memlimit), o); o += 8;
    b.writeInt32LE(ARGON2ID13, o); o += 4;
    b.writeUInt16LE(SALT_BYTES, o); o += 2;
    kdf.salt.copy(b, o); o += SALT_BYTES;
  }
  b.writeBigUInt64LE(BigInt(CIPHER_CHUNK_BYTES - 8 + MAC_BYTES * cipher.macs), o); o += 8;
  b.writeUInt16LE(CryptChunkType.XSALSA20_PARALLEL, o); o += 2;
  b.writeBigUInt64LE(BigInt(layout.chunkSize), o); o += 8;
  cipher.nonce.copy(b, o); o += NONCE_BYTES;
  b.writeBigUInt64LE(BigInt(cipher.macs), o); o += 8;
  if (o + MAC_BYTES * cipher.macs !== b.length) throw new Error('internal: crypt-info size');
  return { buf: b, macsOffset: o };
}

const NONCE_SPACE = 1n << BigInt(8 * NONCE_BYTES);

/** A nonce as the little-endian number sodium_increment treats it as. */
export function nonceValue(n: Uint8Array): bigint {
  let v = 0n;
  for (let i = n.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(n[i]!);
  return v;
}

/**
 * One random initial nonce per encrypted tensor (`chunks[i]`: its chunk count) such that no
 * two tensors of the file share any chunk nonce: tensor i uses nonce_i, nonce_i + 1, ...,
 * nonce_i + chunks[i] - 1 (little-endian, as libsodium increments them), and these ranges
 * must not meet (nor wrap around 2^192). With 24 random bytes a clash is astronomically
 * unlikely; a nonce that clashes is drawn again all the same (as tensorizer checks its own).
 */
export function assignNonces(chunks: readonly number[], random: (n: number) => Buffer): Buffer[] {
  const taken: { lo: bigint; hi: bigint }[] = []; // [lo, hi), kept sorted by lo
  return chunks.map((count) => {
    for (let attempt = 0; attempt < 64; attempt++) {
      const nonce = random(NONCE_BYTES);
      if (nonce.length !== NONCE_BYTES) throw new Error('internal: short random nonce');
      const lo = nonceValue(nonce);
      const hi = lo + BigInt(Math.max(1, count));
      if (hi > NONCE_SPACE) continue;
      let at = 0; // the first range starting at or after lo
      for (let end = taken.length; at < end; ) {
        const mid = (at + end) >> 1;
        if (taken[mid]!.lo < lo) at = mid + 1;
        else end = mid;
      }
      const before = taken[at - 1];
      const after = taken[at];
      if ((before && before.hi > lo) || (after && after.lo < hi)) continue;
      taken.splice(at, 0, { lo, hi });
      return nonce;
    }
    throw new TensorizeError('E_NATIVE', 'the random number generator keeps returning nonces already in use');
  });
}
