/** Hand assembly of pickles and stored zip archives, for tests that need hostile checkpoints. */
import { crc32 } from 'node:zlib';

const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
};

/** Pickle opcodes as byte builders (protocol 2, what torch.save writes). */
export const P = {
  proto: Buffer.from([0x80, 2]),
  stop: Buffer.from('.'),
  mark: Buffer.from('('),
  tuple: Buffer.from('t'),
  emptyDict: Buffer.from('}'),
  emptyList: Buffer.from(']'),
  emptyTuple: Buffer.from(')'),
  setitems: Buffer.from('u'),
  setitem: Buffer.from('s'),
  append: Buffer.from('a'),
  reduce: Buffer.from('R'),
  binpersid: Buffer.from('Q'),
  none: Buffer.from('N'),
  newfalse: Buffer.from([0x89]),
  global: (m: string, n: string): Buffer => Buffer.from(`c${m}\n${n}\n`, 'utf8'),
  str: (s: string): Buffer => {
    const b = Buffer.from(s, 'utf8');
    return Buffer.concat([Buffer.from('X'), u32(b.length), b]);
  },
  /** BININT, or LONG1 (8 bytes, two's complement) beyond 32 bits, as pickle writes them. */
  int: (v: number): Buffer => {
    if (v >= -(2 ** 31) && v < 2 ** 31) {
      const b = Buffer.alloc(5);
      b[0] = 0x4a;
      b.writeInt32LE(v, 1);
      return b;
    }
    const b = Buffer.alloc(10);
    b[0] = 0x8a;
    b[1] = 8;
    b.writeBigInt64LE(BigInt(v), 2);
    return b;
  },
  binput: (i: number): Buffer => Buffer.from([0x71, i]),
  binget: (i: number): Buffer => Buffer.from([0x68, i]),
  tup: (...xs: Buffer[]): Buffer => Buffer.concat([Buffer.from('('), ...xs, Buffer.from('t')]),
};

/** A tensor rebuild call (_rebuild_tensor_v2) over a storage persistent id. */
export function tensorV2(storageClass: string, key: string, numel: number, offset: number, size: number[], stride: number[]): Buffer {
  const pid = Buffer.concat([P.tup(P.str('storage'), P.global('torch', storageClass), P.str(key), P.str('cpu'), P.int(numel)), P.binpersid]);
  return Buffer.concat([
    P.global('torch._utils', '_rebuild_tensor_v2'),
    P.tup(pid, P.int(offset), P.tup(...size.map(P.int)), P.tup(...stride.map(P.int)), P.newfalse, P.global('collections', 'OrderedDict'), P.emptyTuple, P.reduce),
    P.reduce,
  ]);
}

/** A protocol-2 pickle of a dict {key: value-bytes}. */
export function pickleDict(items: [string, Buffer][]): Buffer {
  return Buffer.concat([P.proto, P.emptyDict, P.mark, ...items.flatMap(([k, v]) => [P.str(k), v]), P.setitems, P.stop]);
}

/** A zip archive of stored entries, as torch.save lays it out (without the 64-byte alignment). */
export function storedZip(entries: [string, Buffer][], opts: { method?: number } = {}): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let pos = 0;
  for (const [name, data] of entries) {
    const n = Buffer.from(name, 'utf8');
    const crc = crc32(data) >>> 0;
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(20, 4);
    lh.writeUInt16LE(opts.method ?? 0, 8);
    lh.writeUInt32LE(crc, 14);
    lh.writeUInt32LE(data.length, 18);
    lh.writeUInt32LE(data.length, 22);
    lh.writeUInt16LE(n.length, 26);
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(20, 4);
    ch.writeUInt16LE(20, 6);
    ch.writeUInt16LE(opts.method ?? 0, 10);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(data.length, 20);
    ch.writeUInt32LE(data.length, 24);
    ch.writeUInt16LE(n.length, 28);
    ch.writeUInt32LE(pos, 42);
    locals.push(lh, n, data);
    central.push(ch, n);
    pos += 30 + n.length + data.length;
  }
  const cd = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(entries.length, 8);
  eocd.writeUInt16LE(entries.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(pos, 16);
  return Buffer.concat([...locals, cd, eocd]);
}

/** A torch-style checkpoint archive: prefix/data.pkl, prefix/data/<key>..., prefix/version. */
export function checkpointZip(pickle: Buffer, storages: Record<string, Buffer>, extra: [string, Buffer][] = [], prefix = 'archive'): Buffer {
  return storedZip([
    [`${prefix}/data.pkl`, pickle],
    ...Object.entries(storages).map(([k, v]): [string, Buffer] => [`${prefix}/data/${k}`, v]),
    ...extra.map(([k, v]): [string, Buffer] => [`${prefix}/${k}`, v]),
    [`${prefix}/version`, Buffer.from('3\n')],
  ]);
}
