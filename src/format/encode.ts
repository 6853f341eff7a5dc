/**
 * The tensorizer layout of a file to write (docs/format.md): plan() places every tensor
 * (exact offsets: header sizes do not depend on hash values, so the index is final before
 * any data is read), encodePrologue() gives the file header and index, headerOf() each
 * tensor header with its hash values zeroed (they are hashed that way) and setHashes() fills
 * them in. Pure: no I/O; ops/serialize.ts moves the bytes.
 *
 * Encrypted files (plan() given a CryptLayout; reference §1, §5, §6.4, §9) are written as
 * tensorizer writes them: data version 3, or 4 with feature flag bit 0 when a meta tensor
 * needs version 4 (5 with flags bits 0 and 1 when a dimension needs 64-bit fields, as
 * tensorizer 2.12 writes it). Every header carries a crypt-info block between its hash
 * block and its padding: a tensor with data has a cipher chunk (after a key-derivation chunk
 * when the key comes from a passphrase) whose MACs are fixed-size, so header sizes are known
 * before encryption: the MACs are reserved as zeros and filled in (setMacs) once the data is
 * sealed, like the hash values. Such a tensor's hash is SHA-256 alone (of its header without
 * the crypt-info segment, then its plaintext); meta and zero-length tensors have an empty
 * crypt-info block and CRC32 + SHA-256 over their header.
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { TensorizeError } from '../errors.js';
import {
  dimWidth,
  ENTRY_TAG_U32,
  ENTRY_TAG_U64,
  FLAG_ENCRYPTED,
  FLAG_VERSIONED_ENTRIES,
  HashType,
  LONG_SHAPE_VERSION,
  MAGIC,
  METADATA_OFFSET,
  metadataEntrySize,
  TensorType,
} from './constants.js';
import type { DTypeInfo } from './dtypes.js';
import { chunkCount, cryptInfoSize, encodeCryptInfo, MAC_BYTES, type CryptLayout } from './crypt.js';
import { checkShape, encodeHeader, headerSize, numel, type EncodedHeader } from './header.js';
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
/** An encrypted tensor's hashes (tensorizer leaves CRC32 out: it is checked after decryption anyway). */
const SEALED_HASHES = [HashType.SHA256] as const;

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
  /**
   * In an encrypted file: the layout, and `macs`, the number of chunks its data is encrypted
   * in (absent for a tensor without data, which is not encrypted and has an empty block).
   */
  crypt?: { layout: CryptLayout; macs?: number };
}

/** Whether a planned tensor's data is encrypted. */
export const isSealed = (p: Planned): boolean => p.crypt?.macs !== undefined;

/**
 * Place the tensors (see the module comment). `encryption`: write an encrypted file with
 * this layout (a chunk size that is a multiple of 64 of at least 1024).
 */
export function plan(
  tensors: readonly WriteTensor[],
  align = 1,
  encryption?: CryptLayout,
): { planned: Planned[]; version: number; metadataLength: number; warnings: string[] } {
  if (tensors.length === 0) throw new TensorizeError('E_INPUT', 'no tensors to write (tensorizer cannot open a file with an empty index)');
  if (encryption && (!Number.isSafeInteger(encryption.chunkSize) || encryption.chunkSize < 1024 || encryption.chunkSize % 64 !== 0)) {
    throw new TensorizeError('E_USAGE', `an encryption chunk size must be a multiple of 64 of at least 1024, not ${encryption.chunkSize}`);
  }
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
  // Encryption: version 3 at least (crypt info in every header); 4 and 5 say so with flag bit 0.
  if (encryption) version = Math.max(version, 3);
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
  if (encryption && pre.every((x) => x.t.meta || x.size === 0)) {
    throw new TensorizeError('E_INPUT', 'nothing to encrypt: no tensor has data (tensorize reads an encrypted file only when some tensor is encrypted)');
  }
  let pos = METADATA_OFFSET + metadataLength;
  const planned = pre.map(({ t, name, dtypeBytes, size, dimBytes }) => {
    const dataLength = t.meta ? 0 : size;
    const macs = encryption && dataLength > 0 ? chunkCount(dataLength, encryption.chunkSize) : undefined;
    const crypt = encryption ? { layout: encryption, ...(macs !== undefined ? { macs } : {}) } : undefined;
    const bare = headerSize(name.length, dtypeBytes.length, t.shape.length, macs !== undefined ? SEALED_HASHES : HASHES, dimBytes) + (encryption ? cryptInfoSize(encryption, macs) : 0);
    const padding = dataLength > 0 ? (align - ((pos + bare) % align)) % align : 0;
    const hs = bare + padding;
    const p: Planned = { t, name, dtypeBytes, headerOffset: pos, headerSize: hs, dataOffset: pos + hs, dataLength, padding, dimBytes, ...(crypt ? { crypt } : {}) };
    pos += hs + dataLength;
    return p;
  });
  return { planned, version, metadataLength, warnings };
}

export function encodePrologue(planned: Planned[], version: number, metadataLength: number): Buffer {
  const b = Buffer.alloc(METADATA_OFFSET + metadataLength);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(version, 5);
  // Flags (bytes 9-40, data versions 4 and up): bit 0 when encrypted, bit 1 when the index
  // entries are tagged (§4.1). A v3 file is encrypted without saying so (zero flags).
  const tagged = planned.some((p) => p.dimBytes === 8);
  const encrypted = planned.some((p) => p.crypt);
  const flags = (tagged ? FLAG_VERSIONED_ENTRIES : 0n) | (encrypted && version >= 4 ? FLAG_ENCRYPTED : 0n);
  if (encrypted && version < 3) throw new Error('internal: an encrypted file below data version 3');
  b.writeBigUInt64LE(flags, 9);
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

/** A planned tensor's header, as headerOf() encodes it. */
export interface PlannedHeader extends EncodedHeader {
  /** An encrypted tensor's: where its MACs go in `buf`, and how many. */
  macs?: { offset: number; count: number };
}

/**
 * The header of a planned tensor, with its hash values zeroed (they are hashed that way)
 * and, for an encrypted tensor, its initial nonce in place and its MACs zeroed.
 */
export function headerOf(p: Planned, nonce?: Buffer): PlannedHeader {
  const sealed = isSealed(p);
  if (sealed !== (nonce !== undefined)) throw new Error(`internal: tensor ${pathToString(p.t.path)} ${sealed ? 'needs' : 'takes no'} nonce`);
  const crypt = p.crypt ? encodeCryptInfo(p.crypt.layout, sealed ? { nonce: nonce!, macs: p.crypt.macs! } : undefined) : undefined;
  const h = encodeHeader({
    moduleIdx: p.t.moduleIdx ?? 0,
    type: p.t.type,
    nameBytes: p.name,
    dtypeBytes: p.dtypeBytes,
    shape: p.t.shape,
    hashTypes: sealed ? SEALED_HASHES : HASHES,
    dataLength: p.dataLength,
    padding: p.padding,
    crypt: crypt?.buf,
  });
  if (h.buf.length !== p.headerSize) throw new Error(`internal: header of ${h.buf.length} bytes, planned ${p.headerSize}`);
  return sealed ? { ...h, macs: { offset: h.crypt!.start + crypt!.macsOffset, count: p.crypt!.macs! } } : h;
}

/**
 * The header bytes its hashes cover, in order (reference §5.1): the whole header, or without
 * its crypt-info segment. Views of `h.buf`: take them while the hash values are still zeros.
 */
export function hashedParts(h: EncodedHeader): Buffer[] {
  return h.crypt ? [h.buf.subarray(0, h.crypt.start), h.buf.subarray(h.crypt.end)] : [h.buf];
}

/** Put the hash values into an encoded header (`crc` is ignored when it has no CRC32). */
export function setHashes(h: EncodedHeader, crc: number | undefined, sha: Uint8Array): void {
  h.types.forEach((t, k) => {
    if (t === HashType.CRC32) {
      if (crc === undefined) throw new Error('internal: no CRC32 for a header that has one');
      h.buf.writeUInt32LE(crc, h.valueOffsets[k]!);
    } else Buffer.from(sha).copy(h.buf, h.valueOffsets[k]!);
  });
}

/** Put an encrypted tensor's MACs (16 bytes per chunk, in order) into its header. */
export function setMacs(h: PlannedHeader, macs: Uint8Array): void {
  if (!h.macs || macs.length !== MAC_BYTES * h.macs.count) throw new Error(`internal: ${macs.length} bytes of MACs for ${h.macs?.count ?? 0} chunks`);
  Buffer.from(macs.buffer, macs.byteOffset, macs.byteLength).copy(h.buf, h.macs.offset);
}

/** Hashes of a header alone (meta and empty tensors): over hashedParts, taken before any hash is set. */
export function headerOnlyHashes(h: EncodedHeader): { crc: number; sha: Uint8Array } {
  const parts = hashedParts(h);
  let crc = 0;
  const sha = createHash('sha256');
  for (const b of parts) {
    crc = crc32(b, crc);
    sha.update(b);
  }
  return { crc: crc >>> 0, sha: sha.digest() };
}

