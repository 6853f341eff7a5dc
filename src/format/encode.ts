/**
 * The tensorizer layout of a file to write (docs/format.md): plan() places every tensor
 * (exact offsets: header sizes do not depend on hash values, so the index is final before
 * any data is read), encodePrologue() gives the file header and index, headerOf() each
 * tensor header with its hash values zeroed (they are hashed that way) and setHashes() fills
 * them in. Pure: no I/O; ops/serialize.ts moves the bytes.
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { TensorizeError } from '../errors.js';
import {
  dimWidth,
  ENTRY_TAG_U32,
  ENTRY_TAG_U64,
  FLAG_VERSIONED_ENTRIES,
  HashType,
  LONG_SHAPE_VERSION,
  MAGIC,
  METADATA_OFFSET,
  metadataEntrySize,
  TensorType,
} from './constants.js';
import type { DTypeInfo } from './dtypes.js';
import { checkShape, encodeHeader, headerSize, numel } from './header.js';
import { encodePath, isPlain, PathRegistry, pathToString, type TensorPath } from './paths.js';
import { sourceBytes, type SourceData } from './view.js';

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

export const MAX_ALIGN = 1 << 20;

/**
 * The alignment `tensorize serialize` (and bench's conversions) write by default: a cache
 * line, a multiple of every element size (so load --mmap finds no misaligned tensor) and of
 * the widest vector loads (AVX-512). tensorizer 2.10.1, 2.11.1 and 2.12.1 read such files.
 */
export const DEFAULT_ALIGN = 64;

/** Validate an alignment: a power of two from 1 to MAX_ALIGN. */
export function checkAlign(align: number): number {
  if (!Number.isInteger(align) || align < 1 || align > MAX_ALIGN || (align & (align - 1)) !== 0) {
    throw new TensorizeError('E_USAGE', `alignment must be a power of two from 1 to ${MAX_ALIGN}, not ${align}`);
  }
  return align;
}

const HASHES = [HashType.CRC32, HashType.SHA256] as const;

export interface Planned {
  t: WriteTensor;
  name: Buffer;
  dtypeBytes: Buffer;
  headerOffset: number;
  headerSize: number;
  dataOffset: number;
  dataLength: number;
  /** Zero bytes at the end of the header, before data_length (alignment). */
  padding: number;
  /** Bytes per dimension in its index entry and header: 8 when a dimension is 2^32 or more (§4.1). */
  dimBytes: 4 | 8;
}

export function plan(tensors: readonly WriteTensor[], align = 1): { planned: Planned[]; version: number; metadataLength: number; warnings: string[] } {
  if (tensors.length === 0) throw new TensorizeError('E_INPUT', 'no tensors to write (tensorizer cannot open a file with an empty index)');
  const registry = new PathRegistry();
  const warnings: string[] = [];
  let version = 1;
  let metadataLength = 0;
  for (const t of tensors) checkShape(t.shape, `tensor ${pathToString(t.path)}`);
  // A dimension of 2^32 or more: data version 5, and every index entry gets a version tag
  // (tensorizer tags them all once one needs 64-bit dimensions; §4.1). Otherwise the bytes
  // are those of versions 1-4, which tensorizer 2.10 and 2.11 read.
  const tagged = tensors.some((t) => dimWidth(t.shape) === 8);
  if (tagged) version = LONG_SHAPE_VERSION;
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
      warnings.push(`tensor ${pathToString(t.path)} has no elements and the opaque dtype ${t.dtype.name}: tensorizer 2.11 and 2.12 cannot open files holding such tensors`);
    } else if (t.dtype.opaque && t.meta) {
      warnings.push(`meta tensor ${pathToString(t.path)} has the opaque dtype ${t.dtype.name}: tensorizer 2.11 and 2.12 cannot open files holding such tensors`);
    }
    const dimBytes = dimWidth(t.shape);
    metadataLength += metadataEntrySize(name.length, dtypeBytes.length, t.shape.length, dimBytes, tagged);
    return { t, name, dtypeBytes, size, dimBytes };
  });
  let pos = METADATA_OFFSET + metadataLength;
  const planned = pre.map(({ t, name, dtypeBytes, size, dimBytes }) => {
    const dataLength = t.meta ? 0 : size;
    const bare = headerSize(name.length, dtypeBytes.length, t.shape.length, HASHES, dimBytes);
    const padding = dataLength > 0 ? (align - ((pos + bare) % align)) % align : 0;
    const hs = bare + padding;
    const p: Planned = { t, name, dtypeBytes, headerOffset: pos, headerSize: hs, dataOffset: pos + hs, dataLength, padding, dimBytes };
    pos += hs + dataLength;
    return p;
  });
  return { planned, version, metadataLength, warnings };
}

export function encodePrologue(planned: Planned[], version: number, metadataLength: number): Buffer {
  const b = Buffer.alloc(METADATA_OFFSET + metadataLength);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(version, 5);
  // Flags (bytes 9-40): this writer does not encrypt; bit 1 when the index entries are tagged (§4.1).
  const tagged = planned.some((p) => p.dimBytes === 8);
  if (tagged) b.writeBigUInt64LE(FLAG_VERSIONED_ENTRIES, 9);
  b.writeBigUInt64LE(BigInt(planned.reduce((n, p) => n + p.dataLength, 0)), 41);
  b.writeBigUInt64LE(BigInt(planned.length), 57);
  b.writeBigUInt64LE(BigInt(metadataLength), 65);
  let o = METADATA_OFFSET;
  for (const p of planned) {
    if (tagged) { b.writeUInt32LE(p.dimBytes === 8 ? ENTRY_TAG_U64 : ENTRY_TAG_U32, o); o += 4; }
    b.writeUInt16LE(p.name.length, o); o += 2;
    p.name.copy(b, o); o += p.name.length;
    b.writeUInt8(p.t.type, o); o += 1;
    b.writeUInt8(p.dtypeBytes.length, o); o += 1;
    p.dtypeBytes.copy(b, o); o += p.dtypeBytes.length;
    b.writeUInt8(p.t.shape.length, o); o += 1;
    for (const d of p.t.shape) {
      if (p.dimBytes === 8) b.writeBigUInt64LE(BigInt(d), o);
      else b.writeUInt32LE(d, o);
      o += p.dimBytes;
    }
    b.writeBigUInt64LE(BigInt(p.headerOffset), o); o += 8;
    b.writeBigUInt64LE(BigInt(p.dataOffset), o); o += 8;
    b.writeBigUInt64LE(BigInt(p.dataLength), o); o += 8;
  }
  return b;
}

/** The header of a planned tensor, with its hash values zeroed (they are hashed that way). */
export function headerOf(p: Planned) {
  return encodeHeader({
    moduleIdx: p.t.moduleIdx ?? 0,
    type: p.t.type,
    nameBytes: p.name,
    dtypeBytes: p.dtypeBytes,
    shape: p.t.shape,
    hashTypes: HASHES,
    dataLength: p.dataLength,
    padding: p.padding,
  });
}

/** Put the hash values into an encoded header. */
export function setHashes(h: ReturnType<typeof encodeHeader>, crc: number, sha: Uint8Array): void {
  h.buf.writeUInt32LE(crc, h.valueOffsets[0]!);
  Buffer.from(sha).copy(h.buf, h.valueOffsets[1]!);
}

/** Hashes of a header alone (meta and empty tensors). */
export function headerOnlyHashes(h: Buffer): { crc: number; sha: Uint8Array } {
  return { crc: crc32(h) >>> 0, sha: createHash('sha256').update(h).digest() };
}

