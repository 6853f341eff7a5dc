/**
 * The per-tensor header (docs/format.md §5): encoding for the writer, strict
 * decoding for the reader, and the exact byte ranges the CRC32 and SHA-256 cover (§5.1).
 */
import { TensorizeError } from '../errors.js';
import { dimWidth, HASH_LENGTHS, HashType, TensorType } from './constants.js';
import { parseTensorizerDtype, type DTypeInfo } from './dtypes.js';
import { decodePath, type TensorPath } from './paths.js';

export interface HashEntry {
  type: HashType;
  /** Offset of the value bytes inside the header buffer. */
  valueOffset: number;
  value: Buffer;
}

export interface CryptChunk {
  type: number;
  /** Payload after the u16 type. */
  payload: Buffer;
}

export interface CryptInfo {
  /** Offsets of the whole crypt-info segment (u64 length + body) inside the header buffer. */
  start: number;
  end: number;
  chunks: CryptChunk[];
}

export interface TensorHeader {
  headerSize: number;
  moduleIdx: number;
  type: TensorType;
  nameBytes: Buffer;
  path: TensorPath;
  dtypeString: string;
  dtype: DTypeInfo;
  shape: number[];
  hashes: HashEntry[];
  crypt?: CryptInfo;
  /** From the last 8 bytes of the header (signed in the format; negative values are rejected). */
  dataLength: number;
}

/** Encoded header size for the given fields (no crypt info); `dimBytes` 8 for a tensor with 64-bit shape fields (§4.1). */
export function headerSize(nameLen: number, dtypeLen: number, ndim: number, hashTypes: readonly HashType[], dimBytes: 4 | 8 = 4): number {
  const hashBlock = 1 + hashTypes.reduce((n, t) => n + 2 + HASH_LENGTHS[t], 0);
  return 8 + 2 + 1 + 2 + nameLen + 1 + dtypeLen + 1 + dimBytes * ndim + 2 + hashBlock + 8;
}

/**
 * Refuse a shape the format cannot hold: more than 255 dimensions, or a dimension that is
 * not an integer from 0 to 2^53 - 1 (64-bit shape fields hold more, but not exactly as a
 * JavaScript number, and no tensor with such a dimension has any elements to write).
 */
export function checkShape(shape: readonly number[], what: string): void {
  if (shape.length > 0xff) throw new TensorizeError('E_INEXPRESSIBLE', `${what} has ${shape.length} dimensions; the format allows 255`);
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) {
      throw new TensorizeError('E_INEXPRESSIBLE', `${what} has the dimension ${d}; tensorize writes dimensions from 0 to 2^53 - 1`);
    }
  }
}

export interface EncodedHeader {
  buf: Buffer;
  /** The hashes the header holds, in order. */
  types: readonly HashType[];
  /** Offsets of each hash value inside `buf`, in the order of `types`. */
  valueOffsets: number[];
  /** The crypt-info segment (u64 length + body) inside `buf`, when the header has one. */
  crypt?: { start: number; end: number };
}

/**
 * Build a header with zeroed hash values (the form the hashes are computed over; with a
 * crypt-info segment, the hashes cover the header without it: see hashedParts).
 * `padding` zero bytes go between the hash block and data_length: readers take data_length
 * from the header's last 8 bytes and hash the padding with the rest, so it moves the data
 * to an aligned offset without changing what the header says.
 */
export function encodeHeader(f: {
  moduleIdx: number;
  type: TensorType;
  nameBytes: Buffer;
  dtypeBytes: Buffer;
  shape: readonly number[];
  hashTypes: readonly HashType[];
  dataLength: number;
  padding?: number;
  /** A crypt-info segment (u64 length + body) to put after the hash block (files with crypt info). */
  crypt?: Buffer;
}): EncodedHeader {
  if (f.nameBytes.length > 0xffff) throw new TensorizeError('E_INEXPRESSIBLE', `tensor name is ${f.nameBytes.length} bytes; the format allows 65535`);
  if (f.dtypeBytes.length > 0xff) throw new TensorizeError('E_INEXPRESSIBLE', 'dtype string longer than 255 bytes');
  checkShape(f.shape, 'tensor');
  // A shape with a dimension of 2^32 or more is written with 64-bit fields (data version 5, §4.1).
  const dimBytes = dimWidth(f.shape);
  const size = headerSize(f.nameBytes.length, f.dtypeBytes.length, f.shape.length, f.hashTypes, dimBytes) + (f.crypt?.length ?? 0) + (f.padding ?? 0);
  const b = Buffer.alloc(size);
  let o = 0;
  b.writeBigUInt64LE(BigInt(size), o); o += 8;
  b.writeUInt16LE(f.moduleIdx, o); o += 2;
  b.writeUInt8(f.type, o); o += 1;
  b.writeUInt16LE(f.nameBytes.length, o); o += 2;
  f.nameBytes.copy(b, o); o += f.nameBytes.length;
  b.writeUInt8(f.dtypeBytes.length, o); o += 1;
  f.dtypeBytes.copy(b, o); o += f.dtypeBytes.length;
  b.writeUInt8(f.shape.length, o); o += 1;
  for (const d of f.shape) {
    if (dimBytes === 8) b.writeBigUInt64LE(BigInt(d), o);
    else b.writeUInt32LE(d, o);
    o += dimBytes;
  }
  const hashBlock = 1 + f.hashTypes.reduce((n, t) => n + 2 + HASH_LENGTHS[t], 0);
  b.writeUInt16LE(hashBlock, o); o += 2;
  b.writeUInt8(f.hashTypes.length, o); o += 1;
  const valueOffsets: number[] = [];
  for (const t of f.hashTypes) {
    b.writeUInt8(t, o); o += 1;
    b.writeUInt8(HASH_LENGTHS[t], o); o += 1;
    valueOffsets.push(o);
    o += HASH_LENGTHS[t];
  }
  let crypt: EncodedHeader['crypt'];
  if (f.crypt) {
    crypt = { start: o, end: o + f.crypt.length };
    f.crypt.copy(b, o); o += f.crypt.length;
  }
  o += f.padding ?? 0;
  b.writeBigInt64LE(BigInt(f.dataLength), o); o += 8;
  if (o !== size) throw new Error(`internal: header size ${o} != ${size}`);
  return { buf: b, types: f.hashTypes, valueOffsets, ...(crypt ? { crypt } : {}) };
}

class Cursor {
  o = 0;
  constructor(readonly b: Buffer, readonly end: number, readonly where: (o: number) => string) {}
  need(n: number, what: string): void {
    if (this.o + n > this.end) {
      throw new TensorizeError('E_FORMAT', `tensor header too short for its ${what} at ${this.where(this.o)}`);
    }
  }
  u8(what: string): number { this.need(1, what); return this.b.readUInt8(this.o++); }
  u16(what: string): number { this.need(2, what); const v = this.b.readUInt16LE(this.o); this.o += 2; return v; }
  u32(what: string): number { this.need(4, what); const v = this.b.readUInt32LE(this.o); this.o += 4; return v; }
  u64(what: string): bigint { this.need(8, what); const v = this.b.readBigUInt64LE(this.o); this.o += 8; return v; }
  bytes(n: number, what: string): Buffer { this.need(n, what); const v = this.b.subarray(this.o, this.o + n); this.o += n; return v; }
}

/**
 * Parse a complete header buffer (`buf.length` must equal the header_size it starts with).
 * `where(o)` formats a position for error messages. `dimBytes`: the width of the shape
 * fields, which the tensor's index entry gives (8 for a v5 entry tagged 5; the header has no
 * tag of its own, §4.1). A 64-bit dimension of 2^53 or more comes out inexact (at least
 * 2^53), which no index entry the reader accepts can equal.
 */
export function decodeHeader(buf: Buffer, withCrypt: boolean, where: (o: number) => string, dimBytes: 4 | 8 = 4): TensorHeader {
  const c = new Cursor(buf, buf.length - 8, where);
  if (buf.length < 8 + 8) throw new TensorizeError('E_FORMAT', `tensor header of ${buf.length} bytes is too short at ${where(0)}`);
  const headerSize = Number(c.u64('size'));
  if (headerSize !== buf.length) throw new Error('internal: header buffer length mismatch');
  const moduleIdx = c.u16('module index');
  const typeOff = c.o;
  const type = c.u8('tensor type');
  if (!(type in TensorType)) throw new TensorizeError('E_FORMAT', `unknown tensor type ${type} at ${where(typeOff)}`);
  const nameBytes = c.bytes(c.u16('name length'), 'name');
  const nameOff = c.o - nameBytes.length;
  let path: TensorPath;
  try {
    path = decodePath(nameBytes);
  } catch (e) {
    throw new TensorizeError('E_FORMAT', `${(e as Error).message} at ${where(nameOff)}`);
  }
  const dtypeBytes = c.bytes(c.u8('dtype length'), 'dtype');
  const dtypeString = dtypeBytes.toString('latin1');
  let dtype: DTypeInfo;
  try {
    dtype = parseTensorizerDtype(dtypeString);
  } catch (e) {
    throw new TensorizeError('E_FORMAT', `${(e as Error).message} at ${where(c.o - dtypeBytes.length)}`);
  }
  const ndim = c.u8('dimension count');
  const shape: number[] = [];
  for (let i = 0; i < ndim; i++) shape.push(dimBytes === 8 ? Number(c.u64('shape')) : c.u32('shape'));
  const blockOff = c.o;
  const blockLen = c.u16('hash block length');
  c.need(blockLen, 'hash block');
  const blockEnd = c.o + blockLen;
  if (blockLen < 1) throw new TensorizeError('E_FORMAT', `hash block length 0 at ${where(blockOff)}`);
  const count = c.u8('hash count');
  const hashes: HashEntry[] = [];
  const inBlock = new Cursor(buf, blockEnd, where);
  inBlock.o = c.o;
  for (let i = 0; i < count; i++) {
    const tOff = inBlock.o;
    const t = inBlock.u8('hash type');
    const len = inBlock.u8('hash length');
    if (t !== HashType.CRC32 && t !== HashType.SHA256) {
      throw new TensorizeError('E_FORMAT', `unknown hash type ${t} at ${where(tOff)}`);
    }
    if (len !== HASH_LENGTHS[t as HashType]) {
      throw new TensorizeError('E_FORMAT', `${t === HashType.CRC32 ? 'CRC32' : 'SHA-256'} hash has length ${len} at ${where(tOff)}`);
    }
    if (hashes.some((h) => h.type === t)) throw new TensorizeError('E_FORMAT', `hash type ${t} appears twice at ${where(tOff)}`);
    const valueOffset = inBlock.o;
    hashes.push({ type: t, valueOffset, value: inBlock.bytes(len, 'hash value') });
  }
  c.o = blockEnd; // bytes after the declared entries inside the block are ignored, as tensorizer does
  let crypt: CryptInfo | undefined;
  if (withCrypt) {
    const start = c.o;
    const bodyLen = c.u64('crypt-info length');
    if (bodyLen > BigInt(c.end - c.o)) throw new TensorizeError('E_FORMAT', `crypt-info length ${bodyLen} runs past the header at ${where(start)}`);
    const end = c.o + Number(bodyLen);
    const body = new Cursor(buf, end, where);
    body.o = c.o;
    const chunkCount = body.u16('crypt chunk count');
    const chunks: CryptChunk[] = [];
    for (let i = 0; i < chunkCount; i++) {
      const chunkOff = body.o;
      const len = body.u64('crypt chunk length');
      if (len < 2n || len > BigInt(end - body.o)) throw new TensorizeError('E_FORMAT', `crypt chunk length ${len} is out of bounds at ${where(chunkOff)}`);
      const chunkType = body.u16('crypt chunk type');
      chunks.push({ type: chunkType, payload: body.bytes(Number(len) - 2, 'crypt chunk') });
    }
    c.o = end;
    crypt = { start, end, chunks };
  }
  const dl = buf.readBigInt64LE(buf.length - 8);
  if (dl < 0n) throw new TensorizeError('E_FORMAT', `negative data length ${dl} at ${where(buf.length - 8)}`);
  if (dl > BigInt(Number.MAX_SAFE_INTEGER)) throw new TensorizeError('E_FORMAT', `absurd data length ${dl} at ${where(buf.length - 8)}`);
  return { headerSize, moduleIdx, type, nameBytes, path, dtypeString, dtype, shape, hashes, crypt, dataLength: Number(dl) };
}

/**
 * The header bytes the hashes cover: hash values zeroed, crypt-info segment cut out.
 * Returns slices of a copy, in order.
 */
export function hashedHeaderParts(buf: Buffer, h: Pick<TensorHeader, 'hashes' | 'crypt'>): Buffer[] {
  const copy = Buffer.from(buf);
  for (const e of h.hashes) copy.fill(0, e.valueOffset, e.valueOffset + e.value.length);
  if (!h.crypt) return [copy];
  return [copy.subarray(0, h.crypt.start), copy.subarray(h.crypt.end)];
}

export function numel(shape: readonly number[]): bigint {
  return shape.reduce((n, d) => n * BigInt(d), 1n);
}
