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
