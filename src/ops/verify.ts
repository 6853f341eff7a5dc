/**
 * `verifyFile()`: the full check of a .tensors file: the structure (format/check.ts) and
 * every stored CRC32 and SHA-256, recomputed over each tensor's data exactly as tensorizer
 * computes them (docs/format.md §5), by the engine's one transfer API.
 */
import { transfer } from '../engine/transfer.js';
import { checkStructure, type HashFailure } from '../format/check.js';
import { TensorizerFile } from '../format/reader.js';
import type { ByteSource } from '../sources/source.js';
import { planFor, withPlan, type DecryptionOptions } from './decrypt.js';

export interface VerifyResult {
  file: string;
  version: number;
  tensors: number;
  dataBytes: number;
  hashesChecked: number;
  meta: number;
  /** Encrypted tensors, checked once decrypted (0: the file is not encrypted). */
  encrypted: number;
  failures: HashFailure[];
  /** Other reasons the file does not pass: tensors without hashes, unexpected trailing bytes. */
  problems: string[];
  warnings: string[];
  ok: boolean;
}

export interface VerifyOptions {
  threads?: number;
  /** Remote sources: range requests in flight (default 8). */
  concurrency?: number;
  /** Remote sources: bytes per range request (default 8 MiB). */
  chunkSize?: number;
  /** An encrypted file's key or passphrase (decrypt.ts: required for one, refused for any other). */
  decryption?: DecryptionOptions;
  onStart?: (totalBytes: number) => void;
  onProgress?: (bytes: number) => void;
}

export async function verifyFile(source: ByteSource, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const tf = await TensorizerFile.open(source);
  const c = await checkStructure(tf);
  return withPlan(await planFor(c, opts.decryption), async (plan) => {
    const dataBytes = c.tensors.reduce((n, h) => n + h.header.dataLength, 0);
    opts.onStart?.(dataBytes);
    // Tensors with data and a hash: recompute over the header parts and the data.
    const checks = c.tensors.filter((t) => t.header.dataLength > 0 && (t.crc32 !== undefined || t.sha256 !== undefined));
    const jobs = checks.map((t) => ({ src: { offset: t.entry.dataOffset, length: t.header.dataLength }, prefix: t.prefix, expect: { crc32: t.crc32, sha256: t.sha256 }, name: t.entry.name, index: t.entry.index }));
    const crypt = plan?.forJobs(checks.map((t) => t.entry.index));
    const { failures } = await transfer(jobs, { kind: 'hash' }, { source, threads: opts.threads, concurrency: opts.concurrency, chunkSize: opts.chunkSize, onProgress: opts.onProgress, crypt });
    failures.push(...c.failures);
    failures.sort((a, b) => a.index - b.index || a.hash.localeCompare(b.hash));
    return {
      file: source.name,
      version: tf.info.version,
      tensors: tf.entries.length,
      dataBytes,
      hashesChecked: c.hashesChecked + checks.reduce((n, t) => n + (t.crc32 === undefined ? 0 : 1) + (t.sha256 === undefined ? 0 : 1), 0),
      meta: c.tensors.filter((t) => t.meta).length,
      encrypted: c.encrypted,
      failures,
      problems: c.problems,
      warnings: [],
      ok: failures.length === 0 && c.problems.length === 0,
    };
  });
}
