/**
 * safetensors input: one file, a sharded checkpoint (model.safetensors.index.json) or a
 * directory. Headers are validated the way the reference implementation does (header
 * length limit, known dtypes, offsets that exactly tile the data section), plus duplicate
 * names; tensor bytes are never read here, only located.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { TensorizeError } from '../errors.js';
import { dtypeBySafetensors } from '../format/dtypes.js';
import { FileSource } from '../sources/file.js';
import type { ByteSource } from '../sources/source.js';
import type { InputModel, InputTensor } from './model.js';
import { readSafetensorsHeader, safetensorsError as bad } from './safetensors-header.js';
import { mergeModels, openShardedIndex } from './sharded.js';

export { MAX_HEADER_SIZE, readSafetensorsHeader, type SafetensorsHeader } from './safetensors-header.js';

/**
 * Tensors of one safetensors file, in data order. With `source` (an HTTP(S)/S3 object, left
 * open for the caller), `path` names where the tensors' bytes are read from.
 */
export async function openSafetensorsFile(path: string, source?: ByteSource): Promise<InputModel> {
  const src = source ?? (await FileSource.open(path));
  try {
    const h = await readSafetensorsHeader(src);
    const tensors: InputTensor[] = h.tensors.map((t) => {
      const dtype = dtypeBySafetensors(t.dtype);
      if (!dtype) {
        throw new TensorizeError('E_INEXPRESSIBLE', `${path}: tensor ${JSON.stringify(t.name)} has dtype ${t.dtype}, which the tensorizer format cannot express (sub-byte element types have no tensorizer dtype string)`);
      }
      if (t.name === '') throw bad(path, 'a tensor has an empty name, which tensorizer cannot read');
      return { path: [t.name], dtype, shape: t.shape, data: { path, ranges: [{ offset: h.dataStart + t.begin, length: t.end - t.begin }] } };
    });
    return { format: 'safetensors', files: [path], tensors, metadata: h.metadata, warnings: [] };
  } finally {
    if (!source) await src.close();
  }
}

/** A model directory: its index if it has one, else model.safetensors, else every *.safetensors. */
export async function openSafetensorsDir(dir: string): Promise<InputModel | undefined> {
  const names = await readdir(dir);
  if (names.includes('model.safetensors.index.json')) return openSafetensorsIndex(join(dir, 'model.safetensors.index.json'));
  const indexes = names.filter((n) => n.endsWith('.safetensors.index.json'));
  if (indexes.length === 1) return openSafetensorsIndex(join(dir, indexes[0]!));
  if (names.includes('model.safetensors')) return openSafetensorsFile(join(dir, 'model.safetensors'));
  const files = names.filter((n) => n.endsWith('.safetensors')).sort();
  const regular: string[] = [];
  for (const n of files) if ((await stat(join(dir, n))).isFile()) regular.push(n);
  if (regular.length === 0) return undefined;
  return mergeModels(await Promise.all(regular.map((n) => openSafetensorsFile(join(dir, n)))), 'E_SAFETENSORS');
}

/** A sharded checkpoint: `model.safetensors.index.json` and the shards it names. */
export function openSafetensorsIndex(indexPath: string): Promise<InputModel> {
  return openShardedIndex(indexPath, (p) => openSafetensorsFile(p), 'E_SAFETENSORS');
}
