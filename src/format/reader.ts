/**
 * Reads the file header, the metadata index and the per-tensor headers of a .tensors
 * file, by range, from any ByteSource. Stricter than tensorizer itself: short reads,
 * header sizes that disagree with the index, gaps or overlaps between records,
 * unknown hash types and conflicting names are all errors that name the file, the
 * tensor and the byte offset.
 */
import { at, inTensor, TensorizeError } from '../errors.js';
import type { ByteSource } from '../sources/source.js';
import { checkRange } from '../sources/source.js';
import {
  dimWidth,
  ENTRY_TAG_U32,
  ENTRY_TAG_U64,
  FLAG_VERSIONED_ENTRIES,
  hasCryptInfo,
  KNOWN_FLAGS,
  LONG_SHAPE_VERSION,
  MAGIC,
  METADATA_OFFSET,
  metadataEntrySize,
  SUPPORTED_VERSIONS,
  TensorType,
} from './constants.js';
import { parseTensorizerDtype, type DTypeInfo } from './dtypes.js';
import { decodeHeader, numel, type TensorHeader } from './header.js';
import { decodePath, isPlain, PathRegistry, pathToString, type TensorPath } from './paths.js';

/** Metadata larger than this is refused rather than read into memory. */
export const MAX_METADATA_BYTES = 512 * 1024 * 1024;
/** A single tensor header larger than this is refused (legit headers are far smaller). */
export const MAX_HEADER_BYTES = 64 * 1024 * 1024;
/**
 * readHeaders(): records spanning at most HEADER_BATCH bytes are read together, across the
 * data of tensors of at most HEADER_BATCH_GAP bytes (a read that small costs about what a
 * request or syscall of its own would; larger data is not read twice).
 */
const HEADER_BATCH = 1 << 20;
const HEADER_BATCH_GAP = 64 << 10;
/** readHeaders(): reads in flight. */
const HEADER_READS = 8;
const MIN_ENTRY = metadataEntrySize(1, 0, 0);

export interface TensorEntry {
  index: number;
  path: TensorPath;
  /** Display name: the plain name, or the JSON array of a structured path. */
  name: string;
  type: TensorType;
  dtypeString: string;
  dtype: DTypeInfo;
  shape: number[];
  headerOffset: number;
  dataOffset: number;
  /** Bytes of data in the file, from the index. */
  dataLength: number;
  /** itemsize × number of elements: the size the tensor has once loaded. */
  byteSize: number;
  /**
   * Bytes per dimension in this entry's shape and in its tensor header's: 8 for an entry
   * tagged 5 in a data version 5 file (a dimension of 2^32 or more), else 4 (§4.1).
   */
  dimBytes: 4 | 8;
}

export interface FileInfo {
  version: number;
  flags: bigint;
  /** Every tensor header carries a crypt-info block (v3, or v4+ with the encrypted flag). */
  hasCryptInfo: boolean;
  /** The header's "tensor_size" field (tensorizer writes the sum of data lengths). */
  tensorSizeField: bigint;
  tensorCount: number;
  metadataLength: number;
  fileSize: number;
}

export interface OpenOptions {
  /**
   * Parse the whole index even when its records run past the end of the file (a file cut
   * short in its data section), recording that in `truncated` instead of throwing: for
   * `info`, which shows the index and then reports the damage. Every other reader refuses.
   */
  allowTruncated?: boolean;
}

export class TensorizerFile {
  private constructor(
    readonly source: ByteSource,
    readonly info: FileInfo,
    readonly entries: TensorEntry[],
    /** Bytes after the last record (tensorizer writes an 8-byte zero end marker); negative when truncated. */
    readonly trailingBytes: number,
    /** With `allowTruncated`: why the file is too short for its index (undefined when it is not). */
    readonly truncated?: string,
  ) {}

  get name(): string {
    return this.source.name;
  }

  static async open(source: ByteSource, opts: OpenOptions = {}): Promise<TensorizerFile> {
    const f = source.name;
    if (source.size < METADATA_OFFSET) {
      if (source.size >= 5 && !(await source.read(0, 5)).equals(MAGIC)) throw notTensorizer(f);
      throw new TensorizeError('E_FORMAT', `${f}: ${source.size} bytes is too small to be a tensorizer file (the fixed header alone is ${METADATA_OFFSET} bytes)`);
    }
    const head = await source.read(0, METADATA_OFFSET);
    if (!head.subarray(0, 5).equals(MAGIC)) throw notTensorizer(f);
    const version = head.readUInt32LE(5);
    if (!SUPPORTED_VERSIONS.includes(version)) {
      throw new TensorizeError('E_FORMAT', `${f}: unsupported data version ${version} at byte 5 (tensorizer files are versions 1-5)`);
    }
    const flags = readU256(head, 9);
    if ((flags & ~KNOWN_FLAGS) !== 0n) throw new TensorizeError('E_FORMAT', `${f}: unknown feature flags 0x${flags.toString(16)} at byte 9`);
    const tagged = (flags & FLAG_VERSIONED_ENTRIES) !== 0n;
    if (tagged && version < LONG_SHAPE_VERSION) {
      throw new TensorizeError('E_FORMAT', `${f}: feature flags 0x${flags.toString(16)} at byte 9: bit 1 (tagged index entries) belongs to data version ${LONG_SHAPE_VERSION} and later, not to this version ${version} file`);
    }
    const tensorSizeField = head.readBigUInt64LE(41);
    const count64 = head.readBigUInt64LE(57);
    const m64 = head.readBigUInt64LE(65);
    if (count64 === 0n) throw new TensorizeError('E_FORMAT', `${f}: the tensor index is empty (tensor count 0 at byte 57)`);
    if (m64 > BigInt(source.size - METADATA_OFFSET)) {
      throw new TensorizeError('E_FORMAT', `${at(f, 65)}: metadata length ${m64} runs past the end of the ${source.size}-byte file`);
    }
    const m = Number(m64);
    if (m > MAX_METADATA_BYTES) throw new TensorizeError('E_FORMAT', `${at(f, 65)}: metadata length ${m} exceeds the ${MAX_METADATA_BYTES}-byte limit`);
    if (count64 > BigInt(Math.floor(m / MIN_ENTRY))) {
      throw new TensorizeError('E_FORMAT', `${at(f, 57)}: tensor count ${count64} cannot fit in ${m} bytes of metadata`);
    }
    const count = Number(count64);
    const meta = await source.read(METADATA_OFFSET, m);
    const info: FileInfo = {
      version,
      flags,
      hasCryptInfo: hasCryptInfo(version, flags),
      tensorSizeField,
      tensorCount: count,
      metadataLength: m,
      fileSize: source.size,
    };
    const damage: string[] = [];
    const entries = parseMetadata(f, meta, count, source.size, tagged, opts.allowTruncated ? damage : undefined);
    const last = entries[entries.length - 1]!;
    return new TensorizerFile(source, info, entries, source.size - (last.dataOffset + last.dataLength), damage[0]);
  }

  /**
   * What is wrong with the bytes after the last record, or undefined when they are sound.
   * Only tensorizer's 8-byte zero end marker may follow it: other bytes mean a damaged index
   * (a lowered tensor count hides records) or appended data, and a file cut short inside the
   * marker was cut short; no hash covers any of them. Reads at most 8 bytes.
   */
  async endProblem(): Promise<string | undefined> {
    if (this.truncated) return this.truncated;
    const n = this.trailingBytes;
    if (n === 0) return undefined;
    const at = this.source.size - n;
    if (n === 8) {
      const tail = await this.source.read(at, 8);
      if (tail.every((b) => b === 0)) return undefined;
      return `the 8 bytes after the last tensor record (byte ${at}) are not tensorizer's zero end marker; the index may be damaged`;
    }
    if (n > 0 && n < 8 && (await this.source.read(at, n)).every((b) => b === 0)) {
      return `the file ends ${n} bytes into tensorizer's 8-byte end marker (byte ${at}): it was cut short`;
    }
    return `${n} unexpected bytes follow the last tensor record (byte ${at}); the index may be damaged`;
  }

  /**
   * Read and check one tensor's header against its index entry: the size field must
   * equal the span the index gives, and name, type, dtype, shape and length must agree.
   */
  async readHeader(e: TensorEntry): Promise<{ header: TensorHeader; raw: Buffer }> {
    const span = e.dataOffset - e.headerOffset;
    checkRange(this.source, e.headerOffset, span, `header of tensor ${JSON.stringify(e.name)}`);
    const raw = await this.source.read(e.headerOffset, span).catch((err: unknown) => {
      throw inTensor(err, e.name);
    });
    return { header: this.checkHeader(e, raw), raw };
  }

  /**
   * Every tensor header, checked as readHeader() checks one, in index order. Runs of small
   * records are read together (headers and the small data between them, up to HEADER_BATCH
   * bytes a read), a few reads at a time: a model of 20,000 small tensors costs tens of
   * reads, not 20,000, from a disk or a server.
   */
  async readHeaders(): Promise<{ entry: TensorEntry; header: TensorHeader; raw: Buffer }[]> {
    const entries = this.entries;
    const groups: [number, number][] = [];
    for (let i = 0; i < entries.length; ) {
      let j = i + 1;
      while (j < entries.length && entries[j - 1]!.dataLength <= HEADER_BATCH_GAP && entries[j]!.dataOffset - entries[i]!.headerOffset <= HEADER_BATCH) j++;
      groups.push([i, j]);
      i = j;
    }
    const out: { entry: TensorEntry; header: TensorHeader; raw: Buffer }[] = new Array(entries.length);
    let next = 0;
    // The error of the first failing group in index order, whatever order reads finish in.
    const errors: unknown[] = [];
    const worker = async () => {
      while (next < groups.length && errors.length === 0) {
        const g = next++;
        await readGroup(g).catch((e: unknown) => (errors[g] = e));
      }
    };
    const readGroup = async (g: number) => {
      const [i, j] = groups[g]!;
      if (j === i + 1) {
        out[i] = { entry: entries[i]!, ...(await this.readHeader(entries[i]!)) };
        return;
      }
      const start = entries[i]!.headerOffset;
      const end = entries[j - 1]!.dataOffset;
      checkRange(this.source, start, end - start, `headers of tensors ${JSON.stringify(entries[i]!.name)} to ${JSON.stringify(entries[j - 1]!.name)}`);
      const buf = await this.source.read(start, end - start).catch((err: unknown) => {
        if (this.source.localPath === undefined) throw inTensor(err, entries[i]!.name);
        return undefined;
      });
      if (!buf) {
        // A short read of a local file (cut meanwhile): one header at a time, so the error names the tensor.
        for (let k = i; k < j; k++) out[k] = { entry: entries[k]!, ...(await this.readHeader(entries[k]!)) };
        return;
      }
      for (let k = i; k < j; k++) {
        const e = entries[k]!;
        const raw = Buffer.from(buf.subarray(e.headerOffset - start, e.dataOffset - start));
        out[k] = { entry: e, header: this.checkHeader(e, raw), raw };
      }
    };
    await Promise.all(Array.from({ length: Math.min(HEADER_READS, groups.length) }, worker));
    const first = errors.findIndex((e) => e !== undefined);
    if (first >= 0) throw errors[first];
    return out;
  }

  /** Decode one header (its bytes, as the index spans them) and check it against its index entry. */
  private checkHeader(e: TensorEntry, raw: Buffer): TensorHeader {
    const f = this.name;
    const span = e.dataOffset - e.headerOffset;
    const size = raw.readBigUInt64LE(0);
    if (size !== BigInt(span)) {
      throw new TensorizeError(
        'E_FORMAT',
        `${at(f, e.headerOffset, e.name)}: header size ${size} disagrees with the index, which puts the data ${span} bytes after the header start`,
      );
    }
    const header = decodeHeader(raw, this.info.hasCryptInfo, (o) => at(f, e.headerOffset + o, e.name), e.dimBytes);
    const mismatch = (what: string, h: unknown, m: unknown) =>
      new TensorizeError('E_FORMAT', `${at(f, e.headerOffset, e.name)}: the tensor header's ${what} (${h}) disagrees with the index (${m})`);
    if (JSON.stringify(header.path) !== JSON.stringify(e.path)) throw mismatch('name', JSON.stringify(pathToString(header.path)), JSON.stringify(e.name));
    if (header.type !== e.type) throw mismatch('type', header.type, e.type);
    if (header.dtypeString !== e.dtypeString) throw mismatch('dtype', JSON.stringify(header.dtypeString), JSON.stringify(e.dtypeString));
    if (header.shape.join(',') !== e.shape.join(',')) throw mismatch('shape', `[${header.shape}]`, `[${e.shape}]`);
    // The two lengths agree, except in tensorizer's 0-dim meta quirk: a scalar meta tensor
    // has a zero length in its header while the index reserves one item of bytes for it.
    if (header.dataLength !== e.dataLength && !(header.dataLength === 0 && e.shape.length === 0 && e.dataLength === e.byteSize)) {
      throw mismatch('data length', header.dataLength, e.dataLength);
    }
    return header;
  }

  /** A meta tensor: elements but no data in the file (loads as zeros). */
  static isMeta(e: TensorEntry, h: TensorHeader): boolean {
    return e.byteSize > 0 && h.dataLength === 0;
  }

  async close(): Promise<void> {
    await this.source.close();
  }
}

function notTensorizer(f: string): TensorizeError {
  return new TensorizeError('E_FORMAT', `${f} is not a tensorizer file (it does not start with "|TZR|")`, {
    hints: ['to convert safetensors or PyTorch weights, use: tensorize serialize <input> -o <out.tensors>'],
  });
}

function readU256(b: Buffer, o: number): bigint {
  let v = 0n;
  for (let i = 3; i >= 0; i--) v = (v << 64n) | b.readBigUInt64LE(o + 8 * i);
  return v;
}

/** A little-endian u64 as a number, or Infinity when it is above 2^53 (no BigInt: models carry tens of thousands of entries). */
function u64(b: Buffer, o: number): number {
  const hi = b.readUInt32LE(o + 4);
  return hi >= 0x200000 ? Infinity : hi * 0x100000000 + b.readUInt32LE(o);
}

/** Elements x item size, exact while below 2^53; larger products come out as at least 2^53. */
function byteSizeOf(shape: readonly number[], itemsize: number): number {
  let n = itemsize;
  for (const d of shape) n *= d;
  return Number.isSafeInteger(n) ? n : Number(numel(shape) * BigInt(itemsize));
}

/**
 * `tagged`: every entry starts with a u32 version tag (flag bit 1, data version 5; §4.1).
 * `damage`: collect "runs past the end of the file" problems there instead of throwing (OpenOptions.allowTruncated).
 */
function parseMetadata(f: string, meta: Buffer, count: number, fileSize: number, tagged: boolean, damage?: string[]): TensorEntry[] {
  const base = METADATA_OFFSET;
  const entries: TensorEntry[] = [];
  const registry = new PathRegistry();
  const dtypes = new Map<string, DTypeInfo>(); // a model repeats a handful of dtype strings
  let o = 0;
  const need = (n: number, what: string, i: number) => {
    if (o + n > meta.length) {
      throw new TensorizeError('E_FORMAT', `${at(f, base + o)}: metadata entry ${i} is truncated (its ${what} runs past the ${meta.length}-byte metadata section)`);
    }
  };
  let prevEnd = base + meta.length;
  for (let i = 0; i < count; i++) {
    const entryStart = base + o;
    let dimBytes: 4 | 8 = 4;
    if (tagged) {
      need(4, 'version tag', i);
      const tag = meta.readUInt32LE(o);
      if (tag !== ENTRY_TAG_U32 && tag !== ENTRY_TAG_U64) {
        throw new TensorizeError('E_FORMAT', `${at(f, entryStart)}: metadata entry ${i}: unknown entry version tag ${tag} (tags are ${ENTRY_TAG_U32}, 32-bit dimensions, and ${ENTRY_TAG_U64}, 64-bit ones)`);
      }
      if (tag === ENTRY_TAG_U64) dimBytes = 8;
      o += 4;
    }
    need(2, 'name length', i);
    const nameLen = meta.readUInt16LE(o); o += 2;
    need(nameLen, 'name', i);
    const nameBytes = meta.subarray(o, o + nameLen); o += nameLen;
    let path: TensorPath;
    try {
      path = decodePath(nameBytes);
    } catch (e) {
      throw new TensorizeError('E_FORMAT', `${at(f, entryStart + 2)}: metadata entry ${i}: ${(e as Error).message}`);
    }
    const name = pathToString(path);
    need(2, 'type and dtype length', i);
    const type = meta.readUInt8(o); o += 1;
    if (!(type in TensorType)) throw new TensorizeError('E_FORMAT', `${at(f, base + o - 1, name)}: unknown tensor type ${type}`);
    const dtypeLen = meta.readUInt8(o); o += 1;
    need(dtypeLen + 1, 'dtype', i);
    const dtypeString = meta.subarray(o, o + dtypeLen).toString('latin1'); o += dtypeLen;
    let dtype = dtypes.get(dtypeString);
    if (!dtype) {
      try {
        dtype = parseTensorizerDtype(dtypeString);
      } catch (e) {
        throw new TensorizeError('E_FORMAT', `${at(f, base + o - dtypeLen, name)}: ${(e as Error).message}`);
      }
      dtypes.set(dtypeString, dtype);
    }
    const ndim = meta.readUInt8(o); o += 1;
    need(dimBytes * ndim + 24, 'shape and offsets', i);
    const shapeAt = base + o;
    const shape: number[] = [];
    if (dimBytes === 4) {
      for (let d = 0; d < ndim; d++) { shape.push(meta.readUInt32LE(o)); o += 4; }
    } else {
      const dims: bigint[] = [];
      for (let d = 0; d < ndim; d++) { dims.push(meta.readBigUInt64LE(o)); o += 8; }
      // Before anything computes with them: a tensor of more than 2^53 bytes is absurd, as
      // below; a zero-element one with a dimension of 2^53 or more is valid but has no exact
      // JavaScript number for that dimension.
      const bytes = dims.reduce((n, d) => n * d, 1n) * BigInt(dtype.itemsize);
      if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new TensorizeError('E_FORMAT', `${at(f, entryStart, name)}: metadata entry ${i}: shape [${dims}] of ${dtype.name} would be ${bytes} bytes; refusing such an absurdly large tensor`);
      }
      const wide = dims.find((d) => d > BigInt(Number.MAX_SAFE_INTEGER));
      if (wide !== undefined) {
        throw new TensorizeError('E_UNSUPPORTED', `${at(f, shapeAt, name)}: metadata entry ${i}: shape [${dims}] has the dimension ${wide}; tensorize reads dimensions up to 2^53 - 1`);
      }
      for (const d of dims) shape.push(Number(d));
      // Tag 5 only where a dimension needs it, as tensorizer writes: the index is not hashed,
      // and a 1 flipped to 5 on a scalar's entry would otherwise read the same.
      if (dimWidth(shape) !== 8) {
        throw new TensorizeError('E_FORMAT', `${at(f, entryStart, name)}: metadata entry ${i} is tagged ${ENTRY_TAG_U64} (64-bit dimensions), but its shape [${shape}] has no dimension of 2^32 or more (tensorizer tags such entries ${ENTRY_TAG_U32})`);
      }
    }
    const offsAt = base + o;
    const headerOffset = u64(meta, o);
    const dataOffset = u64(meta, o + 8);
    const dataLength = u64(meta, o + 16);
    for (const [v, k] of [[headerOffset, 0], [dataOffset, 8], [dataLength, 16]] as const) {
      if (v > fileSize) {
        // Allowed a truncated file, the check of the data's end below records it.
        if (!damage || v === Infinity) throw new TensorizeError('E_FORMAT', `${at(f, offsAt, name)}: offset or length ${meta.readBigUInt64LE(o + k)} points past the end of the ${fileSize}-byte file`);
      }
    }
    o += 24;
    const byteSize = byteSizeOf(shape, dtype.itemsize);
    const minHeader = 8 + 2 + 1 + 2 + nameLen + 1 + dtypeLen + 1 + dimBytes * ndim + 2 + 1 + 8;
    const problem =
      headerOffset !== prevEnd && i > 0
        ? `its record starts at byte ${headerOffset}, but the previous record ends at byte ${prevEnd}; records must be contiguous and in index order`
        : headerOffset < prevEnd
          ? `its record starts at byte ${headerOffset}, inside the metadata section (which ends at byte ${prevEnd})`
          : dataOffset < headerOffset + minHeader
            ? `its data offset ${dataOffset} leaves less room than the smallest possible header after its header offset ${headerOffset}`
            : dataOffset - headerOffset > MAX_HEADER_BYTES
              ? `its header would be ${dataOffset - headerOffset} bytes, over the ${MAX_HEADER_BYTES}-byte limit`
              : dataOffset + dataLength > fileSize && !damage
                ? `its data (bytes ${dataOffset}..${dataOffset + dataLength}) runs past the end of the ${fileSize}-byte file`
                : dataLength !== 0 && dataLength !== byteSize
                  ? `its data length ${dataLength} is not ${numel(shape) * BigInt(dtype.itemsize)} (${shape.length ? shape.join('x') : 'scalar'} of ${dtype.name})`
                  : undefined;
    if (problem) throw new TensorizeError('E_FORMAT', `${at(f, entryStart, name)}: metadata entry ${i}: ${problem}`);
    if (damage && dataOffset + dataLength > fileSize) {
      damage.push(`tensor ${JSON.stringify(name)} (metadata entry ${i}, byte ${entryStart}): its data (bytes ${dataOffset}..${dataOffset + dataLength}) runs past the end of the ${fileSize}-byte file; the file was cut short, or its index is damaged`);
    }
    if (byteSize > Number.MAX_SAFE_INTEGER) {
      throw new TensorizeError('E_FORMAT', `${at(f, entryStart, name)}: metadata entry ${i}: shape [${shape}] of ${dtype.name} would be ${numel(shape) * BigInt(dtype.itemsize)} bytes; refusing such an absurdly large tensor`);
    }
    if (type !== TensorType.STATE_DICT && !isPlain(path)) {
      throw new TensorizeError('E_FORMAT', `${at(f, entryStart, name)}: metadata entry ${i}: a structured tensor path needs the state_dict type, not ${TensorType[type]} (tensorizer refuses such files too)`);
    }
    const conflict = registry.add(path);
    if (conflict) throw new TensorizeError('E_FORMAT', `${at(f, entryStart, name)}: ${conflict}`);
    entries.push({
      index: i,
      path,
      name,
      type,
      dtypeString,
      dtype,
      shape,
      headerOffset,
      dataOffset,
      dataLength,
      byteSize,
      dimBytes,
    });
    prevEnd = dataOffset + dataLength;
  }
  return entries;
}
