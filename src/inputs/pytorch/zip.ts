/**
 * Just enough ZIP to read torch.save archives over range reads: the central directory
 * (found from the end, with ZIP64), and each stored entry's data range computed from its
 * local header. Nothing is extracted; entries are located, and small ones read on demand.
 */
import { TensorizeError } from '../../errors.js';
import type { ByteSource } from '../../sources/source.js';

export interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const EOCD = 0x06054b50;
const EOCD64 = 0x06064b50;
const EOCD64_LOCATOR = 0x07064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
const MAX_CENTRAL_DIRECTORY = 512 * 1024 * 1024;
const MAX_ENTRIES = 10_000_000;

function bad(src: ByteSource, why: string): TensorizeError {
  return new TensorizeError('E_INPUT', `${src.name}: not a readable PyTorch zip archive: ${why}`);
}

function safe(v: bigint, src: ByteSource, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(src, `${what} ${v} is absurd`);
  return Number(v);
}

export class ZipArchive {
  private constructor(
    readonly src: ByteSource,
    readonly entries: ReadonlyMap<string, ZipEntry>,
    /** Entry names in central-directory order. */
    readonly names: readonly string[],
  ) {}

  static async open(src: ByteSource): Promise<ZipArchive> {
    if (src.size < 22) throw bad(src, `${src.size} bytes is too small for a zip file`);
    const tailLen = Math.min(src.size, 22 + 65535 + 20);
    const tailStart = src.size - tailLen;
    const tail = await src.read(tailStart, tailLen);
    let eocd = -1;
    for (let i = tail.length - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === EOCD && i + 22 + tail.readUInt16LE(i + 20) === tail.length) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw bad(src, 'no end-of-central-directory record (the file is truncated or not a zip)');
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const loc = eocd - 20;
      if (loc < 0 || tail.readUInt32LE(loc) !== EOCD64_LOCATOR) throw bad(src, 'ZIP64 end record expected but its locator is missing');
      const at = safe(tail.readBigUInt64LE(loc + 8), src, 'ZIP64 end record offset');
      if (at + 56 > src.size) throw bad(src, 'ZIP64 end record lies past the end of the file');
      const z = await src.read(at, 56);
      if (z.readUInt32LE(0) !== EOCD64) throw bad(src, 'bad ZIP64 end record signature');
      count = safe(z.readBigUInt64LE(32), src, 'entry count');
      cdSize = safe(z.readBigUInt64LE(40), src, 'central directory size');
      cdOffset = safe(z.readBigUInt64LE(48), src, 'central directory offset');
    }
    if (count > MAX_ENTRIES) throw bad(src, `${count} entries is absurd`);
    if (cdSize > MAX_CENTRAL_DIRECTORY || cdOffset + cdSize > src.size) throw bad(src, `central directory (${cdSize} bytes at ${cdOffset}) does not fit in the file`);
    const cd = await src.read(cdOffset, cdSize);
    const entries = new Map<string, ZipEntry>();
    const names: string[] = [];
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL) throw bad(src, `central directory entry ${i} is damaged`);
      const method = cd.readUInt16LE(p + 10);
      let compressedSize = cd.readUInt32LE(p + 20);
      let size = cd.readUInt32LE(p + 24);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      let localHeaderOffset = cd.readUInt32LE(p + 42);
      const end = p + 46 + nameLen + extraLen + commentLen;
      if (end > cd.length) throw bad(src, `central directory entry ${i} runs past the directory`);
      const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
      // ZIP64 extra field: the 64-bit values appear in this order, only for the fields set to 0xffffffff.
      let e = p + 46 + nameLen;
      const extraEnd = e + extraLen;
      while (e + 4 <= extraEnd) {
        const id = cd.readUInt16LE(e);
        const len = cd.readUInt16LE(e + 2);
        if (e + 4 + len > extraEnd) throw bad(src, `entry ${JSON.stringify(name)} has a damaged extra field`);
        if (id === 0x0001) {
          let q = e + 4;
          const next = (what: string): number => {
            if (q + 8 > e + 4 + len) throw bad(src, `entry ${JSON.stringify(name)} has a short ZIP64 extra field`);
            const v = safe(cd.readBigUInt64LE(q), src, what);
            q += 8;
            return v;
          };
          if (size === 0xffffffff) size = next('entry size');
          if (compressedSize === 0xffffffff) compressedSize = next('entry size');
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = next('entry offset');
        }
        e += 4 + len;
      }
      if (entries.has(name)) throw bad(src, `entry ${JSON.stringify(name)} appears twice`);
      entries.set(name, { name, method, compressedSize, size, localHeaderOffset });
      names.push(name);
      p = end;
    }
    return new ZipArchive(src, entries, names);
  }

  /** The byte range of a stored (uncompressed) entry's data. */
  async dataRange(entry: ZipEntry): Promise<{ offset: number; length: number }> {
    if (entry.method !== 0) {
      throw new TensorizeError('E_UNSUPPORTED', `${this.src.name}: entry ${JSON.stringify(entry.name)} is compressed (method ${entry.method}); torch.save stores entries uncompressed, so this archive was re-packed`, {
        hints: ['re-save the checkpoint with torch.save, or unzip and re-zip it with "zip -0"'],
      });
    }
    if (entry.compressedSize !== entry.size) throw bad(this.src, `stored entry ${JSON.stringify(entry.name)} has different compressed and uncompressed sizes`);
    if (entry.localHeaderOffset + 30 > this.src.size) throw bad(this.src, `entry ${JSON.stringify(entry.name)} has its local header past the end of the file`);
    // The local header and its name in one read (the name must match the directory's).
    const nameBytes = Buffer.from(entry.name, 'utf8');
    const h = await this.src.read(entry.localHeaderOffset, Math.min(30 + nameBytes.length, this.src.size - entry.localHeaderOffset));
    if (h.readUInt32LE(0) !== LOCAL) throw bad(this.src, `entry ${JSON.stringify(entry.name)} has a bad local header signature`);
    const nameLen = h.readUInt16LE(26);
    const localName = h.toString('utf8', 30, 30 + nameLen);
    if (nameLen !== nameBytes.length || localName !== entry.name) throw bad(this.src, `local header names ${JSON.stringify(localName)} where the directory says ${JSON.stringify(entry.name)}`);
    const offset = entry.localHeaderOffset + 30 + nameLen + h.readUInt16LE(28);
    if (offset + entry.size > this.src.size) {
      throw new TensorizeError('E_INPUT', `${this.src.name}: entry ${JSON.stringify(entry.name)} (${entry.size} bytes at ${offset}) runs past the end of the ${this.src.size}-byte file; the file is truncated`);
    }
    return { offset, length: entry.size };
  }

  /** Read a whole stored entry (for small records such as data.pkl and version). */
  async read(entry: ZipEntry, limit: number): Promise<Buffer> {
    if (entry.size > limit) throw bad(this.src, `entry ${JSON.stringify(entry.name)} is ${entry.size} bytes, over the ${limit}-byte limit for it`);
    const r = await this.dataRange(entry);
    return this.src.read(r.offset, r.length);
  }
}
