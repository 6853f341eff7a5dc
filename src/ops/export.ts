/**
 * .tensors → safetensors. The file passes the same structural check as verify first
 * (checkStructure: every header, the end of the file, hashes present, header-only hashes of
 * tensors without data); then tensor bytes are copied range to range (never the whole model
 * in memory) and checked against the stored CRC32/SHA-256 on the way; any failure aborts
 * the export and leaves no output file. Tensors are written largest element size first
 * (as the safetensors writer orders them), so each starts at a multiple of its element size.
 */
import { open } from 'node:fs/promises';
import { TensorizeError } from '../errors.js';
import { fsError } from '../sources/file.js';
import type { ByteSource } from '../sources/source.js';
import { transfer } from '../engine/transfer.js';
import { isPlain } from '../format/paths.js';
import { TensorizerFile } from '../format/reader.js';
import { assertSound, checkStructure, verifyError, type CheckedFile, type CheckedTensor } from '../format/check.js';
import { TempOutput } from '../util/tempfile.js';
import { planFor, withPlan, type DecryptionOptions, type DecryptionPlan } from './decrypt.js';

export type MetaPolicy = 'skip' | 'zeros' | 'error';

export interface ExportOptions {
  /** What to do with meta tensors, which have no data: leave them out (default), write zeros, or fail. */
  meta?: MetaPolicy;
  /** Join structured paths (["a", 0, "b"]) into dotted names ("a.0.b") instead of failing. */
  joinPaths?: boolean;
  /**
   * Check the stored hashes while copying (default true); a tensor without hashes is then an
   * error. False copies the bytes as they are (the structure is checked all the same).
   */
  verify?: boolean;
  /** An encrypted file's key or passphrase (decrypt.ts: required for one, refused for any other). */
  decryption?: DecryptionOptions;
  threads?: number;
  /** Remote sources: range requests in flight (default 8). */
  concurrency?: number;
  onStart?: (totalBytes: number) => void;
  onProgress?: (bytes: number) => void;
}

export interface ExportSummary {
  path: string;
  tensors: number;
  skipped: string[];
  dataBytes: number;
  fileBytes: number;
  warnings: string[];
}

export async function exportSafetensors(source: ByteSource, out: string, opts: ExportOptions = {}): Promise<ExportSummary> {
  const tf = await TensorizerFile.open(source);
  const checked = await checkStructure(tf, { hashes: opts.verify ?? true });
  assertSound(checked);
  return withPlan(await planFor(checked, opts.decryption), (plan) => exportChecked(source, out, checked, plan, opts));
}

async function exportChecked(source: ByteSource, out: string, checked: CheckedFile, plan: DecryptionPlan | undefined, opts: ExportOptions): Promise<ExportSummary> {
  const { tf } = checked;
  const policy = opts.meta ?? 'skip';
  const verify = opts.verify ?? true;
  const warnings: string[] = [];
  const skipped: string[] = [];
  const problems: string[] = [];
  const names = new Set<string>();
  const chosen: { name: string; st: string; h: CheckedTensor; begin: number; end: number; zeros: boolean }[] = [];
  for (const h of checked.tensors) {
    const { entry } = h;
    let name: string;
    if (isPlain(entry.path)) name = entry.path[0];
    else if (opts.joinPaths) name = entry.path.join('.');
    else {
      problems.push(`tensor ${entry.name} has a structured path; safetensors names are plain strings (use --join-paths to join its parts with ".")`);
      continue;
    }
    const st = entry.dtype.safetensors;
    if (!st) {
      problems.push(`tensor ${JSON.stringify(name)} has dtype ${entry.dtype.name}, which safetensors cannot express`);
      continue;
    }
    const isMeta = h.meta;
    if (isMeta && policy === 'skip') {
      skipped.push(name);
      continue;
    }
    if (isMeta && policy === 'error') {
      problems.push(`tensor ${JSON.stringify(name)} is a meta tensor (no data); use --meta skip or --meta zeros`);
      continue;
    }
    if (name === '__metadata__') {
      problems.push('a tensor named "__metadata__" cannot be stored in safetensors (the name is reserved)');
      continue;
    }
    if (names.has(name)) {
      problems.push(`two tensors would both be named ${JSON.stringify(name)} in the safetensors file`);
      continue;
    }
    names.add(name);
    chosen.push({ name, st, h, begin: 0, end: 0, zeros: isMeta });
  }
  // Largest element size first, file order within a size: with the 8-byte-aligned data
  // start, every tensor then begins at a multiple of its element size.
  chosen.sort((a, b) => b.h.entry.dtype.itemsize - a.h.entry.dtype.itemsize);
  let pos = 0;
  for (const c of chosen) {
    c.begin = pos;
    pos += c.h.entry.byteSize;
    c.end = pos;
  }
  if (problems.length > 0) {
    throw new TensorizeError('E_INEXPRESSIBLE', `${tf.name} cannot be exported to safetensors:\n  ${problems.join('\n  ')}`);
  }
  if (chosen.length === 0) throw new TensorizeError('E_INEXPRESSIBLE', `${tf.name}: no tensors left to export`);
  if (skipped.length) warnings.push(`left out ${skipped.length} meta tensor(s) with no data: ${skipped.join(', ')} (use --meta zeros to keep them as zeros)`);

  // Header: {"__metadata__": {...}, "<name>": {"dtype", "shape", "data_offsets"}, ...}, space-padded to 8 bytes.
  const parts = [`"__metadata__":{"format":"pt"}`];
  for (const c of chosen) {
    parts.push(`${JSON.stringify(c.name)}:{"dtype":"${c.st}","shape":[${c.h.entry.shape.join(',')}],"data_offsets":[${c.begin},${c.end}]}`);
  }
  let json = `{${parts.join(',')}}`;
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8);
  const head = Buffer.alloc(8 + Buffer.byteLength(json));
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(json)), 0);
  head.write(json, 8, 'utf8');
  const dataStart = head.length;
  const fileBytes = dataStart + pos;

  const tmp = await TempOutput.create(out);
  opts.onStart?.(chosen.reduce((n, c) => n + (c.zeros ? 0 : c.end - c.begin), 0));
  try {
    const fh = await open(tmp.path, 'w+');
    try {
      await fh.truncate(fileBytes); // zero-filled: meta tensors exported as zeros need no writes
      await fh.write(head, 0, head.length, 0);
    } finally {
      await fh.close();
    }
    // Each tensor's bytes to its place in the output, checked against its stored hashes on the way.
    const jobs = chosen.flatMap(({ h, zeros, begin }) => {
      if (zeros || h.header.dataLength === 0) return [];
      const expect = verify ? { crc32: h.crc32, sha256: h.sha256 } : undefined;
      return [{ src: { offset: h.entry.dataOffset, length: h.header.dataLength }, dst: dataStart + begin, prefix: h.prefix, expect, name: h.entry.name, index: h.entry.index }];
    });
    const crypt = plan?.forJobs(jobs.map((j) => j.index));
    const { failures } = await transfer(jobs, { kind: 'file', path: tmp.path }, { source, threads: opts.threads, concurrency: opts.concurrency, onProgress: opts.onProgress, crypt });
    if (failures.length) {
      // The first tensor that does not match, as load reports it.
      const first = failures.filter((f) => f.tensor === failures[0]!.tensor);
      const e = verifyError(tf.name, first, []);
      throw new TensorizeError(e.code, e.message, { hints: [...e.hints, 'nothing was exported; --no-verify exports the data as it is'] });
    }
    await tmp.commit();
  } catch (e) {
    await tmp.discard();
    throw e instanceof TensorizeError ? e : fsError(e, out);
  }
  return { path: out, tensors: chosen.length, skipped, dataBytes: pos, fileBytes, warnings };
}
