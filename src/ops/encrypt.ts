/**
 * serialize --encrypt (reference §9): the key of a file (32 bytes as given, or derived once
 * from a passphrase with Argon2id and a random 16-byte salt), one random initial nonce per
 * encrypted tensor (no chunk nonce used twice in a file: format/crypt.ts assignNonces), and
 * a sealing writer for outputs produced in order (-o s3://), which encrypts each tensor's
 * bytes in whole chunks before they go on. Local outputs are sealed by the copy engine
 * (TransferOptions.seal). Keys live in buffers this module owns and wipes.
 */
import { totalmem } from 'node:os';
import { TensorizeError } from '../errors.js';
import { assignNonces, CRYPT_CHUNK_SIZE, MAC_BYTES, MAX_MEMLIMIT, MAX_OPSLIMIT, SALT_BYTES, type CryptLayout, type EncryptionSummary } from '../format/crypt.js';
import { native } from '../native/binding.js';
import { kdfOverBound, MAX_KDF_WORK, parseKey } from './decrypt.js';

/** How to encrypt a file: with a key, or with a key derived from a passphrase. */
export type EncryptionOptions =
  | { key: Uint8Array | string }
  | {
      passphrase: Uint8Array | string;
      /** Argon2id passes (default 3: libsodium's MODERATE, tensorizer's default). */
      opslimit?: number;
      /** Argon2id memory in bytes (default 256 MiB: MODERATE). */
      memlimit?: number;
    };

/** libsodium's MODERATE preset, what tensorizer's EncryptionParams.from_string uses by default. */
export const KDF_DEFAULT = { opslimit: 3, memlimit: 256 * 2 ** 20 } as const;
/** libsodium's crypto_pwhash_OPSLIMIT_MIN and MEMLIMIT_MIN for Argon2id. */
export const KDF_MIN = { opslimit: 1, memlimit: 8192 } as const;

/**
 * Argon2id parameters this writer accepts: within libsodium's range, and within what
 * tensorize's own reader accepts (format/crypt.ts MAX_OPSLIMIT / MAX_MEMLIMIT, ops/decrypt.ts
 * MAX_KDF_WORK and half of the machine's memory), so every file written can be read back.
 * E_USAGE naming the option otherwise.
 */
export function checkKdfParams(opslimit: number, memlimit: number, names = { ops: 'opslimit', mem: 'memlimit' }): void {
  if (!Number.isSafeInteger(opslimit) || opslimit < KDF_MIN.opslimit || opslimit > MAX_OPSLIMIT) {
    throw new TensorizeError('E_USAGE', `${names.ops} must be an integer from ${KDF_MIN.opslimit} to ${MAX_OPSLIMIT}, not ${opslimit}`);
  }
  if (!Number.isSafeInteger(memlimit) || memlimit < KDF_MIN.memlimit || memlimit > MAX_MEMLIMIT) {
    throw new TensorizeError('E_USAGE', `${names.mem} must be from ${KDF_MIN.memlimit} bytes (8 KiB) to ${MAX_MEMLIMIT} bytes, not ${memlimit}`);
  }
  const over = kdfOverBound(opslimit, memlimit);
  if (over === 'work') {
    throw new TensorizeError('E_USAGE', `${names.ops} ${opslimit} x ${names.mem} ${memlimit} bytes is over tensorize's limit of ${MAX_KDF_WORK} (its reader refuses such files; tensorizer's strongest preset, SENSITIVE, is 4 x 1 GiB)`);
  }
  if (over === 'memory') {
    throw new TensorizeError('E_USAGE', `${names.mem} ${memlimit} bytes is more than half of this machine's memory (${totalmem()} bytes); tensorize would refuse to read the file here`);
  }
}

/** A file's key and layout while it is written; wipe() when done. */
export interface FileEncryption {
  key: Buffer;
  layout: CryptLayout;
  keyFrom: 'key' | 'passphrase';
  /** One initial nonce per encrypted tensor (`chunks`: each one's chunk count). */
  nonces(chunks: readonly number[]): Buffer[];
  summary(encryptedTensors: number): EncryptionSummary;
  wipe(): void;
}

/**
 * The layout of a file to encrypt (a salt drawn now), before the key exists: plan the file
 * with it, then derive the key with key() (Argon2id can take seconds; nothing is derived
 * for a file that cannot be planned).
 */
export function prepareEncryption(o: EncryptionOptions): { layout: CryptLayout; key: () => Promise<FileEncryption> } {
  const bin = native();
  if ('key' in o) {
    const layout: CryptLayout = { chunkSize: CRYPT_CHUNK_SIZE };
    const key = parseKey(o.key, 'the key');
    return { layout, key: async () => fileEncryption(key, layout, 'key') };
  }
  const opslimit = o.opslimit ?? KDF_DEFAULT.opslimit;
  const memlimit = o.memlimit ?? KDF_DEFAULT.memlimit;
  checkKdfParams(opslimit, memlimit);
  const layout: CryptLayout = { chunkSize: CRYPT_CHUNK_SIZE, kdf: { opslimit, memlimit, salt: bin.randomBytes(SALT_BYTES) } };
  return {
    layout,
    key: async () => {
      const pass = typeof o.passphrase === 'string' ? Buffer.from(o.passphrase, 'utf8') : Buffer.from(o.passphrase);
      try {
        if (pass.length === 0) throw new TensorizeError('E_KEY', 'the passphrase is empty');
        return fileEncryption(await bin.deriveKey(pass, layout.kdf!.salt, opslimit, memlimit), layout, 'passphrase');
      } finally {
        bin.wipe(pass);
      }
    },
  };
}

function fileEncryption(key: Buffer, layout: CryptLayout, keyFrom: 'key' | 'passphrase'): FileEncryption {
  const bin = native();
  return {
    key,
    layout,
    keyFrom,
    nonces: (chunks) => assignNonces(chunks, (n) => bin.randomBytes(n)),
    summary: (encryptedTensors) => ({
      cipher: 'XSalsa20-Poly1305',
      keyFrom,
      ...(layout.kdf ? { kdf: { algorithm: 'Argon2id v1.3' as const, opslimit: layout.kdf.opslimit, memlimit: layout.kdf.memlimit, salt: layout.kdf.salt.toString('hex') } } : {}),
      chunkSize: layout.chunkSize,
      encryptedTensors,
    }),
    wipe: () => bin.wipe(key),
  };
}

/**
 * One tensor's bytes, in order, encrypted in whole chunks on their way to `out` (an
 * ordered output: the S3 upload). The MACs must equal `expect` (those of the first pass,
 * which hashed the same bytes): a difference means the input changed in between.
 */
export class SealingWriter {
  private readonly buf: Buffer;
  private used = 0;
  private off = 0;

  constructor(
    private readonly key: Buffer,
    private readonly nonce: Buffer,
    private readonly chunk: number,
    private readonly itemLen: number,
    private readonly expect: Buffer,
    private readonly out: (b: Buffer) => Promise<void>,
    private readonly name: string,
  ) {
    if (expect.length !== MAC_BYTES * Math.ceil(itemLen / chunk)) throw new Error(`internal: ${expect.length} bytes of MACs for ${itemLen} bytes`);
    // A few chunks at a time (fewer calls), never more than the item.
    this.buf = Buffer.allocUnsafeSlow(Math.min(itemLen, chunk * Math.max(1, Math.floor((8 << 20) / chunk))));
  }

  async write(b: Buffer): Promise<void> {
    for (let at = 0; at < b.length; ) {
      const n = Math.min(b.length - at, this.buf.length - this.used);
      if (n === 0 || this.off + this.used + n > this.itemLen) throw new Error(`internal: more than ${this.itemLen} bytes for tensor ${this.name}`);
      b.copy(this.buf, this.used, at, at + n);
      this.used += n;
      at += n;
      if (this.used === this.buf.length) await this.flush();
    }
  }

  /** Seal and send what is left; the tensor must be complete. */
  async end(): Promise<void> {
    const got = this.off + this.used;
    if (got !== this.itemLen) throw new TensorizeError('E_FILE_CHANGED', `tensor ${JSON.stringify(this.name)}: ${got} bytes read for ${this.itemLen}; the input changed while being read`);
    if (this.used > 0) await this.flush();
  }

  private async flush(): Promise<void> {
    const piece = this.buf.subarray(0, this.used);
    const macs = native().seal(this.key, this.nonce, this.chunk, this.itemLen, this.off, piece);
    const first = (this.off / this.chunk) * MAC_BYTES;
    if (!macs.equals(this.expect.subarray(first, first + macs.length))) {
      throw new TensorizeError('E_FILE_CHANGED', `tensor ${JSON.stringify(this.name)}: its data bytes ${this.off} to ${this.off + this.used} differ from those hashed in the first pass (their MACs differ); the input changed while being read`);
    }
    await this.out(piece);
    this.off += this.used;
    this.used = 0;
  }
}
