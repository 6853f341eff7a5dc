/**
 * Sharded checkpoints: an index file (`model.safetensors.index.json`,
 * `pytorch_model.bin.index.json`) whose `weight_map` names the shard holding each tensor.
 * The same for every input format; the shards are opened by the format's own reader.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { TensorizeError, type ErrorCode } from '../errors.js';
import { fsError } from '../sources/file.js';
import { openSource, type SourceOptions } from '../sources/open.js';
import { parseStrictJson, type Json } from '../util/json.js';
import type { InputModel } from './model.js';

export function toPlain(v: Json): unknown {
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, toPlain(x)]));
  if (Array.isArray(v)) return v.map(toPlain);
  return v;
}

const nameOf = (t: InputModel['tensors'][number]): string => t.path[0] as string;

/** How an index and its shards are found: local files by default, URLs for remote inputs. */
export interface IndexIO {
  read(indexPath: string): Promise<string>;
  /** Where a shard named in the index is, relative to the index. */
  resolve(indexPath: string, shard: string): string;
}

export const LOCAL_INDEX: IndexIO = {
  read: async (p) => {
    try {
      return await readFile(p, 'utf8');
    } catch (e) {
      throw fsError(e, p);
    }
  },
  resolve: (index, shard) => join(dirname(index), shard),
};

/** The largest index JSON read over the network. */
const MAX_INDEX_BYTES = 64 << 20;

/** An index's text from a URL (at most MAX_INDEX_BYTES). */
export async function readRemoteIndex(url: string, source: SourceOptions | undefined): Promise<string> {
  const src = await openSource(url, source);
  try {
    if (src.size > MAX_INDEX_BYTES) throw new TensorizeError('E_INPUT', `${url}: an index of ${src.size} bytes is not a checkpoint index`);
    return (await src.read(0, src.size)).toString('utf8');
  } finally {
    await src.close();
  }
}

/** A sharded checkpoint's index, read and checked: the shards it names and their tensors. */
export interface ShardIndex {
  index: string;
  /** The shards as named in the index (normalised), sorted, and where each is. */
  shards: string[];
  locations: string[];
  /** The tensors the index puts in each shard. */
  byShard: Map<string, Set<string>>;
  code: ErrorCode;
  io: IndexIO;
}

/**
 * Read a `weight_map` index (no schema library: `load` of an index imports this module, and
 * a fresh process should not pay ~140 ms for zod). A shard outside the index's directory
 * (absolute, `..`, a URL, a backslash) is an error; a tensor named twice is one too (the
 * strict JSON parser refuses duplicate keys).
 */
export async function readShardIndex(indexPath: string, code: ErrorCode, io: IndexIO = LOCAL_INDEX): Promise<ShardIndex> {
  const bad = (why: string): TensorizeError => new TensorizeError(code, `${indexPath}: ${why}`);
  const text = await io.read(indexPath);
  let json: Json;
  try {
    json = parseStrictJson(text);
  } catch (e) {
    throw bad(`not valid JSON: ${(e as Error).message}`);
  }
  const map = json instanceof Map ? json.get('weight_map') : undefined;
  const meta = json instanceof Map ? json.get('metadata') : undefined;
  if (!(map instanceof Map) || (meta !== undefined && !(meta instanceof Map)) || ![...map.values()].every((v) => typeof v === 'string')) {
    throw bad('not a sharded checkpoint index: expected {"weight_map": {"<tensor>": "<shard file>"}}');
  }
  const byShard = new Map<string, Set<string>>();
  for (const [name, shard] of map as Map<string, string>) {
    const rel = normalize(shard);
    if (isAbsolute(shard) || rel === '..' || rel.startsWith(`..${sep}`) || shard.includes('\0') || /^[a-z][a-z0-9+.-]*:/i.test(shard) || shard.includes('\\')) {
      throw bad(`weight_map names the shard ${JSON.stringify(shard)}, which is outside the index's directory`);
    }
    if (!byShard.has(rel)) byShard.set(rel, new Set());
    byShard.get(rel)!.add(name);
  }
  if (byShard.size === 0) throw bad('weight_map is empty');
  const shards = [...byShard.keys()].sort();
  return { index: indexPath, shards, locations: shards.map((s) => io.resolve(indexPath, s)), byShard, code, io };
}

/**
 * Check what the shards hold (`names[k]`: the tensors found in shard k) against the index:
 * a listed tensor missing from its shard, or found in another, is an error; a tensor found
 * in a shard but not listed is included, with a warning (returned).
 */
export function checkShards(ix: ShardIndex, names: readonly (readonly string[])[]): string[] {
  const bad = (why: string): TensorizeError => new TensorizeError(ix.code, `${ix.index}: ${why}`);
  const found = new Map<string, string>();
  names.forEach((ns, k) => ns.forEach((n) => found.set(n, ix.shards[k]!)));
  for (const [shard, listed] of ix.byShard) {
    for (const name of listed) {
      const where = found.get(name);
      if (where === undefined) throw bad(`tensor ${JSON.stringify(name)} is listed in weight_map but is not in ${shard}`);
      if (where !== shard) throw bad(`tensor ${JSON.stringify(name)} is listed under ${shard} but is in ${ix.io.resolve(ix.index, where)}`);
    }
  }
  const warnings: string[] = [];
  for (const [name, shard] of found) {
    if (!ix.byShard.get(shard)?.has(name)) warnings.push(`tensor ${JSON.stringify(name)} in ${ix.io.resolve(ix.index, shard)} is not listed in ${ix.index}; it is included`);
  }
  return warnings;
}

export async function openShardedIndex(indexPath: string, openShard: (path: string) => Promise<InputModel>, code: ErrorCode, io: IndexIO = LOCAL_INDEX): Promise<InputModel> {
  const ix = await readShardIndex(indexPath, code, io);
  const models = [];
  for (const s of ix.locations) models.push(await openShard(s));
  const model = mergeModels(models, code);
  model.warnings.push(...checkShards(ix, models.map((m) => m.tensors.map(nameOf))));
  return model;
}

/** Several files' tensors as one model; a name in two files is an error. */
export function mergeModels(models: InputModel[], code: ErrorCode): InputModel {
  const seen = new Map<string, string>();
  const out: InputModel = { format: models[0]?.format ?? 'safetensors', files: [], tensors: [], metadata: new Map(), warnings: [] };
  for (const m of models) {
    out.files.push(...m.files);
    for (const t of m.tensors) {
      const name = nameOf(t);
      const prev = seen.get(name);
      if (prev !== undefined) throw new TensorizeError(code, `tensor ${JSON.stringify(name)} is in both ${prev} and ${t.data.path}`);
      seen.set(name, t.data.path);
      out.tensors.push(t);
    }
    for (const [k, v] of m.metadata) out.metadata.set(k, v);
    out.warnings.push(...m.warnings);
    for (const [k, v] of m.sources ?? []) (out.sources ??= new Map()).set(k, v);
  }
  return out;
}
