/**
 * Streaming writer for the tensorizer format. The index is written first with exact
 * offsets (header sizes do not depend on hash values), then every tensor's data is copied
 * from its input ranges straight to its place in the output while CRC32 and SHA-256 are
 * computed, on a pool of worker threads; each header is written once its hashes are known.
 * Memory use is one chunk per thread, whatever the model size. Output goes to a temporary
 * file renamed into place only on success.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { inTensor, TensorizeError } from '../errors.js';
import { fsError } from '../sources/file.js';
import { sourceBytes, type SourceData } from '../engine/job.js';
import { JobRunner } from '../engine/runner.js';
import { TempOutput } from '../util/tempfile.js';
import { HashType, MAGIC, METADATA_OFFSET, metadataEntrySize, TensorType } from './constants.js';
import type { DTypeInfo } from './dtypes.js';
import { encodeHeader, headerSize, numel } from './header.js';
import { encodePath, isPlain, PathRegistry, pathToString, type TensorPath } from './paths.js';

export interface WriteTensor {
  path: TensorPath;
  type: TensorType;
  dtype: DTypeInfo;
  shape: number[];
  moduleIdx?: number;
  /** Write as a meta tensor: dtype and shape only, no data (forces data version 4). */
  meta?: boolean;
  /** Where the tensor's bytes are: ranges of a local file, concatenated in order, or a strided view. */
  data?: SourceData;
}

export interface WriteOptions {
  threads?: number;
  chunkSize?: number;
  onProgress?: (bytes: number) => void;
  /** Called once the layout is known, with the total number of data bytes to copy. */
  onStart?: (totalBytes: number) => void;
  /** Write the 8-byte zero end marker tensorizer writes (default true). */
  trailer?: boolean;
}

export interface WriteSummary {
  path: string;
  tensors: number;
  dataBytes: number;
  fileBytes: number;
  version: number;
  warnings: string[];
}

const HASHES = [HashType.CRC32, HashType.SHA256] as const;

interface Planned {
  t: WriteTensor;
  name: Buffer;
  dtypeBytes: Buffer;
  headerOffset: number;
  headerSize: number;
  dataOffset: number;
  dataLength: number;
}

export function plan(tensors: readonly WriteTensor[]): { planned: Planned[]; version: number; metadataLength: number; warnings: string[] } {
  if (tensors.length === 0) throw new TensorizeError('E_INPUT', 'no tensors to write (tensorizer cannot open a file with an empty index)');
  const registry = new PathRegistry();
  const warnings: string[] = [];
  let version = 1;
  let metadataLength = 0;
  const pre = tensors.map((t) => {
    const conflict = registry.add(t.path);
    if (conflict) throw new TensorizeError('E_INPUT', conflict);
    if (!isPlain(t.path) && t.type !== TensorType.STATE_DICT) {
      throw new TensorizeError('E_INPUT', `tensor ${pathToString(t.path)}: structured paths need the state_dict tensor type`);
    }
    const name = encodePath(t.path);
    const dtypeBytes = Buffer.from(t.dtype.tensorizer, 'latin1');
    const size64 = numel(t.shape) * BigInt(t.dtype.itemsize);
    if (size64 > BigInt(Number.MAX_SAFE_INTEGER)) throw new TensorizeError('E_INEXPRESSIBLE', `tensor ${pathToString(t.path)} is too large`);
    const size = Number(size64);
    if (t.dtype.opaque) version = Math.max(version, 2);
    if (t.meta) version = Math.max(version, 4);
    else {
      const have = t.data ? sourceBytes(t.data) : 0;
      if (have !== size) {
        throw new TensorizeError('E_INPUT', `tensor ${pathToString(t.path)}: ${have} bytes of data given for ${size} bytes (${t.shape.join('x') || 'scalar'} of ${t.dtype.name})`);
      }
    }
    if (t.dtype.opaque && (t.meta || size === 0) && size64 === 0n) {
      warnings.push(`tensor ${pathToString(t.path)} has no elements and the opaque dtype ${t.dtype.name}: tensorizer 2.11 cannot open files holding such tensors`);
    } else if (t.dtype.opaque && t.meta) {
      warnings.push(`meta tensor ${pathToString(t.path)} has the opaque dtype ${t.dtype.name}: tensorizer 2.11 cannot open files holding such tensors`);
    }
    metadataLength += metadataEntrySize(name.length, dtypeBytes.length, t.shape.length);
    return { t, name, dtypeBytes, size };
  });
  let pos = METADATA_OFFSET + metadataLength;
  const planned = pre.map(({ t, name, dtypeBytes, size }) => {
    const hs = headerSize(name.length, dtypeBytes.length, t.shape.length, HASHES);
    const dataLength = t.meta ? 0 : size;
    const p: Planned = { t, name, dtypeBytes, headerOffset: pos, headerSize: hs, dataOffset: pos + hs, dataLength };
    pos += hs + dataLength;
    return p;
  });
  return { planned, version, metadataLength, warnings };
}

function encodePrologue(planned: Planned[], version: number, metadataLength: number): Buffer {
  const b = Buffer.alloc(METADATA_OFFSET + metadataLength);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(version, 5);
  // flags (bytes 9-40) stay zero: this writer does not encrypt.
  b.writeBigUInt64LE(BigInt(planned.reduce((n, p) => n + p.dataLength, 0)), 41);
  b.writeBigUInt64LE(BigInt(planned.length), 57);
  b.writeBigUInt64LE(BigInt(metadataLength), 65);
  let o = METADATA_OFFSET;
  for (const p of planned) {
    b.writeUInt16LE(p.name.length, o); o += 2;
    p.name.copy(b, o); o += p.name.length;
    b.writeUInt8(p.t.type, o); o += 1;
    b.writeUInt8(p.dtypeBytes.length, o); o += 1;
    p.dtypeBytes.copy(b, o); o += p.dtypeBytes.length;
    b.writeUInt8(p.t.shape.length, o); o += 1;
    for (const d of p.t.shape) { b.writeUInt32LE(d, o); o += 4; }
    b.writeBigUInt64LE(BigInt(p.headerOffset), o); o += 8;
    b.writeBigUInt64LE(BigInt(p.dataOffset), o); o += 8;
    b.writeBigUInt64LE(BigInt(p.dataLength), o); o += 8;
  }
  return b;
}

export async function writeTensorizer(out: string, tensors: readonly WriteTensor[], opts: WriteOptions = {}): Promise<WriteSummary> {
  const { planned, version, metadataLength, warnings } = plan(tensors);
  const last = planned[planned.length - 1]!;
  const trailer = opts.trailer ?? true;
  const fileBytes = last.dataOffset + last.dataLength + (trailer ? 8 : 0);
  const dataBytes = planned.reduce((n, p) => n + p.dataLength, 0);
  opts.onStart?.(dataBytes);

  const tmp = await TempOutput.create(out);
  const fh = await open(tmp.path, 'w+');
  const pool = new JobRunner(opts.threads, opts.onProgress, opts.chunkSize);
  try {
    await fh.truncate(fileBytes);
    const prologue = encodePrologue(planned, version, metadataLength);
    await fh.write(prologue, 0, prologue.length, 0);
    await Promise.all(
      planned.map(async (p, id) => {
        // Header sizes do not depend on the hash values: hash the header with zeroed values,
        // then fill them in and write the header in place.
        const h = encodeHeader({
          moduleIdx: p.t.moduleIdx ?? 0,
          type: p.t.type,
          nameBytes: p.name,
          dtypeBytes: p.dtypeBytes,
          shape: p.t.shape,
          hashTypes: HASHES,
          dataLength: p.dataLength,
        });
        let crc: number;
        let sha: Uint8Array;
        if (p.dataLength === 0) {
          // Meta and empty tensors: the hashes cover the header alone.
          crc = crc32(h.buf) >>> 0;
          sha = createHash('sha256').update(h.buf).digest();
        } else {
          const r = await pool
            .run({ id, src: p.t.data!, dst: { path: tmp.path, offset: p.dataOffset }, prefix: [h.buf], crc32: true, sha256: true })
            .catch((e: unknown) => {
              throw inTensor(e, pathToString(p.t.path));
            });
          crc = r.crc32!;
          sha = r.sha256!;
        }
        h.buf.writeUInt32LE(crc, h.valueOffsets[0]!);
        Buffer.from(sha).copy(h.buf, h.valueOffsets[1]!);
        await fh.write(h.buf, 0, h.buf.length, p.headerOffset);
      }),
    );
    await pool.close();
    await fh.close();
    await tmp.commit();
  } catch (e) {
    await pool.close();
    await fh.close().catch(() => {});
    await tmp.discard();
    throw e instanceof TensorizeError ? e : fsError(e, out);
  }
  return { path: out, tensors: planned.length, dataBytes, fileBytes, version, warnings };
}
