/**
 * Full check of a .tensors file: the structure (via TensorizerFile) and every stored
 * CRC32 and SHA-256, recomputed exactly as tensorizer computes them (§5.1).
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { inTensor, TensorizeError } from '../errors.js';
import { JobRunner } from '../engine/runner.js';
import type { ByteSource } from '../sources/source.js';
import { hashRemote } from '../engine/remote.js';
import { fetchedHashes, fetchNative, incrementally, networkTargetOf } from '../engine/fetch.js';
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

export interface VerifyResult {
  file: string;
  version: number;
  tensors: number;
  dataBytes: number;
  hashesChecked: number;
  meta: number;
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
  onStart?: (totalBytes: number) => void;
  onProgress?: (bytes: number) => void;
}

/** Read and check every tensor header. Encrypted files stop here with E_UNSUPPORTED. */
export async function readAllHeaders(tf: TensorizerFile): Promise<{ entry: TensorEntry; header: TensorHeader; raw: Buffer }[]> {
  const out = [];
  for (const entry of tf.entries) out.push({ entry, ...(await tf.readHeader(entry)) });
  const encrypted = out.filter((h) => h.header.crypt && h.header.crypt.chunks.length > 0);
  if (encrypted.length > 0) {
    throw new TensorizeError(
      'E_UNSUPPORTED',
      `${tf.name}: encrypted: not supported yet (${encrypted.length} of ${out.length} tensors are encrypted; their hashes cover the decrypted data). The structure of all ${out.length} tensor headers is valid.`,
    );
  }
  return out;
}

export async function verifyFile(source: ByteSource, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const tf = await TensorizerFile.open(source);
  const headers = await readAllHeaders(tf);
  const warnings: string[] = [];
  const problems: string[] = [];
  // Nothing may follow the last record but tensorizer's 8-byte zero end marker: other bytes
  // mean a damaged index (a lower tensor count) or appended data, neither covered by a hash.
  if (tf.trailingBytes !== 0) {
    const tail = tf.trailingBytes === 8 ? await source.read(source.size - 8, 8) : undefined;
    if (!tail || tail.some((b) => b !== 0)) {
      problems.push(`${tf.trailingBytes} unexpected bytes follow the last tensor record (byte ${source.size - tf.trailingBytes}); the index may be damaged`);
    }
  }
  const failures: HashFailure[] = [];
  let hashesChecked = 0;
  let meta = 0;
  const dataBytes = headers.reduce((n, h) => n + h.header.dataLength, 0);
  opts.onStart?.(dataBytes);
  // What each tensor's hashes must be, and the jobs that recompute them.
  const checks = headers.flatMap(({ entry, header, raw }) => {
    if (TensorizerFile.isMeta(entry, header)) meta++;
    const crc = header.hashes.find((h) => h.type === HashType.CRC32);
    const sha = header.hashes.find((h) => h.type === HashType.SHA256);
    if (!crc && !sha) {
      problems.push(`tensor ${JSON.stringify(entry.name)} (#${entry.index}) stores no hashes, so its data cannot be checked`);
      return [];
    }
    return [{ entry, header, crc, sha, prefix: hashedHeaderParts(raw, header) }];
  });
  const got = await recompute(source, checks, opts);
  checks.forEach(({ entry, crc, sha }, i) => {
    const r = got[i]!;
    if (crc) {
      hashesChecked++;
      const want = crc.value.readUInt32LE(0);
      if (r.crc32 !== want) failures.push({ tensor: entry.name, index: entry.index, hash: 'crc32', expected: hex32(want), actual: hex32(r.crc32!) });
    }
    if (sha) {
      hashesChecked++;
      const actual = Buffer.from(r.sha256!).toString('hex');
      if (actual !== sha.value.toString('hex')) failures.push({ tensor: entry.name, index: entry.index, hash: 'sha256', expected: sha.value.toString('hex'), actual });
    }
  });
  failures.sort((a, b) => a.index - b.index || a.hash.localeCompare(b.hash));
  return {
    file: source.name,
    version: tf.info.version,
    tensors: tf.entries.length,
    dataBytes,
    hashesChecked,
    meta,
    failures,
    problems,
    warnings,
    ok: failures.length === 0 && problems.length === 0,
  };
}

interface Check {
  entry: TensorEntry;
  header: TensorHeader;
  crc?: unknown;
  sha?: unknown;
  prefix: Buffer[];
}

/**
 * CRC32 and SHA-256 of each checked tensor's header parts and data: local files on the job
 * runner (native engine when built), remote sources by ordered parallel range reads.
 */
async function recompute(source: ByteSource, checks: Check[], opts: VerifyOptions): Promise<{ crc32?: number; sha256?: Uint8Array }[]> {
  const path = source.localPath;
  if (path === undefined) {
    const jobs = checks.map((c) => ({ offset: c.entry.dataOffset, length: c.header.dataLength, dst: 0, prefix: c.prefix, crc32: !!c.crc, sha256: !!c.sha }));
    const net = await networkTargetOf(source);
    if (net) {
      const onProgress = incrementally(opts.onProgress);
      const { stats } = await fetchNative(source, net, jobs, { concurrency: opts.concurrency, chunkSize: opts.chunkSize, onProgress });
      return jobs.map((_, k) => fetchedHashes(stats, k));
    }
    return hashRemote(source, jobs, { concurrency: opts.concurrency, chunkSize: opts.chunkSize, onProgress: opts.onProgress });
  }
  const pool = new JobRunner(opts.threads, opts.onProgress);
  try {
    return await Promise.all(
      checks.map(async ({ entry, header, crc, sha, prefix }) => {
        if (header.dataLength === 0) {
          let c = 0;
          const s = createHash('sha256');
          for (const p of prefix) {
            c = crc32(p, c);
            s.update(p);
          }
          return { crc32: c >>> 0, sha256: s.digest() };
        }
        return pool
          .run({ id: entry.index, src: { path, ranges: [{ offset: entry.dataOffset, length: header.dataLength }] }, prefix, crc32: !!crc, sha256: !!sha })
          .catch((e: unknown) => {
            throw inTensor(e, entry.name);
          });
      }),
    );
  } finally {
    await pool.close();
  }
}

function hex32(n: number): string {
  return n.toString(16).padStart(8, '0');
}
