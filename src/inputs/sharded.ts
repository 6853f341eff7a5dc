/**
 * Sharded checkpoints: an index file (`model.safetensors.index.json`,
 * `pytorch_model.bin.index.json`) whose `weight_map` names the shard holding each tensor.
 * The same for every input format; the shards are opened by the format's own reader.
 */
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { z } from 'zod';
import { TensorizeError, type ErrorCode } from '../errors.js';
import { fsError } from '../sources/file.js';
import { parseStrictJson, type Json } from '../util/json.js';
import type { InputModel } from './model.js';

const indexSchema = z.object({
  metadata: z.record(z.string(), z.unknown()).optional(),
  weight_map: z.record(z.string(), z.string()),
});

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

const LOCAL: IndexIO = {
  read: async (p) => {
    try {
      return await readFile(p, 'utf8');
    } catch (e) {
      throw fsError(e, p);
    }
  },
  resolve: (index, shard) => join(dirname(index), shard),
};

export async function openShardedIndex(indexPath: string, openShard: (path: string) => Promise<InputModel>, code: ErrorCode, io: IndexIO = LOCAL): Promise<InputModel> {
  const bad = (why: string): TensorizeError => new TensorizeError(code, `${indexPath}: ${why}`);
  const text = await io.read(indexPath);
  let json: Json;
  try {
    json = parseStrictJson(text);
  } catch (e) {
    throw bad(`not valid JSON: ${(e as Error).message}`);
  }
  const parsed = indexSchema.safeParse(toPlain(json));
  if (!parsed.success) throw bad('not a sharded checkpoint index: expected {"weight_map": {"<tensor>": "<shard file>"}}');
  const byShard = new Map<string, Set<string>>();
  for (const [name, shard] of Object.entries(parsed.data.weight_map)) {
    const rel = normalize(shard);
    if (isAbsolute(shard) || rel === '..' || rel.startsWith(`..${sep}`) || shard.includes('\0') || /^[a-z][a-z0-9+.-]*:/i.test(shard) || shard.includes('\\')) {
      throw bad(`weight_map names the shard ${JSON.stringify(shard)}, which is outside the index's directory`);
    }
    if (!byShard.has(rel)) byShard.set(rel, new Set());
    byShard.get(rel)!.add(name);
  }
  if (byShard.size === 0) throw bad('weight_map is empty');
  const shards = [...byShard.keys()].sort();
  const models = [];
  for (const s of shards) models.push(await openShard(io.resolve(indexPath, s)));
  const model = mergeModels(models, code);
  // Which shard each tensor came from (by the model it was read with, not by its data path).
  const found = new Map<string, string>();
  models.forEach((m, i) => m.tensors.forEach((t) => found.set(nameOf(t), shards[i]!)));
  for (const [shard, names] of byShard) {
    for (const name of names) {
      const where = found.get(name);
      if (where === undefined) throw bad(`tensor ${JSON.stringify(name)} is listed in weight_map but is not in ${shard}`);
      if (where !== shard) throw bad(`tensor ${JSON.stringify(name)} is listed under ${shard} but is in ${io.resolve(indexPath, where)}`);
    }
  }
  for (const [name, shard] of found) {
    if (!byShard.get(shard)?.has(name)) {
      model.warnings.push(`tensor ${JSON.stringify(name)} in ${io.resolve(indexPath, shard)} is not listed in ${indexPath}; it is included`);
    }
  }
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
