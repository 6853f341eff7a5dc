/**
 * Keys for encrypted files (reference §9): where a key or passphrase comes from, and the
 * plan that hands each encrypted tensor's key, nonce and MACs to the engines, which decrypt
 * every piece in place as it streams (native/src/crypt.h) before hashing or copying it.
 *
 * A key is 32 bytes, given raw or as 64 hexadecimal characters; a passphrase gives the key
 * through Argon2id with the parameters and salt stored in the file. From the command line
 * they come only from files (--key-file, --passphrase-file) or the environment
 * (TENSORIZE_KEY, TENSORIZE_PASSPHRASE), never as arguments (which `ps` and shell history
 * show). The rules, the same in every command:
 *   - an encrypted file without a key or passphrase: E_KEY naming its first encrypted tensor;
 *   - a key or passphrase for a file that is not encrypted: E_KEY (tensor data is the only
 *     thing encryption authenticates, so a plaintext file where an encrypted one was
 *     expected may be a substitute);
 *   - a passphrase for a tensor whose key was not derived from one: E_KEY;
 *   - a wrong key or passphrase, changed data or a changed MAC: E_DECRYPT from the engine,
 *     naming the tensor; nothing decrypted is handed out.
 * Derived keys are cached per parameter set within one plan and wiped with it.
 */
import { readFile, stat } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { TensorizeError, usageError } from '../errors.js';
import { config } from '../config.js';
import type { CheckedFile, CheckedTensor } from '../format/check.js';
import { encryptedTensors, type TensorCrypt } from '../format/crypt.js';
import { native, type NativeCrypt, type NativeItemCrypt } from '../native/binding.js';
import { fsError } from '../sources/file.js';

/** A key or a passphrase, as the library's functions take it. */
export interface DecryptionOptions {
  /** The 32-byte key: its bytes, or 64 hexadecimal characters. */
  key?: Uint8Array | string;
  /** The passphrase the key was derived from (Argon2id, with the file's parameters and salt). */
  passphrase?: string | Uint8Array;
}

/** Where the command line takes them from. */
export interface KeySourceOptions {
  keyFile?: string;
  passphraseFile?: string;
}

/** Argon2id may ask for at most this much work (opslimit x memlimit): 16x libsodium's SENSITIVE preset. */
export const MAX_KDF_WORK = 64 * 2 ** 30;

/**
 * The key or passphrase of a command: --key-file / --passphrase-file, else TENSORIZE_KEY /
 * TENSORIZE_PASSPHRASE; undefined when none is given. Giving both kinds is a usage error.
 */
export async function readKeySource(o: KeySourceOptions): Promise<DecryptionOptions | undefined> {
  const env = config();
  if (o.keyFile !== undefined && o.passphraseFile !== undefined) throw usageError('give --key-file or --passphrase-file, not both');
  if (o.keyFile !== undefined) {
    const raw = await readSecret(o.keyFile, '--key-file');
    try {
      return { key: parseKey(raw, o.keyFile) };
    } finally {
      raw.fill(0);
    }
  }
  if (o.passphraseFile !== undefined) return { passphrase: stripNewline(await readSecret(o.passphraseFile, '--passphrase-file')) };
  if (env.key !== undefined && env.passphrase !== undefined) throw usageError('TENSORIZE_KEY and TENSORIZE_PASSPHRASE are both set: unset one');
  if (env.key !== undefined) return { key: parseKey(Buffer.from(env.key), 'TENSORIZE_KEY') };
  if (env.passphrase !== undefined) return { passphrase: Buffer.from(env.passphrase) };
  return undefined;
}

async function readSecret(path: string, option: string): Promise<Buffer> {
  try {
    const st = await stat(path);
    if (!st.isFile()) throw usageError(`${option} ${path}: not a regular file`);
    if (st.size > 64 * 1024) throw usageError(`${option} ${path}: ${st.size} bytes; a key or passphrase file holds at most 64 KiB`);
    return await readFile(path);
  } catch (e) {
    if (e instanceof TensorizeError) throw e;
    throw fsError(e, path);
  }
}

/** A file's last line break ("\n" or "\r\n") is not part of the passphrase. */
function stripNewline(b: Buffer): Buffer {
  let n = b.length;
  if (n > 0 && b[n - 1] === 0x0a) n--;
  if (n > 0 && b[n - 1] === 0x0d) n--;
  return b.subarray(0, n);
}

/** 32 raw bytes, or 64 hex characters (surrounding whitespace ignored). */
export function parseKey(b: Uint8Array | string, where: string): Buffer {
  const buf = typeof b === 'string' ? Buffer.from(b) : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (buf.length === 32 && typeof b !== 'string') return Buffer.from(buf);
  const text = buf.toString('latin1').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  throw new TensorizeError('E_KEY', `${where}: a key is 32 bytes, or 64 hexadecimal characters (got ${buf.length} bytes that are neither)`);
}

/** One tensor as the plan sees it. */
export interface CryptTensor {
  name: string;
  index: number;
  dataLength: number;
  crypt: TensorCrypt;
}

/** The keys of one transfer and each encrypted tensor's place in them; wipe() when done. */
export class DecryptionPlan {
  private constructor(
    readonly keys: Buffer[],
    private readonly items: Map<number, NativeItemCrypt>,
    /** How the keys came: `key` or `passphrase` (Argon2id). */
    readonly keyFrom: 'key' | 'passphrase',
  ) {}

  /** The engine's description of tensor `index` (its index in the file), or null when it is not encrypted. */
  item(index: number): NativeItemCrypt | null {
    return this.items.get(index) ?? null;
  }

  /** TransferOptions.crypt for jobs over these tensors (one entry per job). */
  forJobs(indexes: readonly number[]): NativeCrypt {
    return { keys: this.keys, items: indexes.map((i) => this.item(i)) };
  }

  get encrypted(): number {
    return this.items.size;
  }

  wipe(): void {
    for (const k of this.keys) k.fill(0);
  }

  /**
   * The plan for a file's tensors with what the user gave (see the module comment for the
   * rules); undefined when the file is not encrypted and nothing was given.
   */
  static async create(file: string, tensors: readonly CryptTensor[], given: DecryptionOptions | undefined): Promise<DecryptionPlan | undefined> {
    const encrypted = encryptedTensors(file, tensors);
    if (encrypted.length === 0) {
      if (given?.key !== undefined || given?.passphrase !== undefined) {
        throw new TensorizeError('E_KEY', `${file} is not encrypted, but a ${given.key !== undefined ? 'key' : 'passphrase'} was given`, {
          hints: ['a file that should be encrypted but is not may have been replaced; drop --key-file/--passphrase-file (and TENSORIZE_KEY/TENSORIZE_PASSPHRASE) to read it as it is'],
        });
      }
      return undefined;
    }
    const first = encrypted[0]!;
    if (given?.key === undefined && given?.passphrase === undefined) {
      const how = first.crypt.kdf ? 'its passphrase (--passphrase-file PATH or TENSORIZE_PASSPHRASE)' : 'its key (--key-file PATH or TENSORIZE_KEY)';
      throw new TensorizeError('E_KEY', `${file}: tensor ${JSON.stringify(first.name)} (#${first.index}) is encrypted; give ${how}`, {
        hints: ['`tensorize info` shows how a file is encrypted without a key'],
      });
    }
    const bin = native();
    const keys: Buffer[] = [];
    const items = new Map<number, NativeItemCrypt>();
    try {
      const cache = new Map<string, number>();
      let direct: number | undefined;
      for (const t of encrypted) {
        let key: number;
        if (given.key !== undefined) {
          if (direct === undefined) {
            keys.push(parseKey(given.key, 'key'));
            direct = keys.length - 1;
          }
          key = direct;
        } else {
          const kdf = t.crypt.kdf;
          if (!kdf) {
            throw new TensorizeError('E_KEY', `${file}: tensor ${JSON.stringify(t.name)} (#${t.index}) was encrypted with a key, not a passphrase; give the key (--key-file PATH or TENSORIZE_KEY)`);
          }
          const id = `${kdf.opslimit}:${kdf.memlimit}:${kdf.salt.toString('hex')}`;
          let k = cache.get(id);
          if (k === undefined) {
            checkKdfCost(file, t, kdf.opslimit, kdf.memlimit);
            const pass = typeof given.passphrase === 'string' ? Buffer.from(given.passphrase, 'utf8') : Buffer.from(given.passphrase!);
            try {
              keys.push(await bin.deriveKey(pass, kdf.salt, kdf.opslimit, kdf.memlimit));
            } finally {
              pass.fill(0);
            }
            cache.set(id, (k = keys.length - 1));
          }
          key = k;
        }
        const c = t.crypt.cipher!;
        if (c.kind === 'parallel') {
          items.set(t.index, { key, chunk: c.chunkSize, nonce: c.nonce, macs: Buffer.concat(c.macs) });
        } else {
          // One secretbox over the whole data: one chunk (the engines hold it in one piece).
          if (t.dataLength > 64 * 2 ** 20) {
            throw new TensorizeError('E_UNSUPPORTED', `${file}: tensor ${JSON.stringify(t.name)} (#${t.index}) is encrypted in one piece of ${t.dataLength} bytes ("sequential"); tensorize decrypts such tensors up to 64 MiB`);
          }
          items.set(t.index, { key, chunk: Math.max(64, Math.ceil(t.dataLength / 64) * 64), nonce: c.nonce, macs: c.mac });
        }
      }
    } catch (e) {
      for (const k of keys) k.fill(0);
      throw e;
    }
    return new DecryptionPlan(keys, items, given.key !== undefined ? 'key' : 'passphrase');
  }
}

/**
 * Whether Argon2id with these parameters is over tensorize's bound, and how: `memory` (more
 * than half of this machine's) or `work` (opslimit x memlimit over MAX_KDF_WORK). The one
 * bound of the reader (E_KEY, before deriving) and of the writer (serialize refuses to
 * write a file it could not read back).
 */
export function kdfOverBound(ops: number, mem: number): 'memory' | 'work' | undefined {
  if (mem > totalmem() / 2) return 'memory';
  if (ops * mem > MAX_KDF_WORK) return 'work';
  return undefined;
}

function checkKdfCost(file: string, t: CryptTensor, ops: number, mem: number): void {
  const where = `${file}: tensor ${JSON.stringify(t.name)} (#${t.index})`;
  const over = kdfOverBound(ops, mem);
  if (over === 'memory') {
    throw new TensorizeError('E_KEY', `${where}: its key derivation asks for ${mem} bytes of memory, more than half of this machine's ${totalmem()}`);
  }
  if (over === 'work') {
    throw new TensorizeError('E_KEY', `${where}: its key derivation asks for opslimit ${ops} x memlimit ${mem} bytes, over tensorize's limit of ${MAX_KDF_WORK} (tensorizer's strongest preset, SENSITIVE, is 4 x 1 GiB)`);
  }
}

/** Run `f` with the plan, wiping its keys afterwards whatever happens. */
export async function withPlan<T>(plan: DecryptionPlan | undefined, f: (plan: DecryptionPlan | undefined) => Promise<T>): Promise<T> {
  try {
    return await f(plan);
  } finally {
    plan?.wipe();
  }
}

/** A checked tensor (format/check.ts) as the plan takes it. */
export const cryptTensorOf = (t: CheckedTensor): CryptTensor => ({ name: t.entry.name, index: t.entry.index, dataLength: t.header.dataLength, crypt: t.crypt ?? {} });

/** The plan for a checked file. */
export function planFor(c: CheckedFile, given: DecryptionOptions | undefined): Promise<DecryptionPlan | undefined> {
  return DecryptionPlan.create(c.tf.name, c.tensors.map(cryptTensorOf), given);
}
