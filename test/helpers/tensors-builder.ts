/**
 * A hand-rolled .tensors builder, independent of src/format/encode.ts and src/ops/serialize.ts (an oracle for the
 * reader and the writer), with knobs to make the index and the headers say whatever a test
 * needs. Hashes are always computed over the header as written (so a test fails on the
 * structure, not on a hash) unless a test changes bytes afterwards.
 */
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';


export interface HashSpec {
  type: number;
  len: number;
}
export interface Rec {
  name: string | Buffer;
  type?: number;
  dtype?: string;
  shape?: number[];
  data?: Buffer;
  moduleIdx?: number;
  /**
   * 64-bit dimensions in the index entry and the header (data version 5, docs/format.md
   * §4.1). Default: when a dimension is 2^32 or more. `idx.long` / `hdr.long` set one side.
   */
  long?: boolean;
  /** Header fields that differ from the index. */
  hdr?: {
    long?: boolean;
    name?: string | Buffer;
    type?: number;
    dtype?: string;
    shape?: number[];
    dataLength?: bigint;
    hashes?: HashSpec[];
    hashCount?: number;
    /** Raw crypt-info segment (u64 length + body) placed after the hash block. */
    crypt?: Buffer;
    sizeField?: bigint;
    nameLenField?: number;
    hashBlockLenField?: number;
  };
  /** Index fields that differ from the header. */
  idx?: {
    long?: boolean;
    /** The entry's version tag, when the index is tagged (default: 5 for 64-bit dimensions, else 1). */
    tag?: number;
    name?: string | Buffer;
    type?: number;
    dtype?: string;
    shape?: number[];
    nameLenField?: number;
    headerOffset?: bigint;
    dataOffset?: bigint;
    dataLength?: bigint;
  };
}
export interface BuildOpts {
  version?: number;
  flags?: bigint;
  count?: bigint;
  /** Extra zero bytes after the index entries, inside M. */
  metaPad?: number;
  metaLen?: bigint;
  gapAfterMeta?: number;
  gapBetween?: number;
  trailer?: boolean;
  swapIndex?: [number, number];
  /** A u32 version tag before every index entry (default: when flag bit 1 is set; §4.1). */
  tagged?: boolean;
}
export interface RecLayout {
  name: string;
  headerOffset: number;
  headerSize: number;
  dataOffset: number;
  dataLength: number;
  /** Absolute offsets of fields inside the header. */
  moduleIdx: number;
  type: number;
  nameLen: number;
  dtype: number;
  ndim: number;
  hashBlockLen: number;
  hashCount: number;
  hashValues: { type: number; off: number; len: number }[];
  dataLengthField: number;
}
export interface IdxLayout {
  start: number;
  /** The version tag's offset (tagged indexes only; else -1). */
  tag: number;
  nameLen: number;
  name: number;
  type: number;
  dtypeLen: number;
  dtype: number;
  ndim: number;
  headerOffset: number;
  dataOffset: number;
  dataLength: number;
}
export interface Built {
  buf: Buffer;
  recs: RecLayout[];
  idx: IdxLayout[];
  metaEnd: number;
}

export const DEFAULT_HASHES: HashSpec[] = [
  { type: 0, len: 4 },
  { type: 1, len: 32 },
];
const bytes = (s: string | Buffer): Buffer => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s);
export const u64 = (v: bigint | number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
const isLong = (shape: number[]): boolean => shape.some((d) => d >= 2 ** 32);
const putDims = (b: Buffer, p: number, shape: number[], long: boolean): number => {
  for (const d of shape) {
    if (long) b.writeBigUInt64LE(BigInt(d), p);
    else b.writeUInt32LE(d, p);
    p += long ? 8 : 4;
  }
  return p;
};
const itemsizeOf = (dtype: string): number => {
  const m = /[a-zA-Z]([0-9]+)/.exec(dtype.split('\0')[0]!);
  return m ? Number(m[1]) : 1;
};

export function build(recs: Rec[], o: BuildOpts = {}): Built {
  const norm = recs.map((r) => {
    const dtype = r.dtype ?? '<f4';
    const data = r.data ?? Buffer.alloc((r.shape ?? [1]).reduce((a, d) => a * d, 1) * itemsizeOf(dtype));
    const shape = r.shape ?? [data.length / itemsizeOf(dtype)];
    return { ...r, type: r.type ?? 0, dtype, data, shape };
  });
  // Headers.
  const headers = norm.map((r) => {
    const name = bytes(r.hdr?.name ?? r.name);
    const dtype = Buffer.from(r.hdr?.dtype ?? r.dtype, 'latin1');
    const shape = r.hdr?.shape ?? r.shape;
    const hashes = r.hdr?.hashes ?? DEFAULT_HASHES;
    const crypt = r.hdr?.crypt ?? Buffer.alloc(0);
    const long = r.hdr?.long ?? r.long ?? isLong(shape);
    const block = 1 + hashes.reduce((n, h) => n + 2 + h.len, 0);
    const size = 8 + 2 + 1 + 2 + name.length + 1 + dtype.length + 1 + (long ? 8 : 4) * shape.length + 2 + block + crypt.length + 8;
    const b = Buffer.alloc(size);
    let p = 0;
    b.writeBigUInt64LE(r.hdr?.sizeField ?? BigInt(size), p); p += 8;
    const moduleIdx = p;
    b.writeUInt16LE(r.moduleIdx ?? 0, p); p += 2;
    const type = p;
    b.writeUInt8(r.hdr?.type ?? r.type, p); p += 1;
    const nameLen = p;
    b.writeUInt16LE(r.hdr?.nameLenField ?? name.length, p); p += 2;
    name.copy(b, p); p += name.length;
    const dtypeOff = p;
    b.writeUInt8(dtype.length, p); p += 1;
    dtype.copy(b, p); p += dtype.length;
    const ndim = p;
    b.writeUInt8(shape.length, p); p += 1;
    p = putDims(b, p, shape, long);
    const hashBlockLen = p;
    b.writeUInt16LE(r.hdr?.hashBlockLenField ?? block, p); p += 2;
    const hashCount = p;
    b.writeUInt8(r.hdr?.hashCount ?? hashes.length, p); p += 1;
    const hashValues: RecLayout['hashValues'] = [];
    for (const h of hashes) {
      b.writeUInt8(h.type, p); p += 1;
      b.writeUInt8(h.len, p); p += 1;
      hashValues.push({ type: h.type, off: p, len: h.len });
      p += h.len;
    }
    const cryptStart = p;
    crypt.copy(b, p); p += crypt.length;
    const dataLengthField = p;
    b.writeBigInt64LE(BigInt.asIntN(64, r.hdr?.dataLength ?? BigInt(r.data.length)), p); p += 8;
    if (p !== size) throw new Error('builder bug');
    // Hashes over the zeroed header (crypt segment cut out) and the data.
    const hashed = Buffer.concat([b.subarray(0, cryptStart), b.subarray(cryptStart + crypt.length), r.data]);
    for (const h of hashValues) {
      if (h.type === 0 && h.len === 4) b.writeUInt32LE(crc32(hashed) >>> 0, h.off);
      if (h.type === 1 && h.len === 32) createHash('sha256').update(hashed).digest().copy(b, h.off);
    }
    return { b, rel: { moduleIdx, type, nameLen, dtype: dtypeOff, ndim, hashBlockLen, hashCount, hashValues, dataLengthField } };
  });
  // Index.
  const tagged = o.tagged ?? ((o.flags ?? 0n) & 2n) !== 0n;
  const entries = norm.map((r) => {
    const name = bytes(r.idx?.name ?? r.name);
    const dtype = Buffer.from(r.idx?.dtype ?? r.dtype, 'latin1');
    const shape = r.idx?.shape ?? r.shape;
    const long = r.idx?.long ?? r.long ?? isLong(shape);
    return { name, dtype, shape, long, size: (tagged ? 4 : 0) + 2 + name.length + 1 + 1 + dtype.length + 1 + (long ? 8 : 4) * shape.length + 24 };
  });
  const entriesLen = entries.reduce((n, e) => n + e.size, 0);
  const M = entriesLen + (o.metaPad ?? 0);
  const metaEnd = 73 + M;
  let pos = metaEnd + (o.gapAfterMeta ?? 0);
  const recs2: RecLayout[] = norm.map((r, i) => {
    const h = headers[i]!;
    const headerOffset = pos;
    const dataOffset = pos + h.b.length;
    pos = dataOffset + r.data.length + (o.gapBetween ?? 0);
    const abs = (x: number) => headerOffset + x;
    return {
      name: typeof r.name === 'string' ? r.name : r.name.toString('utf8'),
      headerOffset,
      headerSize: h.b.length,
      dataOffset,
      dataLength: r.data.length,
      moduleIdx: abs(h.rel.moduleIdx),
      type: abs(h.rel.type),
      nameLen: abs(h.rel.nameLen),
      dtype: abs(h.rel.dtype),
      ndim: abs(h.rel.ndim),
      hashBlockLen: abs(h.rel.hashBlockLen),
      hashCount: abs(h.rel.hashCount),
      hashValues: h.rel.hashValues.map((v) => ({ ...v, off: abs(v.off) })),
      dataLengthField: abs(h.rel.dataLengthField),
    };
  });
  if (o.gapBetween) pos -= o.gapBetween;
  const order = norm.map((_, i) => i);
  if (o.swapIndex) {
    const [a, b] = o.swapIndex;
    [order[a], order[b]] = [order[b]!, order[a]!];
  }
  const meta = Buffer.alloc(M);
  const idx: IdxLayout[] = [];
  let p = 0;
  for (const i of order) {
    const e = entries[i]!;
    const r = norm[i]!;
    const L = recs2[i]!;
    const start = 73 + p;
    const tagOff = tagged ? start : -1;
    if (tagged) { meta.writeUInt32LE(r.idx?.tag ?? (e.long ? 5 : 1), p); p += 4; }
    meta.writeUInt16LE(r.idx?.nameLenField ?? e.name.length, p); p += 2;
    const nameOff = 73 + p;
    e.name.copy(meta, p); p += e.name.length;
    const typeOff = 73 + p;
    meta.writeUInt8(r.idx?.type ?? r.type, p); p += 1;
    const dtypeLenOff = 73 + p;
    meta.writeUInt8(e.dtype.length, p); p += 1;
    e.dtype.copy(meta, p); p += e.dtype.length;
    const ndimOff = 73 + p;
    meta.writeUInt8(e.shape.length, p); p += 1;
    p = putDims(meta, p, e.shape, e.long);
    const offs = 73 + p;
    meta.writeBigUInt64LE(r.idx?.headerOffset ?? BigInt(L.headerOffset), p); p += 8;
    meta.writeBigUInt64LE(r.idx?.dataOffset ?? BigInt(L.dataOffset), p); p += 8;
    meta.writeBigUInt64LE(r.idx?.dataLength ?? BigInt(L.dataLength), p); p += 8;
    idx[i] = { start, tag: tagOff, nameLen: tagged ? start + 4 : start, name: nameOff, type: typeOff, dtypeLen: dtypeLenOff, dtype: dtypeLenOff + 1, ndim: ndimOff, headerOffset: offs, dataOffset: offs + 8, dataLength: offs + 16 };
  }
  const head = Buffer.alloc(73);
  head.write('|TZR|', 0, 'latin1');
  head.writeUInt32LE(o.version ?? 1, 5);
  const flags = o.flags ?? 0n;
  for (let k = 0; k < 4; k++) head.writeBigUInt64LE((flags >> BigInt(64 * k)) & 0xffffffffffffffffn, 9 + 8 * k);
  head.writeBigUInt64LE(BigInt(norm.reduce((n, r) => n + r.data.length, 0)), 41);
  head.writeBigUInt64LE(o.count ?? BigInt(norm.length), 57);
  head.writeBigUInt64LE(o.metaLen ?? BigInt(M), 65);
  const file = Buffer.alloc(pos + (o.trailer ? 8 : 0));
  head.copy(file, 0);
  meta.copy(file, 73);
  norm.forEach((r, i) => {
    headers[i]!.b.copy(file, recs2[i]!.headerOffset);
    r.data.copy(file, recs2[i]!.dataOffset);
  });
  return { buf: file, recs: recs2, idx, metaEnd };
}

export const f32 = (...v: number[]): Buffer => {
  const b = Buffer.alloc(4 * v.length);
  v.forEach((x, i) => b.writeFloatLE(x, 4 * i));
  return b;
};

/** Two ordinary tensors; most structural cases tweak one field of this. */
export const basic = (over: (recs: Rec[]) => void = () => {}): Rec[] => {
  const recs: Rec[] = [
    { name: 'w', shape: [2, 3], data: f32(0, 1, 2, 3, 4, 5) },
    { name: 'b', dtype: '<i2', shape: [3], data: Buffer.from([1, 0, 2, 0, 3, 0]) },
  ];
  over(recs);
  return recs;
};
