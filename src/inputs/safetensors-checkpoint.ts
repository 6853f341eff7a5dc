/**
 * A safetensors checkpoint as `load`, `info` and `bench` read it, as it is: one file, a
 * sharded `*.safetensors.index.json` with its shards, or a directory holding either; local,
 * http(s):// or s3:// (a URL ending in `/` is a directory: its index, else its
 * model.safetensors). Every shard's header is read and validated as `serialize` validates
 * it, tensor names must be unique across shards and must match the index, and the shards
 * stay open (their sources) for the transfer. No schema library, no tensor bytes read.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { TensorizeError } from '../errors.js';
import { fsError } from '../sources/file.js';
import { openSource, sourceKind, type SourceOptions } from '../sources/open.js';
import { withHead, type ByteSource } from '../sources/source.js';
import { isSafetensorsHead, readSafetensorsHeader, safetensorsError, type SafetensorsHeader } from './safetensors-header.js';
import { checkShards, LOCAL_INDEX, readRemoteIndex, readShardIndex, type IndexIO } from './sharded.js';

export interface SafetensorsShard {
  /** Its path or URL. */
  name: string;
  source: ByteSource;
  header: SafetensorsHeader;
}

export interface SafetensorsCheckpoint {
  /** What was opened: one file, an index (the index's path or URL), or a directory. */
  kind: 'file' | 'index' | 'directory';
  /** The index, when there is one. */
  index?: string;
  /** In the index's order of shard names (sorted), or the directory's (sorted). */
  shards: SafetensorsShard[];
  /** `__metadata__`, merged across shards (and the index's `metadata`, as strings). */
  metadata: Map<string, string>;
  warnings: string[];
}

/** Shards opened at once (remote shards: each open is a request, each header one or two more). */
const OPEN_AT_ONCE = 8;


/** What a path names, opened: a safetensors checkpoint, or another file with its first bytes read. */
export type Opened = { checkpoint: SafetensorsCheckpoint } | { other: ByteSource; head: Buffer };

/**
 * Open `path` for a command that reads both formats (load, info, bench): an index or a
 * directory is a safetensors checkpoint; a single file is one when it starts as one, else
 * it is handed back open with its first `headBytes` read (the bytes a .tensors opening
 * reads anyway, so that a remote file costs no request for the sniffing).
 */
export async function openCheckpointOrFile(path: string, headBytes: number, source?: SourceOptions): Promise<Opened> {
  if (await isMultiFile(path)) return { checkpoint: await openSafetensorsCheckpoint(path, { source }) };
  const src = await openSource(path, source);
  let head: Buffer;
  try {
    head = await src.read(0, Math.min(headBytes, src.size));
  } catch (e) {
    await src.close();
    throw e;
  }
  if (isSafetensorsHead(head, src.size)) return { checkpoint: await openSafetensorsCheckpoint(path, { first: { source: src, head } }) };
  return { other: src, head };
}

/** Whether `path` names a checkpoint that is more than one file (an index or a directory). */
export async function isMultiFile(path: string): Promise<boolean> {
  if (/\.index\.json$/i.test(path.split(/[?#]/)[0]!)) return true;
  if (sourceKind(path) !== 'file') return path.endsWith('/');
  try {
    return (await stat(path)).isDirectory();
  } catch (e) {
    throw fsError(e, path);
  }
}

const closeShards = async (shards: readonly SafetensorsShard[]) => void (await Promise.all(shards.map((s) => s.source.close())));

/** Close every shard's source. */
export const closeCheckpoint = (c: SafetensorsCheckpoint): Promise<void> => closeShards(c.shards);

/**
 * Open a checkpoint that `isMultiFile` says is an index or a directory, or a single file
 * whose source is already open (`first`, with the bytes of its start already read: `head`).
 */
export async function openSafetensorsCheckpoint(path: string, opts: { source?: SourceOptions; first?: { source: ByteSource; head: Buffer } } = {}): Promise<SafetensorsCheckpoint> {
  if (opts.first) return single(opts.first.source, opts.first.head);
  if (sourceKind(path) !== 'file') {
    const remoteIO: IndexIO = {
      read: (u) => readRemoteIndex(u, opts.source),
      resolve: (index, shard) => new URL(shard.split('/').map(encodeURIComponent).join('/'), index).toString(),
    };
    const open = (u: string) => openSource(u, opts.source);
    if (!path.endsWith('/')) return fromIndex(path, remoteIO, open);
    // A remote "directory": its index if there is one, else its model.safetensors.
    try {
      return await fromIndex(new URL('model.safetensors.index.json', path).toString(), remoteIO, open);
    } catch (e) {
      if (!(e instanceof TensorizeError && e.code === 'E_NOT_FOUND')) throw e;
    }
    try {
      return await single(await open(new URL('model.safetensors', path).toString()));
    } catch (e) {
      if (!(e instanceof TensorizeError && e.code === 'E_NOT_FOUND')) throw e;
      throw new TensorizeError('E_NOT_FOUND', `${path}: neither model.safetensors.index.json nor model.safetensors is there`, { cause: e });
    }
  }
  const open = (p: string) => openSource(p);
  if (/\.index\.json$/i.test(path)) return fromIndex(path, LOCAL_INDEX, open);
  const names = (await readdir(path)).sort();
  const indexes = names.filter((n) => n.endsWith('.safetensors.index.json'));
  const index = names.includes('model.safetensors.index.json') ? 'model.safetensors.index.json' : indexes.length === 1 ? indexes[0] : undefined;
  if (index) return fromIndex(join(path, index), LOCAL_INDEX, open);
  if (names.includes('model.safetensors')) return { ...(await single(await open(join(path, 'model.safetensors')))), kind: 'directory' };
  const files: string[] = [];
  for (const n of names.filter((x) => x.endsWith('.safetensors'))) if ((await stat(join(path, n))).isFile()) files.push(join(path, n));
  if (files.length === 0) {
    throw new TensorizeError('E_INPUT', `${path}: no safetensors weights here (looked for model.safetensors.index.json, *.safetensors.index.json, model.safetensors, *.safetensors)`, {
      hints: ['a PyTorch checkpoint loads after conversion: tensorize serialize ' + path + ' -o model.tensors'],
    });
  }
  const shards = await openShards(files, open);
  try {
    uniqueNames(shards, path);
  } catch (e) {
    await closeShards(shards);
    throw e;
  }
  return { kind: 'directory', shards, metadata: mergeMetadata(shards), warnings: [] };
}

async function single(src: ByteSource, head?: Buffer): Promise<SafetensorsCheckpoint> {
  try {
    const header = await readSafetensorsHeader(head ? withHead(src, head) : src);
    return { kind: 'file', shards: [{ name: src.name, source: src, header }], metadata: header.metadata, warnings: [] };
  } catch (e) {
    await src.close();
    throw e;
  }
}

async function fromIndex(index: string, io: IndexIO, open: (p: string) => Promise<ByteSource>): Promise<SafetensorsCheckpoint> {
  const ix = await readShardIndex(index, 'E_SAFETENSORS', io);
  const shards = await openShards(ix.locations, open);
  try {
    uniqueNames(shards, index);
    const warnings = checkShards(ix, shards.map((s) => s.header.tensors.map((t) => t.name)));
    return { kind: 'index', index, shards, metadata: mergeMetadata(shards), warnings };
  } catch (e) {
    await closeShards(shards);
    throw e;
  }
}

/** Open the shards (a few at a time) and read their headers; on a failure, close those opened. */
async function openShards(locations: readonly string[], open: (p: string) => Promise<ByteSource>): Promise<SafetensorsShard[]> {
  const out: (SafetensorsShard | undefined)[] = new Array(locations.length);
  const opened: ByteSource[] = [];
  let next = 0;
  const worker = async () => {
    while (next < locations.length) {
      const k = next++;
      const src = await open(locations[k]!);
      opened.push(src);
      out[k] = { name: locations[k]!, source: src, header: await readSafetensorsHeader(src) };
    }
  };
  const results = await Promise.allSettled(Array.from({ length: Math.min(OPEN_AT_ONCE, locations.length) }, worker));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await Promise.all(opened.map((s) => s.close()));
    throw failed.reason;
  }
  return out as SafetensorsShard[];
}

/** A tensor name in two shards is an error (which one would load is anyone's guess). */
function uniqueNames(shards: readonly SafetensorsShard[], where: string): void {
  const seen = new Map<string, string>();
  for (const s of shards) {
    for (const t of s.header.tensors) {
      const prev = seen.get(t.name);
      if (prev !== undefined) throw safetensorsError(where, `tensor ${JSON.stringify(t.name)} is in both ${prev} and ${s.name}`);
      seen.set(t.name, s.name);
    }
  }
}

function mergeMetadata(shards: readonly SafetensorsShard[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const s of shards) for (const [k, v] of s.header.metadata) m.set(k, v);
  return m;
}
