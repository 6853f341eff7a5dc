/**
 * The structural check of a .tensors file and the hash rules (docs/format.md §5): every
 * tensor header read and checked against the index, the bytes after the last record,
 * tensors without hashes, and the hashes of tensors without data (meta and empty tensors:
 * their hashes cover the header alone). Reads headers through TensorizerFile; moves no
 * tensor data.
 *
 * checkStructure() is the one structural validation that every command reading a file's
 * tensors runs before it hands anything out (verify, load --verify, export). verifyError()
 * is the error they all throw for what it finds, and compareHashes() the one comparison of
 * recomputed hashes with stored ones, so a file verify rejects is rejected everywhere with
 * the same message.
 */
import { createHash } from 'node:crypto';
import { decodeCrypt, encryptedTensors, type TensorCrypt } from './crypt.js';
import { crc32 } from 'node:zlib';
import { TensorizeError } from '../errors.js';
import { HashType } from './constants.js';
import { hashedHeaderParts, type TensorHeader } from './header.js';
import { TensorizerFile, type TensorEntry } from './reader.js';

export interface HashFailure {
  tensor: string;
  index: number;
  hash: 'crc32' | 'sha256';
  expected: string;
  actual: string;
}

/** One tensor whose header was read and checked against its index entry. */
export interface CheckedTensor {
  entry: TensorEntry;
  header: TensorHeader;
  raw: Buffer;
  /** The header bytes its hashes cover (hash values zeroed, crypt info cut out), hashed before the data. */
  prefix: Buffer[];
  /** The stored CRC32, when there is one. */
  crc32?: number;
  /** The stored SHA-256, when there is one. */
  sha256?: Buffer;
  /** Elements but no data in the file (loads as zeros). */
  meta: boolean;
  /** Its crypt info, decoded and checked (empty when the file has none, or for a tensor without data). */
  crypt?: TensorCrypt;
}

export interface CheckedFile {
  tf: TensorizerFile;
  tensors: CheckedTensor[];
  /** Reasons the file does not pass other than a hash mismatch (no hashes, trailing bytes). */
  problems: string[];
  /** Mismatches already found: tensors without data bytes, whose hashes cover their header alone. */
  failures: HashFailure[];
  /** Hashes compared so far (those of the tensors without data). */
  hashesChecked: number;
  /** Encrypted tensors (all those with data, or none): their data is checked once decrypted. */
  encrypted: number;
}

/** The recomputed hashes of one tensor (prefix, then data). */
export interface Computed {
  crc32?: number;
  sha256?: Uint8Array;
}

/**
 * Read and check every tensor header; then the end of the file and, with `hashes` (the
 * default), that every tensor stores a hash and that tensors without data match theirs.
 * Structural errors throw (E_FORMAT: a malformed crypt-info block, a file mixing encrypted
 * and plain tensors too); what remains is
 * returned as problems and failures for the caller to report (verify) or throw (assertSound).
 */
export async function checkStructure(tf: TensorizerFile, opts: { hashes?: boolean } = {}): Promise<CheckedFile> {
  const hashes = opts.hashes ?? true;
  const tensors: CheckedTensor[] = [];
  for (const { entry, header, raw } of await tf.readHeaders()) {
    const crc = header.hashes.find((h) => h.type === HashType.CRC32);
    const sha = header.hashes.find((h) => h.type === HashType.SHA256);
    tensors.push({
      entry,
      header,
      raw,
      prefix: hashedHeaderParts(raw, header),
      crc32: crc?.value.readUInt32LE(0),
      sha256: sha ? Buffer.from(sha.value) : undefined,
      meta: TensorizerFile.isMeta(entry, header),
    });
  }
  // Every crypt-info block decoded and checked (as info checks them), and the file's tensors
  // all encrypted or all not (E_FORMAT otherwise), before anything else is said about it.
  for (const t of tensors) t.crypt = decodeCrypt(t.header.crypt?.chunks ?? [], t.header.dataLength, `${tf.name}: tensor ${JSON.stringify(t.entry.name)} (#${t.entry.index})`);
  const encrypted = encryptedTensors(
    tf.name,
    tensors.map((t) => ({ name: t.entry.name, index: t.entry.index, dataLength: t.header.dataLength, crypt: t.crypt! })),
  ).length;
  const problems: string[] = [];
  const end = await tf.endProblem();
  if (end) problems.push(end);
  const failures: HashFailure[] = [];
  let hashesChecked = 0;
  if (hashes) {
    for (const t of tensors) {
      if (t.crc32 === undefined && t.sha256 === undefined) {
        problems.push(`tensor ${JSON.stringify(t.entry.name)} (#${t.entry.index}) stores no hashes, so its data cannot be checked`);
      } else if (t.header.dataLength === 0) {
        failures.push(...compareHashes(t, hashParts(t.prefix)));
        hashesChecked += (t.crc32 === undefined ? 0 : 1) + (t.sha256 === undefined ? 0 : 1);
      }
    }
  }
  return { tf, tensors, problems, failures, hashesChecked, encrypted };
}

/** CRC32 and SHA-256 of some bytes held in memory (a header alone). */
function hashParts(parts: readonly Buffer[]): Computed {
  let c = 0;
  const s = createHash('sha256');
  for (const p of parts) {
    c = crc32(p, c);
    s.update(p);
  }
  return { crc32: c >>> 0, sha256: s.digest() };
}

/** The stored hashes of `t` that `got` disagrees with. */
export function compareHashes(t: CheckedTensor, got: Computed): HashFailure[] {
  return hashFailures({ tensor: t.entry.name, index: t.entry.index }, { crc32: t.crc32, sha256: t.sha256 }, got);
}

/**
 * The one comparison of recomputed hashes with stored ones: each stored hash that `got`
 * disagrees with (or lacks) is a failure of `who`.
 */
export function hashFailures(who: { tensor: string; index: number }, stored: Computed, got: Computed): HashFailure[] {
  const out: HashFailure[] = [];
  if (stored.crc32 !== undefined && got.crc32 !== stored.crc32) out.push({ ...who, hash: 'crc32', expected: hex32(stored.crc32), actual: got.crc32 === undefined ? '?' : hex32(got.crc32) });
  if (stored.sha256 !== undefined) {
    const expected = Buffer.from(stored.sha256).toString('hex');
    const actual = got.sha256 ? Buffer.from(got.sha256).toString('hex') : '?';
    if (actual !== expected) out.push({ ...who, hash: 'sha256', expected, actual });
  }
  return out;
}

/**
 * The error for a file that does not pass: the same for verify, load and export. Problems
 * of structure come first (E_FORMAT: every command finds them before reading any tensor
 * data); otherwise the tensors whose hashes do not match (E_HASH_MISMATCH). verify lists
 * every fault in its report; load and export stop at the first they meet, so for a file
 * with one fault all of them say exactly the same.
 */
export function verifyError(file: string, failures: readonly HashFailure[], problems: readonly string[], opts: { reported?: boolean } = {}): TensorizeError {
  const hints = ['the file is corrupt: re-create or re-download it'];
  if (problems.length) return new TensorizeError('E_FORMAT', `${file}: ${problems.join('; ')}`, { hints, reported: opts.reported });
  const byTensor = new Map<string, string[]>();
  for (const f of failures) byTensor.set(f.tensor, [...(byTensor.get(f.tensor) ?? []), f.hash === 'crc32' ? 'CRC32' : 'SHA-256']);
  const which = (hs: string[]) => [...new Set(hs)].join(' and ');
  const [[first, hs]] = [...byTensor] as [string, string[]][];
  const message =
    byTensor.size === 1
      ? `tensor ${JSON.stringify(first)} does not match its stored ${which(hs!)}`
      : `${byTensor.size} tensors do not match their stored hashes: ${[...byTensor].slice(0, 3).map(([n, h]) => `${JSON.stringify(n)} (${which(h)})`).join(', ')}${byTensor.size > 3 ? ', ...' : ''}`;
  return new TensorizeError('E_HASH_MISMATCH', `${file}: ${message}`, { hints, reported: opts.reported });
}

/**
 * Throw verifyError() when the structural check found anything: problems of structure
 * first, then the tensors without data whose hashes failed.
 */
export function assertSound(c: CheckedFile): void {
  if (c.problems.length) throw verifyError(c.tf.name, [], c.problems);
  if (c.failures.length) throw verifyError(c.tf.name, c.failures, []);
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}
